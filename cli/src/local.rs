//! A whole commons on this machine: a coordinator and workers on loopback, in this
//! process, over real QUIC. Used by `icn demo`, `icn bench` and the tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use icn_coordinator::{Coordinator, CoordinatorConfig};
use icn_core::CoreConfig;
use icn_governance::Genesis;
use icn_governance::genesis::{GenesisMember, GenesisScope, GenesisWorker};
use icn_protocol::governance::{Credits, Mandate, PriceSchedule, Rule, ScopeId, ScopeKind, Standing};
use icn_protocol::wire::{ExecutorKind, Limits};
use icn_protocol::{Keypair, PublicKey};
use icn_worker::{WasmExecutor, WorkerConfig};
use tokio::task::JoinHandle;

use crate::client::Client;

pub struct LocalWorker {
    pub key: PublicKey,
    pub owner: String,
    pub task: JoinHandle<anyhow::Result<()>>,
    /// Where this worker serves `/metrics`, when it does.
    pub metrics: Option<std::net::SocketAddr>,
}

/// The federation every local commons has; its members submit jobs for it.
pub const FEDERATION: &str = "fed-north";

pub struct LocalMember {
    pub name: String,
    pub key: Arc<Keypair>,
}

pub struct LocalCommons {
    pub coordinator: Coordinator,
    pub journal: PathBuf,
    pub workers: Vec<LocalWorker>,
    /// The first member; see [`LocalCommons::members`] for all.
    pub member: Arc<Keypair>,
    pub member_name: String,
    pub members: Vec<LocalMember>,
    pub genesis: Genesis,
}

pub struct LocalOptions<'a> {
    /// One cooperative of the federation per entry, each donating one worker.
    pub owners: &'a [&'a str],
    /// Members of the federation with vote and submit standing; the i-th also votes
    /// in the i-th cooperative.
    pub members: &'a [&'a str],
    /// Members who hold only vote standing in the commons and none in the federation;
    /// they come after `members` in the commons' member list.
    pub commons_only: &'a [&'a str],
    pub slots: u32,
    pub heartbeat_interval_ms: u64,
    pub worker_timeout_ms: u64,
    pub voting_window_ms: u64,
    /// A founding mandate for the federation with this budget, so jobs can run
    /// without a vote first; `None` leaves the federation to decide one.
    pub founding_budget: Option<Credits>,
    /// How long the founding mandate holds, from the commons' first start.
    pub founding_period_ms: u64,
    /// The federation's founding credit line: how far below zero its account may go.
    pub credit_limit: Credits,
    /// More admitted worker keys (with their cooperative) that the caller runs itself.
    pub extra_workers: &'a [(PublicKey, &'a str)],
    /// The executors the founding mandate allows.
    pub mandate_executors: &'a [ExecutorKind],
    /// Ended jobs the coordinator keeps in memory.
    pub ended_jobs_in_memory: usize,
    /// Where keys persist: each one is read from `NAME.key` there, or made and written on
    /// the first start, so the commons can stop and start again on its journal, from the
    /// genesis that journal began with (the options that shape a genesis then change
    /// nothing: decisions do). `None`: fresh keys every time.
    pub keys: Option<&'a Path>,
    /// Where the coordinator listens (default: any free port on loopback).
    pub listen: std::net::SocketAddr,
    /// A second federation beside the first, with the same credit line, founding mandate
    /// and member standing: jobs of two scopes sharing one pool of workers.
    pub second_federation: Option<&'a str>,
    /// Where the coordinator serves `/metrics` (port 0: any free one); `None`: nowhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where the coordinator serves the HTTP/JSON member API (port 0: any free one).
    pub http_listen: Option<std::net::SocketAddr>,
    /// Workers also run container jobs, through the local Docker engine.
    pub containers: bool,
    /// Where the workers serve `/metrics`, the i-th worker at the i-th address; workers
    /// past the list serve none.
    pub worker_metrics: &'a [std::net::SocketAddr],
    /// Bytes each member may keep uploaded (modules and inputs) at the coordinator.
    pub upload_quota_bytes: u64,
    /// Changes the genesis before the commons starts (standing, mandates, credit lines a
    /// test needs that the options above do not make); it must still validate.
    pub genesis_edit: Option<fn(&mut Genesis)>,
    /// How often a member, and a connection, may ask the member API.
    pub limits: icn_coordinator::limits::RateLimits,
}

impl Default for LocalOptions<'_> {
    fn default() -> Self {
        LocalOptions {
            owners: &["coop-a", "coop-b", "coop-c"],
            members: &["ana", "ben"],
            commons_only: &[],
            slots: 2,
            heartbeat_interval_ms: 200,
            worker_timeout_ms: 2_000,
            voting_window_ms: 1_000,
            founding_budget: Some(Credits(1_000_000_000)),
            founding_period_ms: DAY_MS,
            credit_limit: Credits(1_000_000_000),
            extra_workers: &[],
            mandate_executors: &[ExecutorKind::Wasm],
            ended_jobs_in_memory: CoreConfig::default().ended_jobs_max,
            second_federation: None,
            metrics_listen: None,
            http_listen: None,
            containers: false,
            worker_metrics: &[],
            genesis_edit: None,
            upload_quota_bytes: icn_coordinator::blobs::UPLOAD_QUOTA_BYTES_DEFAULT,
            limits: icn_coordinator::limits::RateLimits::default(),
            keys: None,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// The federation's scope id.
pub fn federation() -> ScopeId {
    FEDERATION.parse().expect("a valid scope name")
}

/// A wasm job for the federation, under whatever mandate it holds.
pub fn submission(
    module: icn_protocol::ContentId,
    input: &[u8],
    limits: Limits,
) -> crate::client::JobRequest {
    crate::client::JobRequest::new(federation(), ExecutorKind::Wasm, module, input, vec![], limits)
}

pub const DAY_MS: u64 = 24 * 3_600_000;

/// The genesis the journal at `path` began with; `None` when there is no journal yet.
pub fn journaled_genesis(path: &Path) -> anyhow::Result<Option<Genesis>> {
    use icn_core::trace::Source;
    if !path.exists() {
        return Ok(None);
    }
    let reader = icn_coordinator::journal::JournalReader::open(path)?;
    let first = match reader.entry(0) {
        Ok(entry) => entry,
        Err(_) => return Ok(None),
    };
    match first.decode_record()? {
        icn_core::Record::Governance(icn_governance::Event::Genesis(genesis)) => Ok(Some(genesis)),
        other => anyhow::bail!(
            "the journal {} does not begin with a genesis (its first entry is {other:?})",
            path.display()
        ),
    }
}

/// A mandate for the federation: `budget` for a day, wasm only, default limits.
pub fn day_mandate(budget: Credits) -> Mandate {
    Mandate {
        scope: federation(),
        budget,
        period_ms: DAY_MS,
        executors: vec![ExecutorKind::Wasm],
        limits: Limits::default(),
    }
}

/// The key called `name`: kept in `dir` as `NAME.key` (read, or made and written the first
/// time), or fresh without a directory.
fn key_in(dir: Option<&Path>, name: &str) -> anyhow::Result<Arc<Keypair>> {
    let Some(dir) = dir else { return Ok(Arc::new(Keypair::generate())) };
    let path = dir.join(format!("{name}.key"));
    if path.exists() {
        return Ok(Arc::new(icn_transport::keyfile::read(&path)?));
    }
    let key = Keypair::generate();
    icn_transport::keyfile::write_new(&key, &path)?;
    Ok(Arc::new(key))
}

/// A commons holding one federation whose cooperatives are `owners`.
pub fn genesis(
    options: &LocalOptions<'_>,
    members: &[(String, PublicKey)],
    workers: &[(PublicKey, String)],
) -> anyhow::Result<Genesis> {
    let rule = |voting_window_ms| Rule {
        quorum: "1/2".parse().expect("valid"),
        approval: "2/3".parse().expect("valid"),
        voting_window_ms,
    };
    let mut scopes = vec![
        GenesisScope {
            id: "commons".parse()?,
            kind: ScopeKind::Commons,
            parent: None,
            rule: rule(options.voting_window_ms),
            prices: Some(PriceSchedule { credits_per_mega_fuel: 1 }),
            policy: None,
            credit_limit: None,
        },
        GenesisScope {
            id: federation(),
            kind: ScopeKind::Federation,
            parent: Some("commons".parse()?),
            rule: rule(options.voting_window_ms),
            prices: None,
            policy: None,
            credit_limit: Some(options.credit_limit),
        },
    ];
    let second: Option<ScopeId> = options.second_federation.map(str::parse).transpose()?;
    if let Some(id) = &second {
        scopes.push(GenesisScope { id: id.clone(), ..scopes[1].clone() });
    }
    let extra_owners =
        options.extra_workers.iter().map(|(_, owner)| *owner).filter(|o| !options.owners.contains(o));
    let owners: std::collections::BTreeSet<&str> =
        options.owners.iter().copied().chain(extra_owners).collect();
    for owner in owners {
        scopes.push(GenesisScope {
            id: owner.parse()?,
            kind: ScopeKind::Cooperative,
            parent: Some(federation()),
            rule: rule(options.voting_window_ms),
            prices: None,
            policy: None,
            credit_limit: None,
        });
    }
    let members = members
        .iter()
        .enumerate()
        .map(|(i, (name, key))| {
            // Every member also votes in the commons, which settles disputes.
            let mut standing = std::collections::BTreeMap::from([("commons".parse()?, vec![Standing::Vote])]);
            if !options.commons_only.contains(&name.as_str()) {
                standing.insert(federation(), vec![Standing::Vote, Standing::Submit]);
                if let Some(id) = &second {
                    standing.insert(id.clone(), vec![Standing::Vote, Standing::Submit]);
                }
                if let Some(owner) = options.owners.get(i) {
                    standing.insert(owner.parse()?, vec![Standing::Vote, Standing::Donate]);
                }
            }
            Ok(GenesisMember { name: name.clone(), key: *key, standing })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let workers = workers
        .iter()
        .map(|(key, owner)| Ok(GenesisWorker { key: *key, owner: owner.parse()? }))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The founding mandate lets tests and benchmarks ask for anything the sandbox allows.
    let most = Limits {
        fuel: icn_protocol::Fuel(icn_protocol::wire::FUEL_MAX),
        memory_bytes: icn_protocol::wire::MEMORY_BYTES_MAX,
        timeout_ms: icn_protocol::wire::TIMEOUT_MS_MAX,
        output_bytes: icn_protocol::wire::OUTPUT_SIZE_BYTES_MAX,
    };
    let scopes_with_mandates = std::iter::once(federation()).chain(second);
    let mandates = options
        .founding_budget
        .into_iter()
        .flat_map(|budget| {
            scopes_with_mandates.clone().map(move |scope| Mandate {
                scope,
                limits: most,
                executors: options.mandate_executors.to_vec(),
                period_ms: options.founding_period_ms,
                ..day_mandate(budget)
            })
        })
        .collect();
    let mut genesis = Genesis { scopes, members, workers, mandates, free_compute: false };
    if let Some(edit) = options.genesis_edit {
        edit(&mut genesis);
    }
    genesis.validate()?;
    Ok(genesis)
}

/// Worker agents in this process, one per key, serving the coordinator at `addr`; with
/// `containers`, each also runs container jobs through the local Docker engine (and the
/// commons fails to start when the engine does not answer). A `metrics` address with port 0
/// takes a free port: [`LocalWorker::metrics`] says which.
pub async fn spawn_workers(
    addr: std::net::SocketAddr,
    coordinator_key: PublicKey,
    keys: Vec<(Arc<Keypair>, String)>,
    slots: u32,
    containers: bool,
    metrics: &[std::net::SocketAddr],
) -> anyhow::Result<Vec<LocalWorker>> {
    let mut workers = Vec::new();
    for (i, (key, owner)) in keys.into_iter().enumerate() {
        let config = WorkerConfig {
            key: key.clone(),
            coordinator: addr,
            coordinator_key,
            slots,
            memory_bytes: 256 * 1024 * 1024,
            metrics_listen: metrics.get(i).copied(),
            agent: crate::client::agent(),
        };
        let mut executors = icn_worker::Executors::from(Arc::new(WasmExecutor::new()?));
        if containers {
            let sandbox = icn_worker::ContainerConfig::new(key.public().to_string());
            let executor =
                icn_worker::ContainerExecutor::connect(sandbox).await.map_err(anyhow::Error::msg)?;
            executors = executors.with(Arc::new(executor));
        }
        let worker = icn_worker::Worker::start(config, executors)
            .await
            .map_err(|e| e.context(format!("the worker of {owner} cannot start")))?;
        let metrics = worker.metrics_addr();
        let task = tokio::spawn(worker.run());
        workers.push(LocalWorker { key: key.public(), owner, task, metrics });
    }
    Ok(workers)
}

impl LocalCommons {
    pub async fn start(dir: &Path, options: LocalOptions<'_>) -> anyhow::Result<LocalCommons> {
        let key = |name: &str| key_in(options.keys, name);
        let coordinator_key = key("coordinator")?;
        anyhow::ensure!(!options.members.is_empty(), "a local commons needs at least one member");
        let members: Vec<LocalMember> = options
            .members
            .iter()
            .chain(options.commons_only)
            .map(|name| Ok(LocalMember { name: name.to_string(), key: key(name)? }))
            .collect::<anyhow::Result<_>>()?;
        let worker_keys: Vec<(Arc<Keypair>, String)> = options
            .owners
            .iter()
            .map(|owner| Ok((key(&format!("{owner}-worker"))?, owner.to_string())))
            .collect::<anyhow::Result<_>>()?;
        let journal = dir.join("journal.db");
        let journaled = match options.keys {
            Some(_) => journaled_genesis(&journal)?,
            None => None,
        };
        let genesis = match journaled {
            Some(genesis) => genesis,
            None => genesis(
                &options,
                &members.iter().map(|m| (m.name.clone(), m.key.public())).collect::<Vec<_>>(),
                &worker_keys
                    .iter()
                    .map(|(key, owner)| (key.public(), owner.clone()))
                    .chain(options.extra_workers.iter().map(|(key, owner)| (*key, owner.to_string())))
                    .collect::<Vec<_>>(),
            )?,
        };
        let config = CoordinatorConfig {
            listen: options.listen,
            journal: journal.clone(),
            heartbeat_interval_ms: options.heartbeat_interval_ms,
            core: CoreConfig {
                worker_timeout_ms: options.worker_timeout_ms,
                ended_jobs_max: options.ended_jobs_in_memory,
                ..CoreConfig::default()
            },
            genesis: genesis.clone(),
            accept_journal_end: false,
            metrics_listen: options.metrics_listen,
            http_listen: options.http_listen,
            retention: icn_coordinator::blobs::Retention {
                upload_quota_bytes: options.upload_quota_bytes,
                ..icn_coordinator::blobs::Retention::default()
            },
            limits: options.limits,
        };
        let coordinator = Coordinator::start(coordinator_key, config).await?;
        let (addr, public) = (coordinator.addr(), coordinator.public_key());
        let workers = spawn_workers(
            addr,
            public,
            worker_keys,
            options.slots,
            options.containers,
            options.worker_metrics,
        )
        .await?;
        let commons = LocalCommons {
            coordinator,
            journal,
            workers,
            member: members[0].key.clone(),
            member_name: members[0].name.clone(),
            members,
            genesis,
        };
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
        self.client_for(self.member.clone()).await
    }

    pub async fn client_for(&self, key: Arc<Keypair>) -> anyhow::Result<Client> {
        Client::connect(self.coordinator.addr(), self.coordinator.public_key(), key).await
    }

    /// Connects as a worker with `key` without running the agent, for callers that speak
    /// the worker protocol themselves (to test what a misbehaving worker can do).
    pub async fn connect_worker(
        &self,
        key: &Keypair,
        slots: u32,
    ) -> anyhow::Result<(quinn::Endpoint, icn_transport::endpoint::Session)> {
        use icn_protocol::wire::{Capacity, ExecutorKind, Hello, Role};
        let endpoint = icn_transport::endpoint::client_endpoint()?;
        let hello = Hello {
            role: Role::Worker,
            channel_binding: [0; 32],
            agent: "hand-made".into(),
            capacity: Some(Capacity { slots, memory_bytes: 1 << 30, executors: vec![ExecutorKind::Wasm] }),
            seen: None,
            running: vec![],
        };
        let mut seals = icn_protocol::SealKeeper::new(self.coordinator.public_key(), None)?;
        let session = icn_transport::endpoint::connect(
            &endpoint,
            self.coordinator.addr(),
            self.coordinator.public_key(),
            key,
            hello,
            &mut seals,
        )
        .await?;
        Ok((endpoint, session))
    }

    pub fn owner_of(&self, worker: &PublicKey) -> &str {
        self.workers.iter().find(|w| w.key == *worker).map_or("?", |w| w.owner.as_str())
    }

    /// Decides `effect` in `scope`: the first member proposes, every member who may
    /// votes yes, and this returns once the voting window closed with it accepted.
    pub async fn decide(
        &self,
        scope: ScopeId,
        title: &str,
        effect: icn_protocol::governance::Effect,
    ) -> anyhow::Result<icn_protocol::views::DecisionView> {
        let proposal = icn_protocol::governance::Proposal { scope, title: title.into(), effect };
        let proposer = self.client().await?;
        let (id, _) = proposer.propose(&proposal).await?;
        for member in &self.members {
            // A member outside the electorate is refused; the others carry it.
            let _ = self
                .client_for(member.key.clone())
                .await?
                .vote(id, icn_protocol::governance::Choice::Yes)
                .await;
        }
        let decision = crate::demo::wait_for_decision(&proposer, id).await?;
        anyhow::ensure!(decision.accepted, "{title:?} was not accepted: {:?}", decision.tally);
        Ok(decision)
    }

    /// Container jobs of the whole commons get a price: 1 credit a CPU-second and 1 a
    /// GiB-second, replicas agreeing within `tolerance_percent`.
    pub async fn decide_container_terms(
        &self,
        tolerance_percent: u32,
    ) -> anyhow::Result<icn_protocol::views::DecisionView> {
        let terms = icn_protocol::governance::ContainerTerms {
            credits_per_cpu_second: 1,
            credits_per_gib_second: 1,
            usage_tolerance_percent: tolerance_percent,
        };
        let commons = "commons".parse().expect("a valid scope name");
        self.decide(commons, "Container prices", icn_protocol::governance::Effect::ContainerTerms(terms))
            .await
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        for worker in &self.workers {
            worker.task.abort();
        }
        self.coordinator.shutdown().await
    }
}
