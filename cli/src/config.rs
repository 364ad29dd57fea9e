//! The coordinator's configuration: a TOML file, and environment variables named
//! `ICN_CONFIG_<SETTING>` (for example `ICN_CONFIG_WORKER_TIMEOUT_MS=2000`) that override
//! it, as container deployments expect. Layered with `figment`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use icn_coordinator::CoordinatorConfig;
use icn_core::CoreConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where workers and members reach the coordinator.
    pub listen: SocketAddr,
    /// The coordinator's key file (relative paths are from the config file's folder).
    pub key: PathBuf,
    /// The journal database file.
    pub journal: PathBuf,
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    #[serde(default = "default_worker_timeout_ms")]
    pub worker_timeout_ms: u64,
    #[serde(default = "default_attempts_max")]
    pub attempts_max: u32,
    /// How long a job's input and output are kept beside the journal (default 7 days).
    #[serde(default = "default_payload_retention_ms")]
    pub payload_retention_ms: u64,
    /// How long an output is kept once a member fetched it (default 1 hour).
    #[serde(default = "default_fetched_output_retention_ms")]
    pub fetched_output_retention_ms: u64,
    /// Ended jobs kept in memory (the most recent); older ones are answered from the
    /// journal's index (default 10000).
    #[serde(default = "default_ended_jobs_in_memory")]
    pub ended_jobs_in_memory: usize,
    /// How long an ended job stays in memory at most (default 1 hour).
    #[serde(default = "default_ended_job_memory_ms")]
    pub ended_job_memory_ms: u64,
    /// The founding document (scopes, members, workers, founding mandates). Read on
    /// every start; after the first, it must match the journal's first entry.
    pub genesis: PathBuf,
}

fn default_heartbeat_interval_ms() -> u64 {
    500
}
fn default_worker_timeout_ms() -> u64 {
    5_000
}
fn default_attempts_max() -> u32 {
    5
}
fn default_payload_retention_ms() -> u64 {
    icn_coordinator::blobs::Retention::default().retention_ms
}
fn default_fetched_output_retention_ms() -> u64 {
    icn_coordinator::blobs::Retention::default().fetched_retention_ms
}

fn default_ended_jobs_in_memory() -> usize {
    CoreConfig::default().ended_jobs_max
}
fn default_ended_job_memory_ms() -> u64 {
    CoreConfig::default().ended_job_memory_ms
}

/// The prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "ICN_CONFIG_";

impl ConfigFile {
    /// A config with every optional setting at its default.
    pub fn new(listen: SocketAddr, key: PathBuf, journal: PathBuf, genesis: PathBuf) -> ConfigFile {
        ConfigFile {
            listen,
            key,
            journal,
            heartbeat_interval_ms: default_heartbeat_interval_ms(),
            worker_timeout_ms: default_worker_timeout_ms(),
            attempts_max: default_attempts_max(),
            payload_retention_ms: default_payload_retention_ms(),
            fetched_output_retention_ms: default_fetched_output_retention_ms(),
            ended_jobs_in_memory: default_ended_jobs_in_memory(),
            ended_job_memory_ms: default_ended_job_memory_ms(),
            genesis,
        }
    }

    /// Reads the file at `path` with the environment's overrides on top.
    pub fn read(path: &Path) -> anyhow::Result<(ConfigFile, PathBuf)> {
        use figment::providers::{Env, Format, Toml};
        anyhow::ensure!(
            path.is_file(),
            "cannot read the coordinator config {}: no such file",
            path.display()
        );
        let config: ConfigFile = figment::Figment::new()
            .merge(Toml::file_exact(path))
            .merge(Env::prefixed(ENV_PREFIX))
            .extract()
            .with_context(|| {
                format!(
                    "the coordinator config {} (with any {ENV_PREFIX}* variables) is not valid",
                    path.display()
                )
            })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((config, base))
    }

    /// Resolves paths against `base` and parses every key, naming any bad one.
    pub fn resolve(&self, base: &Path) -> anyhow::Result<(PathBuf, CoordinatorConfig)> {
        if !(10..=60_000).contains(&self.heartbeat_interval_ms) {
            anyhow::bail!(
                "heartbeat_interval_ms is {}; use a value from 10 to 60000",
                self.heartbeat_interval_ms
            );
        }
        if self.worker_timeout_ms < 2 * self.heartbeat_interval_ms {
            anyhow::bail!(
                "worker_timeout_ms ({}) must be at least twice heartbeat_interval_ms ({})",
                self.worker_timeout_ms,
                self.heartbeat_interval_ms
            );
        }
        if !(1..=100).contains(&self.attempts_max) {
            anyhow::bail!("attempts_max is {}; use a value from 1 to 100", self.attempts_max);
        }
        if self.ended_jobs_in_memory > 1_000_000 {
            anyhow::bail!(
                "ended_jobs_in_memory is {}; use at most 1000000 (older jobs are answered from the journal)",
                self.ended_jobs_in_memory
            );
        }
        let genesis_path = base.join(&self.genesis);
        let text = std::fs::read_to_string(&genesis_path)
            .with_context(|| format!("cannot read the genesis {}", genesis_path.display()))?;
        let genesis = icn_governance::Genesis::parse(&text)
            .with_context(|| format!("the genesis {} is not valid", genesis_path.display()))?;
        let core = CoreConfig {
            worker_timeout_ms: self.worker_timeout_ms,
            attempts_max: self.attempts_max,
            ended_jobs_max: self.ended_jobs_in_memory,
            ended_job_memory_ms: self.ended_job_memory_ms,
            ..CoreConfig::default()
        };
        let config = CoordinatorConfig {
            listen: self.listen,
            journal: base.join(&self.journal),
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            core,
            genesis,
            accept_journal_end: false,
            retention: icn_coordinator::blobs::Retention {
                retention_ms: self.payload_retention_ms,
                fetched_retention_ms: self.fetched_output_retention_ms,
            },
        };
        Ok((base.join(&self.key), config))
    }
}
