//! `stagecast pixel set-token`.

use std::io::Read;

use anyhow::{bail, Context};
use clap::Args;

use super::DatabaseArgs;
use crate::secrets::{KeyRing, Secret};

#[derive(Debug, Args, Clone)]
pub struct SetTokenArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The pixel: its row id in `pixels`, or its platform id (Meta dataset id, TikTok event set
    /// id or pixel code).
    pub pixel: String,
}

pub async fn set_token(args: SetTokenArgs) -> anyhow::Result<()> {
    let Some(keys) = KeyRing::from_env().context("STAGECAST_KEYS is invalid")? else {
        bail!("STAGECAST_KEYS is not set: a token cannot be sealed without a key (create one with `stagecast keys generate`)");
    };
    if atty_stdin() {
        eprintln!("Paste the access token, then press Enter and Ctrl-D:");
    }
    let mut raw = String::new();
    std::io::stdin()
        .read_to_string(&mut raw)
        .context("could not read the token from stdin")?;
    let token = Secret::new(raw.trim().to_string());
    if token.is_empty() {
        bail!("no token on stdin: pipe it in, e.g. `stagecast pixel set-token 1 < token.txt`");
    }
    let store = super::run::connect(&args.db.database_url, 2).await?;
    let sealed = keys.seal(token.expose());
    let updated = store.set_pixel_token(&args.pixel, &sealed).await?;
    match updated {
        0 => bail!(
            "no pixel matches {:?} (give its row id, or its Meta dataset id or TikTok event set id)",
            args.pixel
        ),
        1 => {
            println!(
                "token sealed with key {} and stored for pixel {}",
                keys.primary_key_id(),
                args.pixel
            );
            Ok(())
        }
        n => bail!("{n} pixels match {:?}; use the row id instead", args.pixel),
    }
}

fn atty_stdin() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}
