//! `stagecast keys generate` and `stagecast keys rotate`.

use anyhow::{bail, Context};
use clap::Args;

use super::DatabaseArgs;
use crate::secrets::KeyRing;

#[derive(Debug, Args, Clone)]
pub struct GenerateArgs {
    /// Id of the new key (1-32 characters: letters, digits, _ or -). Pick one not in use yet.
    #[arg(long, default_value = "k1")]
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
    let report = rotate_tokens(&store, &keys).await?;
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

#[derive(Debug, Default)]
pub struct RotateReport {
    pub resealed: usize,
    pub current: usize,
    pub sealed_plaintext: usize,
    pub failed: Vec<(i64, String)>,
}

/// Re-seal every token not sealed with the primary key, and seal plaintext ones.
pub async fn rotate_tokens(
    store: &crate::store::Store,
    keys: &KeyRing,
) -> anyhow::Result<RotateReport> {
    let mut report = RotateReport::default();
    for (pixel_ref, sealed) in store.sealed_tokens().await? {
        if !keys.needs_reseal(&sealed) {
            report.current += 1;
            continue;
        }
        match keys.reseal(&sealed) {
            Ok(new) => {
                // Compare-and-set: a token the CRM changed meanwhile is left for the next run.
                if store.replace_sealed_token(pixel_ref, &new, &sealed).await? {
                    report.resealed += 1;
                }
            }
            Err(e) => report.failed.push((pixel_ref, e.to_string())),
        }
    }
    for (pixel_ref, plain) in store.plaintext_tokens().await? {
        let secret = crate::secrets::Secret::new(plain);
        if store
            .store_sealed_token(pixel_ref, &keys.seal(secret.expose()), secret.expose())
            .await?
        {
            report.sealed_plaintext += 1;
        }
    }
    Ok(report)
}
