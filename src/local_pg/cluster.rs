//! A throwaway PostgreSQL cluster: `initdb` into a fresh temp dir, run `postgres` on a free
//! port, and delete everything when the guard drops — or, if this process dies without dropping
//! it (SIGKILL, abort, a `static` that is never dropped), when the watchdog notices.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions as _, Connection as _};

use super::binaries::ServerBinaries;
use super::LocalPgError;

/// How long a fresh cluster may take to accept connections. initdb is done by then; this only
/// covers postmaster start-up and crash recovery of nothing, which takes well under a second on
/// an idle machine, but CI runners with two busy cores can be far slower.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Attempts at finding a port: another process can grab the port we picked between our probe
/// and the postmaster's bind.
const PORT_ATTEMPTS: usize = 3;

/// The watchdog: a shell that blocks reading a pipe whose write end only this process holds.
/// The kernel closes that end however this process exits, so `read` returning EOF is an exact,
/// poll-free "owner is gone" signal that cannot be fooled by PID reuse (unlike `kill -0 $PPID`).
/// The owner writes the PIDs of initdb and the postmaster into the pipe as it starts them.
///
/// On EOF: if the directory is already gone the owner cleaned up (normal drop), so exit.
/// Otherwise stop the postmaster immediately (SIGQUIT), wait for it to remove its pid file,
/// and delete the directory — retrying, because an orphaned initdb may still be writing.
/// A PID is only signalled while it still names a postgres/initdb process.
const WATCHDOG_SCRIPT: &str = r#"
trap '' INT TERM HUP
dir="$1"
pids=""
while IFS= read -r line; do pids="$pids $line"; done
[ -d "$dir" ] || exit 0
if [ -f "$dir/data/postmaster.pid" ]; then
  pids="$pids $(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null)"
fi
for pid in $pids; do
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || ps -o comm= -p "$pid" 2>/dev/null || true)
  case "$comm" in
    *postgres*|*postmaster*|*initdb*) kill -QUIT "$pid" 2>/dev/null || true ;;
  esac
done
i=0
while [ -f "$dir/data/postmaster.pid" ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
i=0
while [ -e "$dir" ] && [ "$i" -lt 30 ]; do
  rm -rf "$dir" 2>/dev/null || true
  [ -e "$dir" ] && sleep 1
  i=$((i+1))
done
"#;

/// The unprivileged account the cluster runs as when we are root.
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
}

async fn id_output(args: &[&str]) -> Option<String> {
    let out = tokio::process::Command::new("id")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `None` when we are not root (the cluster then simply runs as us).
async fn run_as() -> Result<Option<RunAs>, LocalPgError> {
    // `id` rather than libc::geteuid: no extra dependency, and it works on Linux and macOS.
    let euid = id_output(&["-u"]).await;
    if euid.as_deref() != Some("0") {
        return Ok(None);
    }
    let uid = id_output(&["-u", "postgres"])
        .await
        .and_then(|s| s.parse().ok());
    let gid = id_output(&["-g", "postgres"])
        .await
        .and_then(|s| s.parse().ok());
    match (uid, gid) {
        (Some(uid), Some(gid)) if uid != 0 => Ok(Some(RunAs {
            name: "postgres".to_owned(),
            uid,
            gid,
        })),
        _ => Err(LocalPgError::RootWithoutPostgresUser),
    }
}

fn io_err(action: impl Into<String>) -> impl FnOnce(io::Error) -> LocalPgError {
    let action = action.into();
    move |source| LocalPgError::Io { action, source }
}

/// A running throwaway cluster. Dropping it stops the server and deletes the directory.
#[derive(Debug)]
pub(crate) struct Cluster {
    dir: PathBuf,
    port: u16,
    version: String,
    /// Kept to start the same postmaster again ([`Cluster::restart`]).
    bins: ServerBinaries,
    postmaster: Option<Child>,
    watchdog: Option<Child>,
}

impl Cluster {
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn version(&self) -> &str {
        &self.version
    }

    pub(crate) fn postmaster_pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(Child::id)
    }

    /// `sslmode=disable` because the cluster has no certificates and a `PGSSLMODE=require` in
    /// the user's environment must not break it.
    pub(crate) fn admin_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Tells the watchdog about a process to stop if we die. Best effort: if the pipe is
    /// broken the watchdog is gone and there is nothing better to do.
    fn watch_pid(&mut self, pid: Option<u32>) {
        let (Some(pid), Some(stdin)) = (pid, self.watchdog.as_mut().and_then(|w| w.stdin.as_mut()))
        else {
            return;
        };
        let _ = writeln!(stdin, "{pid}");
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        if tail.is_empty() {
            "(empty)".to_owned()
        } else {
            tail
        }
    }

    pub(crate) async fn start(
        bins: &ServerBinaries,
        progress: bool,
    ) -> Result<Cluster, LocalPgError> {
        let run_as = run_as().await?;
        let dir = create_private_dir(run_as.as_ref())?;
        // From here on every error path drops `cluster`, which deletes `dir`.
        let mut cluster = Cluster {
            dir,
            port: 0,
            version: bins.version_string.clone(),
            bins: bins.clone(),
            postmaster: None,
            watchdog: None,
        };
        cluster.watchdog = Some(spawn_watchdog(&cluster.dir)?);
        if progress {
            eprintln!(
                "stagecast: starting a throwaway PostgreSQL {} cluster from {} in {} (deleted on exit)",
                bins.version_string,
                bins.bindir.display(),
                cluster.dir.display()
            );
        }
        cluster.initdb(bins, run_as.as_ref()).await?;
        cluster.run_postmaster(bins, run_as.as_ref(), None).await?;
        Ok(cluster)
    }

    /// Stops the postmaster the hard way (SIGQUIT: every backend is dropped, as in a crash,
    /// and the next start runs crash recovery), leaves it down for `down_for`, then starts it
    /// again on the same port, so URLs handed out before stay valid. For `stagecast bench
    /// chaos`, which must never restart anyone else's server: only a throwaway cluster has one.
    pub(crate) async fn restart(&mut self, down_for: Duration) -> Result<(), LocalPgError> {
        if let Some(mut pm) = self.postmaster.take() {
            let _ = std::process::Command::new("sh")
                .args(["-c", "kill -QUIT \"$1\"", "sh", &pm.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(pm.try_wait(), Ok(None)) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if matches!(pm.try_wait(), Ok(None)) {
                let _ = pm.kill();
            }
            let _ = pm.wait();
        }
        tokio::time::sleep(down_for).await;
        let run_as = run_as().await?;
        let bins = self.bins.clone();
        let port = self.port;
        self.run_postmaster(&bins, run_as.as_ref(), Some(port))
            .await
    }

    async fn initdb(
        &mut self,
        bins: &ServerBinaries,
        run_as: Option<&RunAs>,
    ) -> Result<(), LocalPgError> {
        let mut cmd = tokio::process::Command::new(bins.initdb());
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            // C locale + UTF8: identical behaviour on every machine, no dependence on which
            // locales happen to be generated on a fresh install.
            .args(["-E", "UTF8", "--locale=C"])
            // The server's cwd must be readable by the unprivileged user; ours may be /root.
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(r) = run_as {
            cmd.uid(r.uid).gid(r.gid);
        }
        let child = cmd
            .spawn()
            .map_err(io_err(format!("running {}", bins.initdb().display())))?;
        self.watch_pid(child.id());
        let out = child
            .wait_with_output()
            .await
            .map_err(io_err(format!("waiting for {}", bins.initdb().display())))?;
        if out.status.success() {
            return Ok(());
        }
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        Err(LocalPgError::Initdb {
            path: bins.initdb().display().to_string(),
            status: out.status.to_string(),
            dir: self.dir.display().to_string(),
            user: run_as.map_or_else(|| "you".to_owned(), |r| r.name.clone()),
            output: output.trim().to_owned(),
        })
    }

    /// Starts the postmaster on `port`, or on a free port when `None` (retrying when another
    /// process takes it first).
    async fn run_postmaster(
        &mut self,
        bins: &ServerBinaries,
        run_as: Option<&RunAs>,
        port: Option<u16>,
    ) -> Result<(), LocalPgError> {
        let mut last_failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            self.port = match port {
                Some(p) => p,
                None => free_port()?,
            };
            // Appended to, so a restarted server's log keeps the first run's lines.
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())
                .map_err(io_err(format!("creating {}", self.log_path().display())))?;
            let log2 = log
                .try_clone()
                .map_err(io_err("duplicating the server log handle"))?;
            let mut cmd = std::process::Command::new(bins.postgres());
            cmd.arg("-D")
                .arg(self.data_dir())
                .arg("-p")
                .arg(self.port.to_string())
                // Socket in our own dir: never collides with a system server's socket or lock.
                .arg("-k")
                .arg(&self.dir)
                .args(["-c", "listen_addresses=127.0.0.1"])
                // Durability is worthless for a cluster deleted on exit; skipping it makes
                // CREATE DATABASE and migrations several times faster.
                .args(["-c", "fsync=off"])
                .args(["-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off"])
                .args(["-c", "shared_buffers=128MB"])
                // Parallel tests each hold a small pool; the default of 100 is tight.
                .args(["-c", "max_connections=200"])
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                // Own process group: a Ctrl-C in the terminal (or a test runner killing our
                // group) must not half-stop the server; the watchdog stops it properly.
                .process_group(0);
            if let Some(r) = run_as {
                cmd.uid(r.uid).gid(r.gid);
            }
            let child = cmd
                .spawn()
                .map_err(io_err(format!("running {}", bins.postgres().display())))?;
            let pid = child.id();
            self.postmaster = Some(child);
            self.watch_pid(Some(pid));
            match self.wait_until_ready().await {
                Ok(()) => return Ok(()),
                Err(Exited(status)) => {
                    let tail = self.log_tail();
                    if tail.contains("could not bind") || tail.contains("already in use") {
                        last_failure = format!("port {} was taken", self.port);
                        self.postmaster = None;
                        if port.is_some() {
                            // The same port again: give the old socket a moment to go.
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        continue;
                    }
                    return Err(LocalPgError::ServerStart {
                        dir: self.dir.display().to_string(),
                        reason: format!("postgres exited ({status})"),
                        log_tail: tail,
                    });
                }
                Err(TimedOut(last_error)) => {
                    return Err(LocalPgError::ServerStart {
                        dir: self.dir.display().to_string(),
                        reason: format!(
                            "it did not accept connections within {}s (last error: {last_error})",
                            START_TIMEOUT.as_secs()
                        ),
                        log_tail: self.log_tail(),
                    });
                }
            }
        }
        Err(LocalPgError::ServerStart {
            dir: self.dir.display().to_string(),
            reason: format!("no free port after {PORT_ATTEMPTS} attempts ({last_failure})"),
            log_tail: self.log_tail(),
        })
    }

    async fn wait_until_ready(&mut self) -> Result<(), NotReady> {
        let options = PgConnectOptions::from_str(&self.admin_url())
            .map_err(|e| TimedOut(e.to_string()))?
            .ssl_mode(PgSslMode::Disable)
            .disable_statement_logging();
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_error = String::from("none");
        loop {
            if let Some(pm) = self.postmaster.as_mut() {
                if let Ok(Some(status)) = pm.try_wait() {
                    return Err(Exited(status.to_string()));
                }
            }
            if Instant::now() >= deadline {
                return Err(TimedOut(last_error));
            }
            let attempt = tokio::time::timeout(Duration::from_secs(2), options.connect()).await;
            match attempt {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Ok(Err(e)) => last_error = e.to_string(),
                Err(_) => last_error = "connection attempt timed out".to_owned(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

enum NotReady {
    Exited(String),
    TimedOut(String),
}
use NotReady::{Exited, TimedOut};

impl Drop for Cluster {
    /// Blocks briefly (an immediate shutdown takes well under a second). Drop cannot be async,
    /// and the caller must be able to rely on the directory being gone once the guard is.
    fn drop(&mut self) {
        if let Some(mut pm) = self.postmaster.take() {
            if matches!(pm.try_wait(), Ok(None)) {
                // SIGQUIT = immediate shutdown: nothing in a throwaway cluster is worth a
                // checkpoint. `sh -c kill` because std has no kill(2) with a signal choice.
                let _ = std::process::Command::new("sh")
                    .args(["-c", "kill -QUIT \"$1\"", "sh", &pm.id().to_string()])
                    .stderr(Stdio::null())
                    .status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while matches!(pm.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            if matches!(pm.try_wait(), Ok(None)) {
                let _ = pm.kill();
            }
            let _ = pm.wait();
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!(
                    "stagecast: warning: could not remove throwaway cluster directory {}: {e}",
                    self.dir.display()
                );
            }
        }
        if let Some(mut wd) = self.watchdog.take() {
            // Closing the pipe wakes the watchdog; it sees the directory gone and exits at
            // once. Reap it so it does not linger as a zombie.
            drop(wd.stdin.take());
            let _ = wd.wait();
        }
    }
}

/// `<tmp>/stagecast-pg-<pid>-<random>`, mode 0700, owned by the account running the server.
fn create_private_dir(run_as: Option<&RunAs>) -> Result<PathBuf, LocalPgError> {
    let base = std::env::temp_dir();
    let mut last_error = None;
    for _ in 0..8 {
        let dir = base.join(format!(
            "stagecast-pg-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                if let Some(r) = run_as {
                    if let Err(e) = std::os::unix::fs::chown(&dir, Some(r.uid), Some(r.gid)) {
                        let _ = fs::remove_dir(&dir);
                        return Err(LocalPgError::Io {
                            action: format!("giving {} to user {}", dir.display(), r.name),
                            source: e,
                        });
                    }
                }
                // DirBuilder's mode is filtered by the umask; make sure it is exactly 0700.
                let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => {
                return Err(LocalPgError::Io {
                    action: format!("creating a directory in {}", base.display()),
                    source: e,
                })
            }
        }
    }
    Err(LocalPgError::Io {
        action: format!("creating a uniquely named directory in {}", base.display()),
        source: last_error.unwrap_or_else(|| io::Error::other("name collisions")),
    })
}

fn spawn_watchdog(dir: &Path) -> Result<Child, LocalPgError> {
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG_SCRIPT)
        .arg("stagecast-pg-watchdog")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Own process group: survives the Ctrl-C / group kill that takes us down.
        .process_group(0)
        .spawn()
        .map_err(io_err("starting the cleanup watchdog (sh)"))?;
    // std creates the pipe with O_CLOEXEC, so no other child (initdb, the postmaster)
    // inherits the write end and keeps the watchdog waiting after we are gone.
    Ok(child)
}

/// A port the OS considers free right now. Racy by nature; the caller retries on bind errors.
fn free_port() -> Result<u16, LocalPgError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(io_err("finding a free TCP port on 127.0.0.1"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("finding a free TCP port on 127.0.0.1"))?
        .port();
    Ok(port)
}
