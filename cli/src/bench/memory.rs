//! `icn bench --memory`: the coordinator's resident memory as history grows. The
//! coordinator runs as its own process (`icn coordinator`, as operators run it), so its
//! RSS is its own; workers and the member run in this process.
//!
//! Two runs: many trivial jobs, with RSS read after the first thousand and after all;
//! then jobs with 1 MiB outputs, with RSS read after them, after which the coordinator is
//! killed (SIGKILL) and started again, timed from spawn to listening.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use icn_protocol::wire::{Limits, OUTPUT_SIZE_BYTES_MAX};
use icn_protocol::{Fuel, Keypair, PublicKey};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::client::Client;
use crate::config::ConfigFile;
use crate::local::{LocalOptions, LocalWorker};

#[derive(Clone, Debug)]
pub struct MemoryBenchOptions {
    /// Trivial jobs in the first run; RSS is read after the first `first` and after all.
    pub jobs: usize,
    pub first: usize,
    /// Jobs with 1 MiB outputs in the second run.
    pub large_jobs: usize,
    pub workers: usize,
    pub slots: u32,
    pub in_flight: usize,
}

#[derive(Clone, Debug)]
pub struct MemoryBenchReport {
    pub options: MemoryBenchOptions,
    pub rss_after_first: u64,
    pub rss_after_all: u64,
    pub jobs_per_s: f64,
    pub journal_bytes: u64,
    /// From SIGKILL after all trivial jobs to listening again.
    pub long_restart: Duration,
    pub large_rss: u64,
    pub large_journal_bytes: u64,
    pub large_blob_bytes: u64,
    pub restart: Duration,
    pub rss_after_restart: u64,
}

impl MemoryBenchReport {
    /// RSS after all trivial jobs over RSS after the first ones.
    pub fn ratio(&self) -> f64 {
        self.rss_after_all as f64 / self.rss_after_first as f64
    }

    pub fn print(&self) {
        let o = &self.options;
        let mb = |bytes: u64| bytes as f64 / 1e6;
        println!(
            "icn bench --memory: coordinator process, {} workers x {} slots in this process, {} in flight, default eviction",
            o.workers, o.slots, o.in_flight
        );
        println!(
            "trivial jobs: RSS {:.1} MB after {}, {:.1} MB after {} (ratio {:.2}); {:.0} jobs/s; journal {:.1} MB",
            mb(self.rss_after_first),
            o.first,
            mb(self.rss_after_all),
            o.jobs,
            self.ratio(),
            self.jobs_per_s,
            mb(self.journal_bytes)
        );
        println!(
            "restart after SIGKILL with that journal: listening after {:.0} ms",
            self.long_restart.as_secs_f64() * 1000.0
        );
        println!(
            "1 MiB outputs: RSS {:.1} MB after {} jobs; journal file {:.1} MB, of which payloads {:.1} MB",
            mb(self.large_rss),
            o.large_jobs,
            mb(self.large_journal_bytes),
            mb(self.large_blob_bytes)
        );
        println!(
            "restart after SIGKILL: listening after {:.0} ms, RSS then {:.1} MB",
            self.restart.as_secs_f64() * 1000.0,
            mb(self.rss_after_restart)
        );
    }
}

pub async fn run(options: MemoryBenchOptions) -> anyhow::Result<MemoryBenchReport> {
    anyhow::ensure!(
        options.first > 0 && options.first < options.jobs && options.large_jobs > 0,
        "need 0 < first ({}) < jobs ({}) and large jobs ({}) > 0",
        options.first,
        options.jobs,
        options.large_jobs
    );
    let trivial = Limits { fuel: Fuel(1_000_000), ..Limits::default() };
    let hello = wat::parse_str(crate::demo::HELLO_WAT)?;
    let dir = tempfile::tempdir()?;
    let mut commons = ProcessCommons::start(dir.path(), &options).await?;
    let client = Arc::new(commons.client().await?);
    let module = client.ensure_module(&hello).await?;
    let started = Instant::now();
    super::drive(&client, module, options.first, options.in_flight, trivial, |_| vec![]).await?;
    let rss_after_first = commons.coordinator.rss()?;
    let rest = options.jobs - options.first;
    super::drive(&client, module, rest, options.in_flight, trivial, |_| vec![]).await?;
    let jobs_per_s = options.jobs as f64 / started.elapsed().as_secs_f64();
    let rss_after_all = commons.coordinator.rss()?;
    let journal_bytes = journal_size(&dir.path().join("journal.db"));
    drop(client);
    commons.coordinator.kill().await?;
    let (coordinator, long_restart) = Coordinator::spawn(&commons.config, commons.key).await?;
    commons.coordinator = coordinator;
    commons.stop().await;

    let dir = tempfile::tempdir()?;
    let mut commons = ProcessCommons::start(dir.path(), &options).await?;
    let client = Arc::new(commons.client().await?);
    let module = client.ensure_module(&wat::parse_str(crate::demo::MEBIBYTE_WAT)?).await?;
    let large = Limits { output_bytes: OUTPUT_SIZE_BYTES_MAX, ..trivial };
    let input = |i: usize| format!("job {i}").into_bytes();
    super::drive(&client, module, options.large_jobs, options.in_flight, large, input).await?;
    let last = client.submit(&crate::local::submission(module, b"the last one", large)).await?;
    client.watch(last, |_| {}).await?;
    let large_rss = commons.coordinator.rss()?;
    let journal = dir.path().join("journal.db");
    let large_journal_bytes = journal_size(&journal);
    let payloads = icn_coordinator::blobs::BlobStore::open(&journal, Default::default())?;
    let large_blob_bytes = payloads.stored_bytes()?;
    drop(payloads);
    drop(client);

    commons.coordinator.kill().await?;
    let (coordinator, restart) = Coordinator::spawn(&commons.config, commons.key).await?;
    commons.coordinator = coordinator;
    let rss_after_restart = commons.coordinator.rss()?;
    // The restarted coordinator serves what it had.
    let output = commons.client().await?.output(last).await?;
    anyhow::ensure!(
        output.starts_with(b"the last one") && output.len() as u64 == OUTPUT_SIZE_BYTES_MAX,
        "after the restart, the last job's output is not what it wrote"
    );
    commons.stop().await;
    Ok(MemoryBenchReport {
        options,
        rss_after_first,
        rss_after_all,
        jobs_per_s,
        journal_bytes,
        long_restart,
        large_rss,
        large_journal_bytes,
        large_blob_bytes,
        restart,
        rss_after_restart,
    })
}

/// A coordinator process started from files in a folder, workers of this process
/// serving it, and the member who submits.
struct ProcessCommons {
    config: PathBuf,
    key: PublicKey,
    coordinator: Coordinator,
    workers: Vec<LocalWorker>,
    member: Arc<Keypair>,
}

impl ProcessCommons {
    async fn start(dir: &Path, options: &MemoryBenchOptions) -> anyhow::Result<ProcessCommons> {
        let owners: Vec<String> = (0..options.workers).map(|i| format!("coop-{i}")).collect();
        let owners: Vec<&str> = owners.iter().map(String::as_str).collect();
        let local = LocalOptions {
            owners: &owners,
            limits: icn_coordinator::limits::RateLimits::unbounded(),
            ..LocalOptions::default()
        };
        let member = Arc::new(Keypair::generate());
        let workers: Vec<(Arc<Keypair>, String)> =
            owners.iter().map(|o| (Arc::new(Keypair::generate()), o.to_string())).collect();
        let genesis = crate::local::genesis(
            &local,
            &[("ana".into(), member.public())],
            &workers.iter().map(|(k, o)| (k.public(), o.clone())).collect::<Vec<_>>(),
        )?;
        let coordinator_key = Keypair::generate();
        icn_transport::keyfile::write_new(&coordinator_key, &dir.join("coordinator.key"))?;
        std::fs::write(dir.join("genesis.toml"), toml::to_string(&genesis)?)?;
        // A port free a moment ago, so the restarted coordinator listens where it did.
        let listen = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
        let config =
            ConfigFile::new(listen, "coordinator.key".into(), "journal.db".into(), "genesis.toml".into());
        let path = dir.join("coordinator.toml");
        std::fs::write(&path, toml::to_string(&config)?)?;
        let (coordinator, _) = Coordinator::spawn(&path, coordinator_key.public()).await?;
        let workers = crate::local::spawn_workers(
            coordinator.addr,
            coordinator_key.public(),
            workers,
            options.slots,
            false,
            &[],
        )
        .await?;
        let commons =
            ProcessCommons { config: path, key: coordinator_key.public(), coordinator, workers, member };
        Ok(commons)
    }

    async fn client(&self) -> anyhow::Result<Client> {
        Client::connect(self.coordinator.addr, self.key, self.member.clone()).await
    }

    async fn stop(mut self) {
        for worker in &self.workers {
            worker.task.abort();
        }
        let _ = self.coordinator.kill().await;
    }
}

/// An `icn coordinator` child process.
struct Coordinator {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
}

impl Coordinator {
    /// Starts `icn coordinator --config CONFIG` and waits until it listens; how long that took.
    async fn spawn(config: &Path, key: PublicKey) -> anyhow::Result<(Coordinator, Duration)> {
        let log = std::fs::File::create(config.with_extension("log"))?;
        let started = Instant::now();
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("coordinator")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let expected = format!("coordinator {key} listening on ");
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix(&expected) {
                let took = started.elapsed();
                // Keep reading its stdout so the child never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return Ok((Coordinator { child, addr: addr.trim().parse()? }, took));
            }
        }
        let log = std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
        anyhow::bail!("the coordinator stopped before it listened; its log:\n{log}")
    }

    /// Resident set size, from /proc.
    fn rss(&self) -> anyhow::Result<u64> {
        let pid = self.child.id().ok_or_else(|| anyhow::anyhow!("the coordinator process has exited"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| {
            anyhow::anyhow!("cannot read /proc/{pid}/status ({e}); the memory bench needs Linux")
        })?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))?;
        Ok(kib * 1024)
    }

    async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The journal's bytes: its database file and write-ahead log.
fn journal_size(journal: &Path) -> u64 {
    file_bytes(journal) + file_bytes(&icn_coordinator::journal::with_suffix(journal, "-wal"))
}
