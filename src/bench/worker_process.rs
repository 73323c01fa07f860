//! The benchmark's workers are `stagecast run` subprocesses, as in production: their peak RSS
//! (`VmHWM` of /proc/<pid>/status) is the worker's own, without the in-process sandbox (which
//! keeps a count per event id) or the benchmark's driver. Each set is started fresh per
//! measurement, so its peak belongs to that measurement.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// What the worker processes need to reach the database and the sandbox.
pub struct WorkerSetup<'a> {
    pub database_url: &'a str,
    pub graph_url: &'a str,
    pub keys: &'a str,
    pub processes: usize,
    pub concurrency: usize,
    pub batch_size: usize,
}

pub struct WorkerProcesses {
    children: Vec<(Child, u16)>,
    http: reqwest::Client,
}

impl WorkerProcesses {
    /// Start the processes and wait until each answers /readyz (database reachable).
    pub async fn start(setup: &WorkerSetup<'_>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("the path of this binary")?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        let mut children = Vec::new();
        for _ in 0..setup.processes.max(1) {
            let port = free_port()?;
            let child = Command::new(&exe)
                .args(["run", "--metrics-addr", &format!("127.0.0.1:{port}")])
                .env("DATABASE_URL", setup.database_url)
                .env("STAGECAST_META_GRAPH_URL", setup.graph_url)
                .env("STAGECAST_KEYS", setup.keys)
                // The sandbox is the only destination: no per-pixel pacing below its speed.
                .env("STAGECAST_META_RATE_LIMIT", "10000")
                .env("STAGECAST_CONCURRENCY", setup.concurrency.to_string())
                .env("STAGECAST_BATCH_SIZE", setup.batch_size.to_string())
                .env("STAGECAST_LOG", "error")
                .env("NO_PROXY", "127.0.0.1,localhost")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("starting a `stagecast run` worker")?;
            children.push((child, port));
        }
        let procs = Self { children, http };
        for (_, port) in &procs.children {
            procs.wait_ready(*port).await?;
        }
        Ok(procs)
    }

    async fn wait_ready(&self, port: u16) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{port}/readyz");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("a `stagecast run` worker was not ready within 30 s ({url})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The largest peak RSS among the processes, in bytes.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        let mut peak = 0;
        for (child, _) in &self.children {
            let pid = child.id().context("a worker exited early")?;
            peak = peak.max(vm_hwm(pid)?);
        }
        Ok(peak)
    }

    /// Every process's /metrics, concatenated (sums are added up by the reader).
    pub async fn metrics(&self) -> String {
        let mut text = String::new();
        for (_, port) in &self.children {
            let url = format!("http://127.0.0.1:{port}/metrics");
            if let Ok(r) = self.http.get(&url).send().await {
                if let Ok(body) = r.text().await {
                    text.push_str(&body);
                    text.push('\n');
                }
            }
        }
        text
    }

    /// Stop them (the queue is drained by then: nothing is held).
    pub async fn stop(mut self) {
        for (child, _) in &mut self.children {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// A port nothing listens on right now (the child binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Peak resident set size of a process, from `VmHWM` (kB) in /proc/<pid>/status.
fn vm_hwm(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (Linux only)"))?;
    parse_vm_hwm(&status).with_context(|| format!("no VmHWM in /proc/{pid}/status"))
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn vm_hwm_is_read_in_bytes() {
        let status =
            "Name:\tstagecast\nVmPeak:\t  900 kB\nVmHWM:\t   51234 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(super::parse_vm_hwm(status), Some(51234 * 1024));
        assert_eq!(super::parse_vm_hwm("Name:\tx\n"), None);
    }
}
