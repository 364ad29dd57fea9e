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
    /// Bytes of inputs and modules one member's uploads may keep stored at once
    /// (default 256 MiB).
    #[serde(default = "default_upload_quota_bytes")]
    pub upload_quota_bytes: u64,
    /// Ended jobs kept in memory (the most recent); older ones are answered from the
    /// journal's index (default 10000).
    #[serde(default = "default_ended_jobs_in_memory")]
    pub ended_jobs_in_memory: usize,
    /// How long an ended job stays in memory at most (default 1 hour).
    #[serde(default = "default_ended_job_memory_ms")]
    pub ended_job_memory_ms: u64,
    /// How long a job may go without an accepted result before it fails and its hold is
    /// voided (default 24 hours).
    #[serde(default = "default_job_expiry_ms")]
    pub job_expiry_ms: u64,
    /// Where Prometheus scrapes `/metrics` over HTTP, such as "127.0.0.1:9600"; unset:
    /// not served.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Where members reach the HTTP/JSON API (and `icn ui` connects), such as
    /// "127.0.0.1:9700"; unset: not served.
    #[serde(default)]
    pub http_listen: Option<SocketAddr>,
    /// Fair share: a scope's recent usage halves every this long (default 1 hour).
    #[serde(default = "default_share_half_life_ms")]
    pub share_half_life_ms: u64,
    /// How often one member may write, read and upload, and one connection ask anything
    /// (`[limits.writes]` with `per_second` and `burst`, and so `reads`, `uploads`,
    /// `connection`); unset ones keep their defaults.
    #[serde(default)]
    pub limits: icn_coordinator::limits::RateLimits,
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
fn default_upload_quota_bytes() -> u64 {
    icn_coordinator::blobs::UPLOAD_QUOTA_BYTES_DEFAULT
}

fn default_ended_jobs_in_memory() -> usize {
    CoreConfig::default().ended_jobs_max
}
fn default_ended_job_memory_ms() -> u64 {
    CoreConfig::default().ended_job_memory_ms
}
fn default_job_expiry_ms() -> u64 {
    CoreConfig::default().job_expiry_ms
}
fn default_share_half_life_ms() -> u64 {
    CoreConfig::default().share_half_life_ms
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
            upload_quota_bytes: default_upload_quota_bytes(),
            ended_jobs_in_memory: default_ended_jobs_in_memory(),
            ended_job_memory_ms: default_ended_job_memory_ms(),
            job_expiry_ms: default_job_expiry_ms(),
            share_half_life_ms: default_share_half_life_ms(),
            metrics_listen: None,
            http_listen: None,
            limits: icn_coordinator::limits::RateLimits::default(),
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
            .map_err(|e| anyhow::anyhow!("the coordinator config is not valid: {}", config_error(e)))?;
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
        // A job needs at least its own time limit, and a worker timeout to be declared lost.
        let expiry_min_ms = icn_protocol::wire::TIMEOUT_MS_MAX + self.worker_timeout_ms;
        if self.job_expiry_ms < expiry_min_ms {
            anyhow::bail!(
                "job_expiry_ms is {}; use at least {expiry_min_ms} (the longest time limit a job may ask for, \
                 plus worker_timeout_ms), so a job that may still finish is not failed",
                self.job_expiry_ms
            );
        }
        if !(1_000..=30 * 86_400_000).contains(&self.share_half_life_ms) {
            anyhow::bail!(
                "share_half_life_ms is {}; use a value from 1000 (1 second) to 2592000000 (30 days)",
                self.share_half_life_ms
            );
        }
        self.limits.validate().map_err(anyhow::Error::msg)?;
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
            job_expiry_ms: self.job_expiry_ms,
            share_half_life_ms: self.share_half_life_ms,
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
                upload_quota_bytes: self.upload_quota_bytes,
            },
            metrics_listen: self.metrics_listen,
            http_listen: self.http_listen,
            limits: self.limits,
        };
        Ok((base.join(&self.key), config))
    }
}

/// A config error as an operator reads it: the setting by the name they wrote (no
/// profile), what is wrong in plain words, and where the value came from — the file, or
/// the environment variable that set it.
fn config_error(error: figment::Error) -> String {
    use figment::error::Kind;
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let from = match e.metadata.as_ref() {
                Some(m) => match &m.source {
                    Some(figment::Source::File(file)) => format!(" (in {})", file.display()),
                    _ if m.name.contains("environment") => {
                        format!(" (from the environment variable {ENV_PREFIX}{})", key.to_uppercase())
                    }
                    _ => format!(" (from {})", m.name),
                },
                None => String::new(),
            };
            let takes = |expected: &str| match expected {
                "u64" | "u32" | "usize" | "i64" => "a whole number".to_string(),
                other => other.to_string(),
            };
            let what = match &e.kind {
                Kind::UnknownField(field, known) => {
                    format!("there is no setting `{field}`; the settings are {}", known.join(", "))
                }
                Kind::MissingField(field) => format!("the setting `{field}` is missing"),
                Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
                    format!("`{key}` is {actual}; it takes {}", takes(expected))
                }
                other => format!("`{key}`: {other}"),
            };
            format!("{what}{from}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A setting misspelled or of the wrong type is named as written, with what it takes
    /// and the file it is in: no profile prefix, no nested quoting.
    #[test]
    fn a_bad_setting_is_named_as_written_with_what_it_takes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.toml");
        let base = "listen = \"127.0.0.1:7600\"\nkey = \"k\"\njournal = \"j.db\"\ngenesis = \"g.toml\"\n";
        std::fs::write(&path, format!("{base}heartbeat = 5\n")).unwrap();
        let error = ConfigFile::read(&path).unwrap_err().to_string();
        assert!(
            error.contains("there is no setting `heartbeat`; the settings are listen, key, journal, heartbeat_interval_ms"),
            "{error}"
        );
        assert!(
            error.contains(&format!("(in {})", path.display())) && !error.contains("default."),
            "{error}"
        );
        std::fs::write(&path, format!("{base}heartbeat_interval_ms = \"soon\"\n")).unwrap();
        let error = ConfigFile::read(&path).unwrap_err().to_string();
        assert!(
            error.contains("`heartbeat_interval_ms` is string \"soon\"; it takes a whole number"),
            "{error}"
        );
    }

    /// The example genesis with real keys pasted in, in `dir`.
    fn example_genesis(dir: &Path) -> PathBuf {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/genesis.example.toml"),
        )
        .unwrap()
        .replace("<public key of ana>", &icn_protocol::Keypair::generate().public().to_string())
        .replace("<public key of the worker>", &icn_protocol::Keypair::generate().public().to_string());
        let path = dir.join("genesis.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn settings_out_of_range_are_named_with_what_to_use_instead() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = example_genesis(dir.path());
        let config = ConfigFile::new("127.0.0.1:0".parse().unwrap(), "c.key".into(), "j.db".into(), genesis);
        let (_, resolved) = config.resolve(dir.path()).unwrap();
        assert_eq!(resolved.core.job_expiry_ms, 24 * 3_600_000, "the default expiry");
        assert_eq!(resolved.genesis.scopes[1].credit_limit, Some(icn_protocol::governance::Credits(10_000)));

        let short = ConfigFile { job_expiry_ms: 60_000, ..config.clone() };
        let error = short.resolve(dir.path()).unwrap_err().to_string();
        assert!(error.contains("job_expiry_ms is 60000; use at least 905000"), "{error}");
        let hours = ConfigFile { job_expiry_ms: 2 * 3_600_000, ..config.clone() };
        assert_eq!(hours.resolve(dir.path()).unwrap().1.core.job_expiry_ms, 7_200_000);
        let none = ConfigFile { attempts_max: 0, ..config };
        let error = none.resolve(dir.path()).unwrap_err().to_string();
        assert!(error.contains("attempts_max is 0; use a value from 1 to 100"), "{error}");
    }
}
