//! The coordinator's configuration file.

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

impl ConfigFile {
    pub fn read(path: &Path) -> anyhow::Result<(ConfigFile, PathBuf)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the coordinator config {}", path.display()))?;
        let config: ConfigFile = toml::from_str(&text)
            .with_context(|| format!("the coordinator config {} is not valid", path.display()))?;
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
        let genesis_path = base.join(&self.genesis);
        let text = std::fs::read_to_string(&genesis_path)
            .with_context(|| format!("cannot read the genesis {}", genesis_path.display()))?;
        let genesis = icn_governance::Genesis::parse(&text)
            .with_context(|| format!("the genesis {} is not valid", genesis_path.display()))?;
        let core = CoreConfig {
            worker_timeout_ms: self.worker_timeout_ms,
            attempts_max: self.attempts_max,
            ..CoreConfig::default()
        };
        let config = CoordinatorConfig {
            listen: self.listen,
            journal: base.join(&self.journal),
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            core,
            genesis,
            accept_journal_end: false,
        };
        Ok((base.join(&self.key), config))
    }
}
