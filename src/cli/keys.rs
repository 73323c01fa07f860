//! `stagecast keys generate` and `stagecast keys rotate`.

use anyhow::{bail, Context};
use clap::Args;

use super::DatabaseArgs;
use crate::secrets::KeyRing;

#[derive(Debug, Args, Clone)]
pub struct GenerateArgs {
    /// Id of the new key (1-32 characters: letters, digits, _ or -). Pick one not in use yet.
    #[arg(default_value = "k1")]
    pub id: String,
}

pub fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let entry = KeyRing::generate_key_entry(&args.id)?;
    println!("{entry}");
    eprintln!(
        "Put this entry FIRST in STAGECAST_KEYS (comma-separated, e.g. STAGECAST_KEYS={}:…,<older keys>).\n\
         Keep older keys after it until `stagecast keys rotate` has re-sealed every token.",
        args.id
    );
    Ok(())
}

pub async fn rotate(args: DatabaseArgs) -> anyhow::Result<()> {
    let Some(keys) = KeyRing::from_env().context("STAGECAST_KEYS is invalid")? else {
        bail!("STAGECAST_KEYS is not set: nothing to rotate to (create a key with `stagecast keys generate`)");
    };
    let store = super::run::connect(&args.database_url, 2).await?;
    let report = crate::tokens::rotate(&store, &keys).await?;
    println!(
        "re-sealed {} token(s) with key {}; {} already current; {} plaintext token(s) sealed",
        report.resealed,
        keys.primary_key_id(),
        report.current,
        report.sealed_plaintext
    );
    if !report.failed.is_empty() {
        for (pixel_ref, error) in &report.failed {
            eprintln!("pixel {pixel_ref}: {error}");
        }
        bail!(
            "{} token(s) could not be re-sealed; they still work only while their key stays in STAGECAST_KEYS",
            report.failed.len()
        );
    }
    Ok(())
}
