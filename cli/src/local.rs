//! A whole commons on this machine: a coordinator and workers on loopback, in this
//! process, over real QUIC. Used by `icn demo`, `icn bench` and the tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use icn_coordinator::core::{Admission, CoreConfig};
use icn_coordinator::{Coordinator, CoordinatorConfig};
use icn_protocol::{Keypair, PublicKey};
use icn_worker::{WasmExecutor, WorkerConfig};
use tokio::task::JoinHandle;

use crate::client::Client;

pub struct LocalWorker {
    pub key: PublicKey,
    pub owner: String,
    pub task: JoinHandle<anyhow::Result<()>>,
}

pub struct LocalCommons {
    pub coordinator: Coordinator,
    pub journal: PathBuf,
    pub workers: Vec<LocalWorker>,
    pub member: Arc<Keypair>,
    pub member_name: String,
}

pub struct LocalOptions<'a> {
    pub owners: &'a [&'a str],
    pub slots: u32,
    pub heartbeat_interval_ms: u64,
    pub worker_timeout_ms: u64,
}

impl Default for LocalOptions<'_> {
    fn default() -> Self {
        LocalOptions {
            owners: &["coop-a", "coop-b", "coop-c"],
            slots: 2,
            heartbeat_interval_ms: 200,
            worker_timeout_ms: 2_000,
        }
    }
}

impl LocalCommons {
    pub async fn start(dir: &Path, options: LocalOptions<'_>) -> anyhow::Result<LocalCommons> {
        let coordinator_key = Arc::new(Keypair::generate());
        let member = Arc::new(Keypair::generate());
        let worker_keys: Vec<(Arc<Keypair>, String)> =
            options.owners.iter().map(|owner| (Arc::new(Keypair::generate()), owner.to_string())).collect();
        let admission = Admission {
            workers: worker_keys.iter().map(|(key, owner)| (key.public(), owner.clone())).collect(),
            submitters: HashMap::from([(member.public(), "federation".to_string())]),
        };
        let journal = dir.join("journal.db");
        let config = CoordinatorConfig {
            listen: "127.0.0.1:0".parse()?,
            journal: journal.clone(),
            heartbeat_interval_ms: options.heartbeat_interval_ms,
            core: CoreConfig { worker_timeout_ms: options.worker_timeout_ms, ..CoreConfig::default() },
            admission,
        };
        let coordinator = Coordinator::start(coordinator_key, config).await?;
        let mut workers = Vec::new();
        for (key, owner) in worker_keys {
            let config = WorkerConfig {
                key: key.clone(),
                coordinator: coordinator.addr(),
                coordinator_key: coordinator.public_key(),
                slots: options.slots,
                memory_bytes: 256 * 1024 * 1024,
                agent: crate::client::agent(),
            };
            let executor = Arc::new(WasmExecutor::new()?);
            let task = tokio::spawn(icn_worker::run(config, executor));
            workers.push(LocalWorker { key: key.public(), owner, task });
        }
        let commons =
            LocalCommons { coordinator, journal, workers, member, member_name: "federation".into() };
        commons.wait_for_workers(commons.workers.len()).await?;
        Ok(commons)
    }

    /// Waits until `count` workers are connected (at most ten seconds).
    pub async fn wait_for_workers(&self, count: usize) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.coordinator.workers().await?.len() < count {
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "only {} of {count} workers connected within 10 s",
                    self.coordinator.workers().await?.len()
                );
            }
            if let Some(failed) = self.workers.iter().find(|w| w.task.is_finished()) {
                anyhow::bail!("worker of {} stopped while starting", failed.owner);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        Client::connect(self.coordinator.addr(), self.coordinator.public_key(), self.member.clone()).await
    }

    pub fn owner_of(&self, worker: &PublicKey) -> &str {
        self.workers.iter().find(|w| w.key == *worker).map_or("?", |w| w.owner.as_str())
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        for worker in &self.workers {
            worker.task.abort();
        }
        self.coordinator.shutdown().await
    }
}
