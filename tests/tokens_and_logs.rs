//! Tokens at rest and in logs: a plaintext token written by the CRM is sealed and cleared (and
//! used meanwhile), key rotation re-seals through the CLI, and the worker's captured logs never
//! contain a token or raw email/phone.

mod support;

use std::process::Stdio;
use std::time::Duration;

use stagecast::secrets::KeyRing;
use support::stack::{Stack, KEYS, PIXEL, TOKEN};

const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

#[tokio::test]
async fn a_plaintext_token_written_by_the_crm_is_used_then_sealed_and_cleared() {
    let s = Stack::new().await;
    s.seed_standard().await;
    // The CRM writes the token in plaintext, as the data contract allows.
    sqlx::query("UPDATE pixels SET access_token = $1, access_token_enc = NULL WHERE id = 1")
        .bind(TOKEN)
        .execute(s.pool())
        .await
        .unwrap();
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    let worker = s.start_worker();
    s.move_to(c, 1).await;
    assert!(
        s.sandbox.wait_for_events(1, Duration::from_secs(10)).await,
        "delivered with the token"
    );
    // Maintenance runs every 100 ms in tests.
    let mut sealed: Option<(Option<String>, Option<String>)> = None;
    for _ in 0..50 {
        let row: (Option<String>, Option<String>) =
            sqlx::query_as("SELECT access_token, access_token_enc FROM pixels WHERE id = 1")
                .fetch_one(s.pool())
                .await
                .unwrap();
        if row.0.is_none() {
            sealed = Some(row);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.shutdown().await.unwrap();
    let (plain, enc) = sealed.expect("the plaintext token was cleared");
    assert!(plain.is_none());
    let enc = enc.expect("sealed token stored");
    assert!(enc.starts_with("v1:k1:"), "{enc}");
    assert!(!enc.contains(TOKEN));
    assert_eq!(s.keys.open(&enc).unwrap().expose(), TOKEN);
}

fn bin() -> tokio::process::Command {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_stagecast"))
}

#[tokio::test]
async fn keys_rotate_reseals_tokens_so_the_old_key_can_be_dropped() {
    let s = Stack::new().await;
    s.seed_standard().await; // pixel 1 sealed with k1
    let rotated = bin()
        .args(["keys", "rotate"])
        .env("DATABASE_URL", &s.db.url)
        .env("STAGECAST_KEYS", format!("{K2},{}", KEYS))
        .output()
        .await
        .unwrap();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let stdout = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        stdout.contains("re-sealed 1 token(s) with key k2"),
        "{stdout}"
    );
    let enc: String = sqlx::query_scalar("SELECT access_token_enc FROM pixels WHERE id = 1")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert!(enc.starts_with("v1:k2:"), "{enc}");
    // A ring without k1 can still read it, and a worker with only k2 delivers.
    let only_k2 = KeyRing::parse(K2).unwrap();
    assert_eq!(only_k2.open(&enc).unwrap().expose(), TOKEN);
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    let t = s.tuning();
    let pipeline =
        stagecast::pipeline::Pipeline::new(s.store.clone(), t.meta, Some(only_k2), t.pipeline)
            .unwrap();
    let worker = stagecast::queue::Worker::new(s.store.clone(), pipeline, t.worker).spawn();
    s.move_to(c, 1).await;
    assert!(s.sandbox.wait_for_events(1, Duration::from_secs(10)).await);
    worker.shutdown().await.unwrap();
    // Rotating again is a no-op.
    let again = bin()
        .args(["keys", "rotate"])
        .env("DATABASE_URL", &s.db.url)
        .env("STAGECAST_KEYS", K2)
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("re-sealed 0 token(s)"));
}

#[tokio::test]
async fn pixel_set_token_reads_stdin_and_stores_only_the_sealed_form() {
    use tokio::io::AsyncWriteExt;
    let s = Stack::new().await;
    s.seed_standard().await;
    let mut child = bin()
        .args(["pixel", "set-token", PIXEL])
        .env("DATABASE_URL", &s.db.url)
        .env("STAGECAST_KEYS", KEYS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"EAAnew-token-from-stdin\n")
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("EAAnew"),
        "the token is never echoed"
    );
    let (plain, enc): (Option<String>, String) =
        sqlx::query_as("SELECT access_token, access_token_enc FROM pixels WHERE pixel_id = $1")
            .bind(PIXEL)
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert!(plain.is_none());
    assert_eq!(
        s.keys.open(&enc).unwrap().expose(),
        "EAAnew-token-from-stdin"
    );
    // An unknown pixel is a clear error, not a silent no-op.
    let unknown = bin()
        .args(["pixel", "set-token", "does-not-exist"])
        .env("DATABASE_URL", &s.db.url)
        .env("STAGECAST_KEYS", KEYS)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!unknown.status.success());
}

/// Everything a child writes to this pipe, read as it comes.
fn read_all<R>(pipe: Option<R>) -> tokio::task::JoinHandle<String>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut p, &mut text).await;
        }
        text
    })
}

#[tokio::test]
async fn worker_logs_never_contain_tokens_or_raw_contact_data() {
    let s = Stack::new().await;
    s.seed_standard().await;
    // A plaintext token (sealed by the worker, so it passes through its memory), an inactive
    // second pixel with another token, customers with email and phone, an API failure.
    sqlx::query("UPDATE pixels SET access_token = $1, access_token_enc = NULL WHERE id = 1")
        .bind(TOKEN)
        .execute(s.pool())
        .await
        .unwrap();
    s.exec(
        "INSERT INTO pixels (id, platform, pixel_id, access_token, active) VALUES (2, 'facebook', '777', 'EAAsecond-secret-token', false);
         INSERT INTO utm_campaigns (id, name, pixel_id) VALUES (2, 'Inativa', 2);",
    )
    .await;
    let email = "Joana.Secreta@Example.com";
    let phone = "(11) 97777-8888";
    let a = s.customer(1, email, phone, Some(99.0)).await;
    let b = s
        .customer(2, "outro.cliente@example.com", "+55 21 96666-5555", None)
        .await;
    s.exec("UPDATE customers SET utm_campaign_id = 2 WHERE id = 2")
        .await;
    s.sandbox
        .push_fault(stagecast::sandbox::Fault::ServerError(500));
    let mut child = s
        .worker_command()
        .env("STAGECAST_LOG", "debug")
        .spawn()
        .unwrap();
    // Read the pipes while the worker runs: debug logs (every statement) outgrow a pipe's
    // 64 kB buffer, and a worker blocked writing its logs would never drain the queue.
    // Read the pipes while the worker runs: debug logs (every statement) outgrow a pipe's
    // 64 kB buffer, and a worker blocked writing its logs would never drain the queue.
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    s.move_to(a, 2).await;
    s.move_to(b, 1).await;
    assert!(s.sandbox.wait_for_events(1, Duration::from_secs(15)).await);
    s.drained().await;
    tokio::time::sleep(Duration::from_millis(300)).await; // a maintenance round
                                                          // SIGTERM: graceful shutdown, logs flushed.
    let pid = child.id().unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the worker stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "graceful exit");
    let logs = format!("{}{}", stdout.await.unwrap(), stderr.await.unwrap());
    assert!(
        logs.contains("worker started") && logs.contains("sealed a plaintext access token"),
        "logs captured:\n{logs}"
    );
    assert!(
        logs.lines().count() > 5,
        "debug logging really ran:\n{logs}"
    );
    for needle in [
        TOKEN,
        "EAAsecond-secret-token",
        email,
        &email.to_lowercase(),
        "97777-8888",
        "11977778888",
        "5511977778888",
        "96666-5555",
        "5521966665555",
        "Joana",
        "Maria da Silva",
    ] {
        assert!(!logs.contains(needle), "logs contain {needle:?}:\n{logs}");
    }
}
