//! Spawning the `stagecast` binary (and other programs) hermetically: a cleared environment plus
//! what the test sets, so a developer's `DATABASE_URL`, `SENTRY_DSN`, `RUST_LOG` or proxy
//! settings never leak into a test; and children killed when the test ends, panics included.

/// `NO_PROXY` for children: loopback is always reached directly (the sandboxes, the fake Sentry
/// and Postgres all listen on 127.0.0.1).
pub const NO_PROXY: &str = "localhost,127.0.0.0/8,::1";

/// The variables a child inherits: enough to find programs, a home and a temporary directory.
const INHERITED: &[&str] = &["PATH", "HOME", "TMPDIR"];

/// `program` with a cleared environment (plus `PATH`, `HOME`, `TMPDIR` and `NO_PROXY` for
/// loopback), stdin closed, and killed when the returned `Child` is dropped (the test ended or
/// panicked). Callers set the test's own `DATABASE_URL` and the like.
pub fn hermetic(program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear();
    for name in INHERITED {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd.env("NO_PROXY", NO_PROXY)
        .env("no_proxy", NO_PROXY)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// The `stagecast` binary of this build, hermetic (see [`hermetic`]).
pub fn stagecast() -> tokio::process::Command {
    hermetic(env!("CARGO_BIN_EXE_stagecast"))
}

/// Like [`hermetic`] for `std::process::Command` (for programs waited on synchronously, such as
/// `promtool`). Not killed on drop: use it only with `output()`/`status()`, or wrap the child in
/// [`KillOnDrop`].
pub fn hermetic_std(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.env_clear();
    for name in INHERITED {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd.env("NO_PROXY", NO_PROXY)
        .env("no_proxy", NO_PROXY)
        .stdin(std::process::Stdio::null());
    cmd
}

/// A `std::process::Child` killed (and reaped) when dropped, also while a test panics.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `signal` (`"TERM"`, `"INT"`, `"KILL"`) to a running child.
pub fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("the child is running");
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid} failed");
}
