//! Container jobs through a real coordinator and real workers over QUIC, each worker
//! running them in the local Docker engine (an image imported here from Debian's
//! busybox-static): a replicated job verifies and settles at the container terms the
//! commons decided, and workers that lie about a container's output or its usage are
//! outvoted, lose trust and are not paid.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use icn_cli::client::{Client, JobRequest};
use icn_cli::local::{self, LocalCommons, LocalOptions};
use icn_coordinator::journal;
use icn_core::record::Record;
use icn_protocol::governance::{Credits, Effect, PlacementPolicy, ScopeId};
use icn_protocol::wire::{Assignment, ExecutorKind, FailureKind, JobState, JobView, Limits, Outcome};
use icn_protocol::{ContentId, JobId, Keypair, PublicKey};
use icn_worker::container::{ContainerConfig, ContainerExecutor, import_busybox};
use icn_worker::executor::{Executor, LiveStderr, Running, Stop};

const TOLERANCE_PERCENT: u32 = 50;

async fn image() -> ContentId {
    import_busybox(std::path::Path::new("/bin/busybox"), "icn-test-busybox")
        .await
        .unwrap_or_else(|e| panic!("the container tests need Docker and Debian's busybox-static: {e}"))
}

/// A commons of three cooperatives whose workers run containers, with container terms
/// decided and replication 2 of 2 in the federation.
async fn start(dir: &std::path::Path, extra: &'static [(PublicKey, &'static str)]) -> LocalCommons {
    let options = LocalOptions {
        owners: &["coop-a", "coop-b", "coop-c"],
        containers: true,
        voting_window_ms: 300,
        mandate_executors: &[ExecutorKind::Wasm, ExecutorKind::Container],
        extra_workers: extra,
        ..LocalOptions::default()
    };
    let commons = LocalCommons::start(dir, options).await.unwrap();
    commons.decide_container_terms(TOLERANCE_PERCENT).await.unwrap();
    let policy = Effect::PlacementPolicy(PlacementPolicy { replicas: 2, quorum: 2 });
    commons.decide(local::federation(), "replicate", policy).await.unwrap();
    commons
}

async fn run(client: &Client, image: ContentId, script: &str, input: &[u8]) -> JobView {
    let args = vec!["sh".into(), "-c".into(), script.into()];
    let limits = Limits { memory_bytes: 64 << 20, timeout_ms: 20_000, ..Limits::default() };
    let request = JobRequest::new(local::federation(), ExecutorKind::Container, image, input, args, limits);
    let job = client.submit(&request).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), client.watch(job, |_| {})).await.unwrap().unwrap()
}

fn records_of(commons: &LocalCommons, job: JobId) -> Vec<Record> {
    journal::read(&commons.journal)
        .unwrap()
        .iter()
        .map(|e| e.decode_record().unwrap())
        .filter(|r| r.job() == Some(job))
        .collect()
}

fn payees(records: &[Record]) -> Vec<(ScopeId, Credits)> {
    records
        .iter()
        .find_map(|r| match r {
            Record::JobCompleted { payees, .. } => Some(payees.clone()),
            _ => None,
        })
        .expect("a completed job's payments are journaled")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_container_job_verifies_and_settles_at_the_decided_terms() {
    let dir = tempfile::tempdir().unwrap();
    let commons = start(dir.path(), &[]).await;
    let image = image().await;
    let ana = commons.client().await.unwrap();
    let script = "cat; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo counted $i";
    let view = run(&ana, image, script, b"hello\n").await;
    assert_eq!(view.state, JobState::Completed, "{view:?}");
    assert_eq!(ana.output(view.job).await.unwrap(), b"hello\ncounted 200000\n");
    let (_, accepted) = view.result.clone().unwrap();
    assert!(accepted.usage.wall_ms > 0, "{:?}", accepted.usage);

    let records = records_of(&commons, view.job);
    // A replica lost on a loaded machine is placed again, on a third cooperative: what
    // must hold is that the two results that count agree, from two cooperatives.
    let owner_of: std::collections::BTreeMap<PublicKey, &ScopeId> = records
        .iter()
        .filter_map(|r| match r {
            Record::TaskPlaced { worker, owner, .. } => Some((*worker, owner)),
            _ => None,
        })
        .collect();
    let agreeing = records
        .iter()
        .find_map(|r| match r {
            Record::Verified { agreeing, dissenting, .. } if dissenting.is_empty() => Some(agreeing),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the replicas' results agree: {records:#?}"));
    let owners: BTreeSet<&ScopeId> = agreeing.iter().map(|w| owner_of[w]).collect();
    assert_eq!((agreeing.len(), owners.len()), (2, 2), "two replicas on two cooperatives: {records:#?}");
    // Each cooperative is paid what the accepted usage costs at the decided terms.
    let terms = icn_protocol::governance::ContainerTerms {
        credits_per_cpu_second: 1,
        credits_per_gib_second: 1,
        usage_tolerance_percent: TOLERANCE_PERCENT,
    };
    let paid = payees(&records);
    assert_eq!(paid.len(), 2);
    assert!(
        paid.iter().all(|(_, credits)| *credits == terms.cost(&accepted.usage, 64 << 20) && credits.0 > 0),
        "{paid:?}"
    );
    let positions = ana.positions().await.unwrap();
    assert_eq!(positions.accounts.iter().map(|a| a.position).sum::<i64>(), 0, "the ledger sums to zero");
    let federation = positions.account(&local::federation()).unwrap();
    assert_eq!((federation.position, federation.reserved), (-2 * paid[0].1.0, 0), "{federation:?}");
    commons.stop().await.unwrap();
}

/// How a lying worker lies about the containers it runs (it runs them for real).
#[derive(Clone, Copy)]
enum Lie {
    /// It claims another output.
    Output,
    /// It claims its container used all the CPU it could in the time it ran, and all
    /// its memory.
    Usage,
    /// Not a lie: it reads a kill for memory as an engine that missed it does, an exit by
    /// SIGKILL (137) with no output.
    OomUnrecorded,
}

struct Liar {
    honest: Arc<ContainerExecutor>,
    lie: Lie,
}

impl Executor for Liar {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Container
    }
    fn has_program(&self, program: &ContentId) -> bool {
        self.honest.has_program(program)
    }
    fn load_program(&self, program: ContentId, bytes: &[u8]) -> Result<(), String> {
        self.honest.load_program(program, bytes)
    }
    fn run(self: Arc<Self>, assignment: Assignment, input: Vec<u8>, stop: Stop, live: LiveStderr) -> Running {
        Box::pin(async move {
            let mut execution = self.honest.clone().run(assignment, input, stop, live).await;
            match self.lie {
                Lie::Output => execution.output = b"not the answer\n".to_vec(),
                Lie::Usage => {
                    execution.usage.cpu_ms = execution.usage.wall_ms;
                    execution.usage.memory_peak_bytes = 64 << 20;
                }
                Lie::OomUnrecorded => {
                    if matches!(execution.outcome, Outcome::Failed { kind: FailureKind::MemoryLimit, .. }) {
                        execution.outcome = Outcome::Exited { code: 137 };
                    }
                }
            }
            execution
        })
    }
}

async fn liar(
    commons: &LocalCommons,
    key: Arc<Keypair>,
    lie: Lie,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let sandbox = ContainerConfig::new(key.public().to_string());
    let honest = Arc::new(ContainerExecutor::connect(sandbox).await.unwrap());
    let config = icn_worker::WorkerConfig {
        key,
        coordinator: commons.coordinator.addr(),
        coordinator_key: commons.coordinator.public_key(),
        slots: 2,
        memory_bytes: 256 << 20,
        metrics_listen: None,
        agent: "liar".into(),
    };
    let executors = icn_worker::Executors::default().with(Arc::new(Liar { honest, lie }));
    tokio::spawn(icn_worker::run(config, executors))
}

/// Runs jobs until the lying worker got a replica and was outvoted: the truth stands, the
/// liar is not paid and loses trust.
async fn outvoted(lie: Lie) {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(Keypair::generate());
    let extra: &'static [(PublicKey, &'static str)] = Box::leak(Box::new([(key.public(), "coop-r")]));
    let commons = start(dir.path(), extra).await;
    let image = image().await;
    let _liar = liar(&commons, key.clone(), lie).await;
    commons.wait_for_workers(4).await.unwrap();
    let ana = commons.client().await.unwrap();
    // Donor fairness rotates work to the cooperative that has earned least, so the
    // liar's gets a replica within a few jobs.
    let mut outvoted = None;
    for i in 0..12u32 {
        let view = run(&ana, image, "sleep 1; cat", format!("job {i}\n").as_bytes()).await;
        assert_eq!(view.state, JobState::Completed, "{view:?}");
        assert_eq!(
            ana.output(view.job).await.unwrap(),
            format!("job {i}\n").into_bytes(),
            "the truth stands"
        );
        let records = records_of(&commons, view.job);
        let dissented = records
            .iter()
            .any(|r| matches!(r, Record::Verified { dissenting, .. } if dissenting.contains(&key.public())));
        if dissented {
            assert!(
                payees(&records).iter().all(|(owner, _)| owner.as_str() != "coop-r"),
                "the liar is not paid"
            );
            outvoted = Some(view.job);
            break;
        }
    }
    assert!(outvoted.is_some(), "the liar never got a replica");
    let workers = ana.workers().await.unwrap();
    let view = workers.iter().find(|w| w.key == key.public()).unwrap();
    assert_eq!(view.trust.disagreements, 1, "{view:?}");
    let positions = ana.positions().await.unwrap();
    assert_eq!(positions.account(&"coop-r".parse::<ScopeId>().unwrap()).unwrap().position, 0);
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lies_about_a_containers_output_is_outvoted_and_loses_trust() {
    outvoted(Lie::Output).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lies_about_a_containers_usage_is_outvoted_and_loses_trust() {
    outvoted(Lie::Usage).await;
}

/// A container killed for memory on two cooperatives, one of whose engines did not record
/// the kill as such (its worker reports an exit by SIGKILL): one result, nobody dissents
/// or loses trust, the job fails at its memory limit and both are paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_killed_for_memory_agree_whether_or_not_their_engine_recorded_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(Keypair::generate());
    let extra: &'static [(PublicKey, &'static str)] = Box::leak(Box::new([(key.public(), "coop-r")]));
    let commons = start(dir.path(), extra).await;
    let image = image().await;
    let _missed = liar(&commons, key.clone(), Lie::OomUnrecorded).await;
    commons.wait_for_workers(4).await.unwrap();
    let ana = commons.client().await.unwrap();
    let args = vec![
        "sh".into(),
        "-c".into(),
        "echo partial; sleep 1; dd if=/dev/zero of=/dev/null bs=128M count=1".into(),
    ];
    let limits = Limits { memory_bytes: 32 << 20, timeout_ms: 20_000, ..Limits::default() };
    let mut mixed = None;
    for _ in 0..12 {
        let request =
            JobRequest::new(local::federation(), ExecutorKind::Container, image, b"", args.clone(), limits);
        let job = ana.submit(&request).await.unwrap();
        let view =
            tokio::time::timeout(Duration::from_secs(60), ana.watch(job, |_| {})).await.unwrap().unwrap();
        let records = records_of(&commons, job);
        assert_eq!(view.state, JobState::Failed, "{view:?}: {records:#?}");
        let failure = view.failure.clone().unwrap_or_default();
        assert!(
            failure.contains("memory limit"),
            "the job ends as the engine that recorded the kill says: {failure:?} {view:?}"
        );
        let verified = records.iter().find_map(|r| match r {
            Record::Verified { agreeing, dissenting, .. } => Some((agreeing.clone(), dissenting.clone())),
            _ => None,
        });
        let reports: Vec<(PublicKey, icn_protocol::wire::ExecutionReport)> = records
            .iter()
            .filter_map(|r| match r {
                Record::ReportReceived { report } => Some((report.signer, report.open().unwrap())),
                _ => None,
            })
            .collect();
        let (agreeing, dissenting) = verified.unwrap_or_else(|| panic!("verified: {records:#?}"));
        assert!(dissenting.is_empty(), "{reports:#?}");
        let paid = records.iter().find_map(|r| match r {
            Record::JobFailedPaid { payees, .. } => Some(payees.len()),
            _ => None,
        });
        assert_eq!(paid, Some(2), "both cooperatives are paid: {records:#?}");
        if agreeing.contains(&key.public()) {
            mixed = Some(job);
            break;
        }
    }
    assert!(mixed.is_some(), "the worker whose engine misses kills never got a replica");
    let workers = ana.workers().await.unwrap();
    let view = workers.iter().find(|w| w.key == key.public()).unwrap();
    assert_eq!((view.trust.disagreements, view.trust.agreements), (0, 1), "{view:?}");
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_job_fails_with_its_reason_and_pays_what_it_used() {
    let dir = tempfile::tempdir().unwrap();
    let commons = start(dir.path(), &[]).await;
    let image = image().await;
    let ana = commons.client().await.unwrap();
    let args = vec!["sh".into(), "-c".into(), "sleep 30".into()];
    let limits = Limits { timeout_ms: 1_000, ..Limits::default() };
    let request = JobRequest::new(local::federation(), ExecutorKind::Container, image, b"", args, limits);
    let job = ana.submit(&request).await.unwrap();
    let view = tokio::time::timeout(Duration::from_secs(60), ana.watch(job, |_| {})).await.unwrap().unwrap();
    assert_eq!(view.state, JobState::Failed, "{view:?}");
    let (_, report) = view.result.clone().unwrap();
    assert!(matches!(report.outcome, Outcome::Failed { kind: FailureKind::Timeout, .. }));
    let paid = records_of(&commons, job).into_iter().find_map(|r| match r {
        Record::JobFailedPaid { payees, .. } => Some(payees),
        _ => None,
    });
    assert!(paid.is_some_and(|p| p.len() == 2), "a timed-out container pays for the time it held memory");
    let positions = ana.positions().await.unwrap();
    assert_eq!(positions.accounts.iter().map(|a| a.position).sum::<i64>(), 0);
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_job_without_decided_terms_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions {
        mandate_executors: &[ExecutorKind::Wasm, ExecutorKind::Container],
        ..LocalOptions::default()
    };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let ana = commons.client().await.unwrap();
    let request = JobRequest::new(
        local::federation(),
        ExecutorKind::Container,
        ContentId::of(b"any image"),
        b"",
        vec![],
        Limits::default(),
    );
    let refused = ana.submit(&request).await.unwrap_err().to_string();
    assert!(
        refused.contains("decided no container terms") && refused.contains("container-terms"),
        "{refused}"
    );
    let entries = journal::read(&commons.journal).unwrap();
    assert!(!entries.iter().any(|e| matches!(e.decode_record().unwrap(), Record::JobSubmitted { .. })));
    commons.stop().await.unwrap();
}
