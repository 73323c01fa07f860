//! Tokens at rest and in logs: a plaintext token written by the CRM is sealed and cleared (and
//! used meanwhile), key rotation re-seals through the CLI, and the worker's captured logs never
//! contain a token or raw email/phone, nor Google's refresh token, client secret or access
//! tokens through a refresh and a refused grant.

mod support;

use std::process::Stdio;
use std::time::Duration;

use stagecast::secrets::KeyRing;
use support::stack::{Stack, GOOGLE_CLIENT_SECRET, GOOGLE_REFRESH, KEYS, PIXEL, TOKEN};
use support::wait::{wait_until, DEADLINE};

const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

#[tokio::test]
async fn a_plaintext_token_written_by_the_crm_is_used_then_sealed_and_cleared() {
    let s = Stack::new().await;
    s.seed_standard().await;
    // The CRM writes the token in plaintext, as the data contract allows.
    sqlx::query("UPDATE pixels SET access_token = $1, access_token_enc = NULL WHERE id = 1")
        .bind(TOKEN)
        .execute(s.crm())
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
    let sealed = support::wait::wait_for(
        "the plaintext token to be sealed and cleared",
        support::wait::DEADLINE,
        || async {
            let row: (Option<String>, Option<String>) =
                sqlx::query_as("SELECT access_token, access_token_enc FROM pixels WHERE id = 1")
                    .fetch_one(s.pool())
                    .await
                    .unwrap();
            row.0.is_none().then_some(row)
        },
    )
    .await;
    worker.shutdown().await.unwrap();
    let (plain, enc) = sealed;
    assert!(plain.is_none());
    let enc = enc.expect("sealed token stored");
    assert!(enc.starts_with("v1:k1:"), "{enc}");
    assert!(!enc.contains(TOKEN));
    assert_eq!(s.keys.open(&enc).unwrap().expose(), TOKEN);
}

fn bin() -> tokio::process::Command {
    support::process::stagecast()
}

#[tokio::test]
async fn keys_rotate_reseals_tokens_so_the_old_key_can_be_dropped() {
    let s = Stack::new().await;
    s.seed_standard().await; // pixel 1 sealed with k1
    let rotated = bin()
        .args(["keys", "rotate"])
        // The worker's role may re-seal (sql/roles/worker.sql).
        .env("DATABASE_URL", &s.db.worker_url)
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
    let pipeline = stagecast::pipeline::Pipeline::new(
        s.store.clone(),
        t.registry(),
        Some(only_k2),
        t.pipeline,
    )
    .unwrap();
    let worker = stagecast::queue::Worker::new(s.store.clone(), pipeline, t.worker).spawn();
    s.move_to(c, 1).await;
    assert!(s.sandbox.wait_for_events(1, Duration::from_secs(10)).await);
    worker.shutdown().await.unwrap();
    // Rotating again is a no-op.
    let again = bin()
        .args(["keys", "rotate"])
        .env("DATABASE_URL", &s.db.worker_url)
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
        // An operator's command that writes pixels directly: the owner's (docs/operations.md).
        .env("DATABASE_URL", &s.db.owner_url)
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
        .env("DATABASE_URL", &s.db.owner_url)
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
        .execute(s.crm())
        .await
        .unwrap();
    s.crm_exec(
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
    s.crm_exec("UPDATE customers SET utm_campaign_id = 2 WHERE id = 2")
        .await;
    s.sandbox
        .push_fault(stagecast_sandbox::Fault::ServerError(500));
    let mut child = s
        .worker_command()
        .env("STAGECAST_LOG", "debug")
        .spawn()
        .unwrap();
    // Read the logs while the worker runs: debug logging fills a pipe's 64 KiB in seconds, and
    // a worker blocked writing to a full pipe stops working.
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    s.move_to(a, 2).await;
    s.move_to(b, 1).await;
    assert!(s.sandbox.wait_for_events(1, Duration::from_secs(15)).await);
    s.drained().await;
    // The worker's maintenance seals both plaintext tokens (and logs that it did).
    support::wait::wait_until(
        "the worker sealed the plaintext tokens",
        support::wait::DEADLINE,
        || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pixels WHERE access_token IS NOT NULL",
            )
            .fetch_one(s.pool())
            .await
            .unwrap()
                == 0
        },
    )
    .await;
    // SIGTERM: graceful shutdown, logs flushed.
    support::process::signal(&child, "TERM");
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

#[tokio::test]
async fn worker_logs_never_contain_google_refresh_tokens_client_secrets_or_access_tokens() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.seed_google().await;
    let a = s
        .customer(1, "ana@example.com", "+55 11 95555-1234", Some(10.0))
        .await;
    let b = s
        .customer(2, "bia@example.com", "+55 11 94444-1234", Some(20.0))
        .await;
    // The first upload is answered 401: the worker drops its access token and refreshes.
    s.google
        .push_fault(stagecast_sandbox::GoogleAdsFault::Unauthenticated);
    let mut child = s
        .worker_command()
        .env("STAGECAST_LOG", "debug")
        .spawn()
        .unwrap();
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    s.move_to(a, 2).await;
    wait_until("the conversion after the refresh", DEADLINE, || async {
        s.google.accepted().len() == 1
    })
    .await;
    // Then the refresh token is revoked: the next upload's 401 leads to invalid_grant.
    s.google.revoke_refresh_token(GOOGLE_REFRESH);
    s.move_to(b, 2).await;
    wait_until("the token_invalid alert", DEADLINE, || async {
        s.alert_causes(b).await == ["token_invalid"]
    })
    .await;
    support::process::signal(&child, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the worker stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "graceful exit");
    let logs = format!("{}{}", stdout.await.unwrap(), stderr.await.unwrap());
    assert!(
        logs.contains("refreshing the access token")
            && logs.contains("Google refused this destination's OAuth credentials"),
        "the refresh and the refusal were logged:\n{logs}"
    );
    let issued = s.google.issued_access_tokens();
    assert_eq!(issued.len(), 2, "a token, then another after the 401");
    for needle in [GOOGLE_REFRESH, GOOGLE_CLIENT_SECRET]
        .into_iter()
        .chain(issued.iter().map(String::as_str))
    {
        assert!(!logs.contains(needle), "logs contain {needle:?}:\n{logs}");
    }
    assert!(
        !logs.contains("ya29."),
        "no access token, whole or cut:\n{logs}"
    );
}

const K3: &str = "k3:QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=";

/// `stagecast keys rotate` with `keys` (None: STAGECAST_KEYS unset): (success, stdout, stderr).
async fn rotate(s: &Stack, keys: Option<&str>) -> (bool, String, String) {
    let mut cmd = bin();
    // As the worker's role, which `stagecast keys rotate` runs with (sql/roles/worker.sql).
    cmd.args(["keys", "rotate"])
        .env("DATABASE_URL", &s.db.worker_url);
    if let Some(keys) = keys {
        cmd.env("STAGECAST_KEYS", keys);
    }
    let out = cmd.output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn sealed_tokens(s: &Stack) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT id, access_token_enc FROM pixels ORDER BY id")
        .fetch_all(s.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn keys_rotate_fails_loudly_on_what_it_cannot_reseal_and_reseals_the_rest() {
    let s = Stack::new().await;
    s.seed_standard().await; // pixel 1 sealed with k1
    let k3_only = KeyRing::parse(K3).unwrap();
    sqlx::query(
        "INSERT INTO pixels (id, platform, pixel_id, access_token_enc, active) VALUES \
           (2, 'facebook', '222', $1, true), (3, 'facebook', '333', 'v1:k1:not-a-ciphertext', true)",
    )
    .bind(k3_only.seal("EAAthird-secret-token"))
    .execute(s.crm())
    .await
    .unwrap();
    let before = sealed_tokens(&s).await;

    // No key ring, or a broken one: refused before touching anything.
    let (ok, _, stderr) = rotate(&s, None).await;
    assert!(
        !ok && stderr.contains("STAGECAST_KEYS is not set"),
        "{stderr}"
    );
    let (ok, _, stderr) = rotate(&s, Some("k2:too-short")).await;
    assert!(
        !ok && stderr.contains("STAGECAST_KEYS is invalid"),
        "{stderr}"
    );
    assert_eq!(sealed_tokens(&s).await, before);

    // k2 first, k1 after it: pixel 1 is re-sealed; pixel 2 (sealed with k3, not in the ring)
    // and pixel 3 (not a ciphertext) cannot be, and the command says so and fails.
    let (ok, stdout, stderr) = rotate(&s, Some(&format!("{K2},{KEYS}"))).await;
    assert!(!ok, "a token left behind is a failure:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("re-sealed 1 token(s) with key k2"),
        "{stdout}"
    );
    assert!(stderr.contains("pixel 2: "), "{stderr}");
    assert!(stderr.contains("pixel 3: "), "{stderr}");
    assert!(
        stderr.contains("2 token(s) could not be re-sealed"),
        "{stderr}"
    );
    for secret in [TOKEN, "EAAthird-secret-token", "ICEiIyQl", "AAECAwQF"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "output holds {secret:?}"
        );
    }
    let after = sealed_tokens(&s).await;
    assert!(after[0].1.starts_with("v1:k2:"), "{:?}", after[0]);
    assert_eq!(
        after[1..],
        before[1..],
        "what could not be re-sealed is kept as is"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_never_overwrites_a_token_the_crm_changes_meanwhile_and_workers_keep_delivering(
) {
    let s = Stack::new().await;
    s.seed_standard().await; // pixel 1 sealed with k1
    const NEW_TOKEN: &str = "EAAnew-token-written-meanwhile";
    s.sandbox.add_pixel(PIXEL, NEW_TOKEN);
    // A worker that knows both keys keeps delivering throughout.
    let t = s.tuning();
    let both = KeyRing::parse(&format!("{K2},{KEYS}")).unwrap();
    let pipeline = stagecast::pipeline::Pipeline::new(
        s.store.clone(),
        t.registry(),
        Some(both.clone()),
        t.pipeline,
    )
    .unwrap();
    let worker = stagecast::queue::Worker::new(s.store.clone(), pipeline, t.worker).spawn();
    let c1 = s.customer(1, "a@example.com", "+5511999990001", None).await;
    s.move_to(c1, 1).await;
    assert!(s.sandbox.wait_for_events(1, DEADLINE).await);

    // The CRM stores a new token (sealed with k1, as its backend does) in a transaction that is
    // still open when the rotation reaches that row.
    let mut crm = s.crm().begin().await.unwrap();
    let crm_sealed = s.keys.seal(NEW_TOKEN);
    sqlx::query("UPDATE pixels SET access_token_enc = $1 WHERE id = 1")
        .bind(&crm_sealed)
        .execute(&mut *crm)
        .await
        .unwrap();
    let rotation = tokio::spawn({
        let url = s.db.worker_url.clone();
        async move {
            bin()
                .args(["keys", "rotate"])
                .env("DATABASE_URL", url)
                .env("STAGECAST_KEYS", format!("{K2},{KEYS}"))
                .output()
                .await
                .unwrap()
        }
    });
    // The rotation read the committed (old) ciphertext and now waits on the CRM's row lock.
    wait_until(
        "keys rotate to wait for the CRM's row lock",
        DEADLINE,
        || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                  WHERE datname = current_database() AND wait_event_type = 'Lock' \
                    AND query LIKE '%replace_sealed_token%')",
            )
            .fetch_one(s.pool())
            .await
            .unwrap()
        },
    )
    .await;
    crm.commit().await.unwrap();
    let out = rotation.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("re-sealed 0 token(s)"),
        "the compare-and-set lost, so nothing was re-sealed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The CRM's token survived (a re-seal of the old one would have reverted it).
    let enc = &sealed_tokens(&s).await[0].1;
    assert_eq!(enc, &crm_sealed);
    assert_eq!(both.open(enc).unwrap().expose(), NEW_TOKEN);

    // The next rotation re-seals the new token, and the worker delivers with it throughout.
    let again = bin()
        .args(["keys", "rotate"])
        .env("DATABASE_URL", &s.db.worker_url)
        .env("STAGECAST_KEYS", format!("{K2},{KEYS}"))
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("re-sealed 1 token(s) with key k2"));
    let enc = &sealed_tokens(&s).await[0].1;
    assert!(enc.starts_with("v1:k2:"));
    assert_eq!(both.open(enc).unwrap().expose(), NEW_TOKEN);
    let c2 = s.customer(2, "b@example.com", "+5511999990002", None).await;
    s.move_to(c2, 1).await;
    assert!(s.sandbox.wait_for_events(2, DEADLINE).await);
    worker.shutdown().await.unwrap();
    assert!(
        s.sandbox.requests().iter().all(|r| r.accepted()),
        "no request was refused for its token"
    );
}
