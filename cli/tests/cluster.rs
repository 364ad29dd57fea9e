//! A real coordinator and real workers as QUIC peers on loopback, in this process.

use std::sync::Arc;
use std::time::Duration;

use icn_cli::client::{Client, JobRequest};
use icn_cli::demo::{BUSY_WAT, HELLO_WAT, SPIN_WAT, SUM_WAT};
use icn_cli::local::{LocalCommons, LocalOptions};
use icn_coordinator::journal;
use icn_core::record::Record;
use icn_protocol::wire::{
    Answer, ClientResponse, CoordinatorMessage, ExecutionReport, FailureKind, Hello, JobState, JobView,
    Limits, Outcome, Role, WorkerMessage,
};
use icn_protocol::{ContentId, Envelope, Fuel, JobId, Keypair, SealKeeper};
use icn_transport::endpoint as transport;

fn two_workers() -> LocalOptions<'static> {
    LocalOptions { owners: &["coop-a", "coop-b"], ..LocalOptions::default() }
}

fn job(module: ContentId, input: &[u8], limits: Limits) -> JobRequest {
    icn_cli::local::submission(module, input, limits)
}

async fn submit_wat(client: &Client, wat: &str, input: &[u8], limits: Limits) -> JobId {
    let bytes = wat::parse_str(wat).unwrap();
    let module = client.ensure_module(&bytes).await.unwrap();
    client.submit(&job(module, input, limits)).await.unwrap()
}

async fn run_wat(client: &Client, wat: &str, input: &[u8], limits: Limits) -> JobView {
    let job = submit_wat(client, wat, input, limits).await;
    tokio::time::timeout(Duration::from_secs(30), client.watch(job, |_| {})).await.unwrap().unwrap()
}

async fn output(client: &Client, view: &JobView) -> Vec<u8> {
    assert_eq!(view.state, JobState::Completed, "{view:?}");
    client.output(view.job).await.unwrap()
}

fn failure_kind(view: &JobView) -> FailureKind {
    assert_eq!(view.state, JobState::Failed, "{view:?}");
    match &view.result.as_ref().expect("a failed run has its report").1.outcome {
        Outcome::Failed { kind, .. } => *kind,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_on_both_workers_and_every_step_is_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let commons = LocalCommons::start(dir.path(), two_workers()).await.unwrap();
    let client = commons.client().await.unwrap();
    let mut jobs = Vec::new();
    for i in 0..8u32 {
        jobs.push(submit_wat(&client, SUM_WAT, format!("{i} 100").as_bytes(), Limits::default()).await);
    }
    let mut workers_used = std::collections::BTreeSet::new();
    for (i, job) in jobs.iter().enumerate() {
        let view = client.watch(*job, |_| {}).await.unwrap();
        assert_eq!(output(&client, &view).await, format!("{}\n", i + 100).as_bytes());
        workers_used.insert(view.result.unwrap().0);
    }
    assert_eq!(workers_used.len(), 2, "both workers took jobs");

    let records: Vec<Record> =
        journal::read(&commons.journal).unwrap().iter().map(|e| e.decode_record().unwrap()).collect();
    let of_first: Vec<&Record> = records.iter().filter(|r| r.job() == Some(jobs[0])).collect();
    assert!(matches!(of_first[0], Record::JobSubmitted { .. }));
    assert!(matches!(of_first[1], Record::TaskPlaced { attempt: 1, .. }));
    assert!(matches!(of_first[2], Record::ReportReceived { .. }));
    assert!(matches!(of_first[3], Record::JobCompleted { .. }));
    let verification = journal::verify(&commons.journal, Some(commons.coordinator.public_key())).unwrap();
    assert!(verification.first_bad.is_none(), "{:?}", verification.first_bad);
    assert_eq!(verification.entries as usize, records.len());
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_modules_fail_cleanly_and_the_workers_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let commons = LocalCommons::start(dir.path(), two_workers()).await.unwrap();
    let client = commons.client().await.unwrap();

    let garbage = client.ensure_module(b"\0asm\x01\0\0\0definitely not wasm").await.unwrap_err();
    assert!(garbage.to_string().contains("not valid WebAssembly"), "{garbage}");

    let spin = run_wat(&client, SPIN_WAT, b"", Limits { fuel: Fuel(2_000_000), ..Limits::default() }).await;
    assert_eq!(failure_kind(&spin), FailureKind::OutOfFuel);

    let bomb = include_str!("../../examples/wat/bomb.wat");
    let limits = Limits { memory_bytes: 4 * 1024 * 1024, ..Limits::default() };
    assert_eq!(failure_kind(&run_wat(&client, bomb, b"", limits).await), FailureKind::MemoryLimit);

    let flood = include_str!("../../examples/wat/flood.wat");
    assert_eq!(
        failure_kind(&run_wat(&client, flood, b"", Limits::default()).await),
        FailureKind::OutputTooLarge
    );

    let foreign_import =
        r#"(module (import "env" "socket" (func)) (memory (export "memory") 1) (func (export "_start")))"#;
    let view = run_wat(&client, foreign_import, b"", Limits::default()).await;
    assert_eq!(failure_kind(&view), FailureKind::InvalidModule);
    assert!(view.failure.unwrap().contains("does not provide"));

    // Both workers still serve: two jobs after all that, each completes.
    let hello = run_wat(&client, HELLO_WAT, b"", Limits::default()).await;
    assert_eq!(output(&client, &hello).await, b"hello from the commons\n");
    assert_eq!(commons.coordinator.workers().await.unwrap().len(), 2);
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_member_keys_never_admitted_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let commons = LocalCommons::start(dir.path(), two_workers()).await.unwrap();
    let stranger = Arc::new(Keypair::generate());
    let config = icn_worker::WorkerConfig {
        key: stranger.clone(),
        coordinator: commons.coordinator.addr(),
        coordinator_key: commons.coordinator.public_key(),
        slots: 1,
        memory_bytes: 64 << 20,
        metrics_listen: None,
        agent: "test".into(),
    };
    let executor = Arc::new(icn_worker::WasmExecutor::new().unwrap());
    let refused = tokio::time::timeout(Duration::from_secs(10), icn_worker::run(config, executor))
        .await
        .expect("a refused worker stops instead of retrying")
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("not admitted") && refused.contains(&stranger.public().to_string()),
        "{refused}"
    );

    let member =
        Client::connect(commons.coordinator.addr(), commons.coordinator.public_key(), stranger).await;
    let refused = format!("{:#}", member.err().expect("a stranger is not a member"));
    assert!(refused.contains("not a member"), "{refused:#}");

    // A coordinator that is not the one the worker pinned is not trusted either.
    let impostor_key = Keypair::generate().public();
    let endpoint = transport::client_endpoint().unwrap();
    let hello = Hello {
        role: Role::Member,
        channel_binding: [0; 32],
        agent: "t".into(),
        capacity: None,
        seen: None,
        running: vec![],
    };
    let mut seals = SealKeeper::new(impostor_key, None).unwrap();
    let wrong = transport::connect(
        &endpoint,
        commons.coordinator.addr(),
        impostor_key,
        &commons.member,
        hello,
        &mut seals,
    )
    .await;
    assert!(wrong.err().unwrap().to_string().contains("not the expected"));
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_requests_are_refused_and_the_coordinator_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let commons = LocalCommons::start(dir.path(), two_workers()).await.unwrap();
    let endpoint = transport::client_endpoint().unwrap();
    let hello = Hello {
        role: Role::Member,
        channel_binding: [0; 32],
        agent: "t".into(),
        capacity: None,
        seen: None,
        running: vec![],
    };
    let mut seals = SealKeeper::new(commons.coordinator.public_key(), None).unwrap();
    let session = transport::connect(
        &endpoint,
        commons.coordinator.addr(),
        commons.coordinator.public_key(),
        &commons.member,
        hello,
        &mut seals,
    )
    .await
    .unwrap();

    // A frame that claims to be 100 MiB: refused from its length prefix alone.
    let (mut send, mut recv) = icn_transport::open(&session.connection).await.unwrap();
    send.get_mut().write_all(&(100u32 << 20).to_be_bytes()).await.unwrap();
    let answer = recv.read::<Answer>(1 << 20).await.unwrap().unwrap().response;
    assert!(
        matches!(&answer, ClientResponse::Error(e) if e.message.contains("over the limit")),
        "{answer:?}"
    );

    // Bytes that are no message at all.
    let (mut send, mut recv) = icn_transport::open(&session.connection).await.unwrap();
    send.get_mut().write_all(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
    send.get_mut().finish().unwrap();
    let answer = recv.read::<Answer>(1 << 20).await.unwrap().unwrap().response;
    assert!(matches!(&answer, ClientResponse::Error(e) if e.message.contains("malformed")), "{answer:?}");

    // A submission whose signature does not match its contents.
    let client = commons.client().await.unwrap();
    let module = client.ensure_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();
    let submission = job(module, b"", Limits::default());
    let mut forged = Envelope::seal(&commons.member, 1, &submission.submission);
    forged.payload.push(0);
    let (mut send, mut recv) = icn_transport::open(&session.connection).await.unwrap();
    send.write(&icn_protocol::wire::ClientRequest::Submit(forged)).await.unwrap();
    send.get_mut().finish().unwrap();
    let answer = recv.read::<Answer>(1 << 20).await.unwrap().unwrap().response;
    assert!(matches!(&answer, ClientResponse::Error(e) if e.message.contains("signature")), "{answer:?}");

    let view = run_wat(&client, HELLO_WAT, b"", Limits::default()).await;
    assert_eq!(output(&client, &view).await, b"hello from the commons\n");
    commons.stop().await.unwrap();
}

/// An admitted worker that signs its report with another key: the report is refused,
/// the worker is disconnected, and the task completes on an honest worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_signed_by_the_wrong_key_is_refused_and_the_task_runs_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let RogueTask { commons, client, rogue_key, session, job, mut send, assignment, .. } =
        a_task_on_a_rogue(dir.path()).await;
    let lie = b"5\n".to_vec();
    let report = ExecutionReport {
        task: assignment.task,
        attempt: assignment.attempt,
        outcome: Outcome::Exited { code: 0 },
        output_digest: ContentId::of(&lie),
        output_bytes: lie.len() as u64,
        stderr: vec![],
        fuel: Fuel(10),
        usage: Default::default(),
    };
    let someone_else = Keypair::generate();
    let envelope = Envelope::seal(&someone_else, 1, &report);
    send.write(&WorkerMessage::Report { report: envelope, output: lie }).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), session.connection.closed()).await.unwrap();
    assert!(closed.to_string().contains("signed by"), "{closed}");

    let view =
        tokio::time::timeout(Duration::from_secs(30), client.watch(job, |_| {})).await.unwrap().unwrap();
    assert_eq!(output(&client, &view).await, b"4\n");
    assert_ne!(view.result.unwrap().0, rogue_key.public());
    let signers: Vec<_> = journal::read(&commons.journal).unwrap().iter().map(|e| e.signer).collect();
    assert!(!signers.contains(&someone_else.public()), "the forged report never entered the journal");
    let workers = client.workers().await.unwrap();
    let rogue = workers.iter().find(|w| w.key == rogue_key.public()).unwrap();
    assert_eq!((rogue.trust.missed, rogue.connected), (1, false), "the rogue lost trust: {rogue:?}");
    commons.stop().await.unwrap();
}

/// A worker's progress reaches those following the job, named as that worker's; progress
/// past its bound disconnects the worker, and the task runs elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_followed_as_its_workers_word_and_oversized_progress_disconnects_it() {
    let dir = tempfile::tempdir().unwrap();
    let RogueTask { commons, client, rogue_key, session, job, mut send, .. } =
        a_task_on_a_rogue(dir.path()).await;
    send.write(&WorkerMessage::Progress { stderr: b"halfway\n".to_vec(), skipped: 0 }).await.unwrap();
    let live = client.live_stderr(job, 0, 10_000).await.unwrap();
    assert_eq!((live.stderr.as_slice(), live.worker), (&b"halfway\n"[..], Some(rogue_key.public())));
    assert!(matches!(live.state, JobState::Running { .. }), "{:?}", live.state);

    let flood = vec![b'x'; icn_protocol::wire::PROGRESS_STDERR_BYTES_MAX + 1];
    send.write(&WorkerMessage::Progress { stderr: flood, skipped: 0 }).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), session.connection.closed()).await.unwrap();
    assert!(closed.to_string().contains("at most 16384 are accepted"), "{closed}");
    let view =
        tokio::time::timeout(Duration::from_secs(30), client.watch(job, |_| {})).await.unwrap().unwrap();
    assert_eq!(output(&client, &view).await, b"4\n");
    assert_ne!(view.result.unwrap().0, rogue_key.public());
    commons.stop().await.unwrap();
}

/// A commons with an honest worker and a rogue one the test speaks for, and the rogue's
/// stream of the task of job `2 2`, its assignment read.
struct RogueTask {
    commons: LocalCommons,
    client: Client,
    rogue_key: Arc<Keypair>,
    _endpoint: quinn::Endpoint,
    session: icn_transport::endpoint::Session,
    job: JobId,
    send: icn_transport::FrameWriter<quinn::SendStream>,
    _recv: icn_transport::FrameReader<quinn::RecvStream>,
    assignment: Box<icn_protocol::wire::Assignment>,
}

async fn a_task_on_a_rogue(dir: &std::path::Path) -> RogueTask {
    let rogue_key = Arc::new(Keypair::generate());
    let commons = start_with_rogue(dir, rogue_key.clone()).await;
    let client = commons.client().await.unwrap();
    // A first job, on the honest worker alone: its cooperative has now earned, so the
    // rogue's, which has not, scores higher on donor fairness and gets the next task.
    let first = run_wat(&client, SUM_WAT, b"1 1", Limits::default()).await;
    assert_eq!(output(&client, &first).await, b"2\n");
    let (endpoint, session) = commons.connect_worker(&rogue_key, 4).await.unwrap();
    let job = submit_wat(&client, SUM_WAT, b"2 2", Limits::default()).await;
    let (send, mut recv) = icn_transport::accept(&session.connection).await.unwrap();
    let Some(CoordinatorMessage::Assign { assignment, .. }) = recv.read(1 << 20).await.unwrap() else {
        panic!("expected an assignment");
    };
    RogueTask { commons, client, rogue_key, _endpoint: endpoint, session, job, send, _recv: recv, assignment }
}

async fn start_with_rogue(dir: &std::path::Path, rogue: Arc<Keypair>) -> LocalCommons {
    use icn_coordinator::{Coordinator, CoordinatorConfig};
    use icn_core::CoreConfig;
    let coordinator_key = Arc::new(Keypair::generate());
    let member = Arc::new(Keypair::generate());
    let honest = Arc::new(Keypair::generate());
    let genesis = icn_cli::local::genesis(
        &LocalOptions { owners: &["coop-a", "coop-r"], ..LocalOptions::default() },
        &[("ana".to_string(), member.public())],
        &[(honest.public(), "coop-a".to_string()), (rogue.public(), "coop-r".to_string())],
    )
    .unwrap();
    let journal = dir.join("journal.db");
    let config = CoordinatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        journal: journal.clone(),
        heartbeat_interval_ms: 200,
        core: CoreConfig { worker_timeout_ms: 2_000, ..CoreConfig::default() },
        genesis: genesis.clone(),
        accept_journal_end: false,
        metrics_listen: None,
        http_listen: None,
        retention: icn_coordinator::blobs::Retention::default(),
        limits: icn_coordinator::limits::RateLimits::default(),
    };
    let coordinator = Coordinator::start(coordinator_key, config).await.unwrap();
    let worker = icn_worker::WorkerConfig {
        key: honest.clone(),
        coordinator: coordinator.addr(),
        coordinator_key: coordinator.public_key(),
        slots: 1,
        memory_bytes: 256 << 20,
        metrics_listen: None,
        agent: "honest".into(),
    };
    let task = tokio::spawn(icn_worker::run(worker, Arc::new(icn_worker::WasmExecutor::new().unwrap())));
    let commons = LocalCommons {
        coordinator,
        journal,
        workers: vec![icn_cli::local::LocalWorker {
            key: honest.public(),
            owner: "coop-a".into(),
            task,
            metrics: None,
        }],
        member: member.clone(),
        member_name: "ana".into(),
        members: vec![icn_cli::local::LocalMember { name: "ana".into(), key: member }],
        genesis,
    };
    commons.wait_for_workers(1).await.unwrap();
    commons
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_job_runs_in_the_free_slot_while_a_long_one_holds_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let commons = LocalCommons::start(
        dir.path(),
        LocalOptions { owners: &["coop-a"], slots: 2, ..LocalOptions::default() },
    )
    .await
    .unwrap();
    let client = commons.client().await.unwrap();
    let limits = Limits { fuel: Fuel(50_000_000_000), timeout_ms: 60_000, ..Limits::default() };
    let long = submit_wat(&client, BUSY_WAT, &[b'x'; 40], limits).await;
    let short = run_wat(&client, HELLO_WAT, b"", Limits::default()).await;
    assert_eq!(output(&client, &short).await, b"hello from the commons\n");
    let still = client.status(long).await.unwrap();
    assert!(matches!(still.state, JobState::Running { .. }), "the long job is still running: {still:?}");
    let long = client.watch(long, |_| {}).await.unwrap();
    assert_eq!(output(&client, &long).await, b"done\n");
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_every_job_to_completion_and_reports_the_ratio() {
    // `run` fails unless every job completed with the module's output.
    let options = icn_cli::bench::BenchOptions { jobs: 40, workers: 2, slots: 2, in_flight: 8 };
    let report = icn_cli::bench::run(options).await.unwrap();
    assert!(report.latency_p50 <= report.latency_p99, "{report:?}");
    assert!(report.end_to_end_jobs_per_s > 0.0 && report.in_process_runs_per_s > 0.0, "{report:?}");
}

/// An executor that echoes a task's input, standing in for any kind a worker may offer.
struct Echo;

impl icn_worker::Executor for Echo {
    fn kind(&self) -> icn_protocol::wire::ExecutorKind {
        icn_protocol::wire::ExecutorKind::Container
    }
    fn has_program(&self, _: &ContentId) -> bool {
        true
    }
    fn load_program(&self, _: ContentId, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn run(
        self: Arc<Self>,
        _: icn_protocol::wire::Assignment,
        input: Vec<u8>,
        _: icn_worker::executor::Stop,
        _: icn_worker::LiveStderr,
    ) -> icn_worker::executor::Running {
        Box::pin(async move {
            icn_worker::Execution {
                outcome: Outcome::Exited { code: 0 },
                output: input,
                stderr: vec![],
                fuel: Fuel(1),
                usage: Default::default(),
            }
        })
    }
}

/// A worker offers exactly the executors it registered: tasks of that kind run through
/// it, and tasks of a kind it does not offer are never placed on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_tasks_through_the_executors_it_registered_and_no_others() {
    use icn_protocol::wire::ExecutorKind;
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(Keypair::generate());
    let extra: &'static [(icn_protocol::PublicKey, &'static str)] =
        Box::leak(Box::new([(key.public(), "coop-e")]));
    let options = LocalOptions {
        owners: &[],
        extra_workers: extra,
        mandate_executors: &[ExecutorKind::Wasm, ExecutorKind::Container],
        ..LocalOptions::default()
    };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let config = icn_worker::WorkerConfig {
        key: key.clone(),
        coordinator: commons.coordinator.addr(),
        coordinator_key: commons.coordinator.public_key(),
        slots: 1,
        memory_bytes: 256 << 20,
        metrics_listen: None,
        agent: "echo".into(),
    };
    let worker = tokio::spawn(icn_worker::run(config, icn_worker::Executors::default().with(Arc::new(Echo))));
    commons.wait_for_workers(1).await.unwrap();
    commons.decide_container_terms(20).await.unwrap();
    let client = commons.client().await.unwrap();
    let module = client.ensure_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();
    let mut container = job(module, b"echoed", Limits::default());
    container.submission.executor = ExecutorKind::Container;
    let echoed = client.submit(&container).await.unwrap();
    let view =
        tokio::time::timeout(Duration::from_secs(20), client.watch(echoed, |_| {})).await.unwrap().unwrap();
    assert_eq!(output(&client, &view).await, b"echoed");
    let wasm = client.submit(&job(module, b"", Limits::default())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client.status(wasm).await.unwrap().state, JobState::Queued, "no worker here runs wasm");
    worker.abort();
    commons.stop().await.unwrap();
}

/// Inputs and outputs live beside the journal, by content id: the journal holds their
/// digests (inside the signed submission and report), never their bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_stay_out_of_the_journal_and_a_submission_names_only_stored_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let commons = LocalCommons::start(dir.path(), two_workers()).await.unwrap();
    let client = commons.client().await.unwrap();
    let module = client.ensure_module(&wat::parse_str(icn_cli::demo::UPPER_WAT).unwrap()).await.unwrap();
    let input = b"a payload that only the blob store should hold";
    let view = run_wat(&client, icn_cli::demo::UPPER_WAT, input, Limits::default()).await;
    let output = output(&client, &view).await;
    assert_eq!(output, input.to_ascii_uppercase());
    let report = &view.result.as_ref().unwrap().1;
    assert_eq!((report.output_digest, report.output_bytes), (ContentId::of(&output), output.len() as u64));
    commons.stop().await.unwrap();
    // No journal entry holds the payloads' bytes; the payload table holds both.
    let entries = journal::read(&commons_journal(dir.path())).unwrap();
    let holds = |needle: &[u8]| entries.iter().any(|e| e.record.windows(needle.len()).any(|w| w == needle));
    assert!(!holds(input), "the input is not in the journal's entries");
    assert!(!holds(&output), "the output is not in the journal's entries");
    let payloads =
        icn_coordinator::blobs::BlobStore::open(&commons_journal(dir.path()), Default::default()).unwrap();
    assert_eq!(payloads.get(&ContentId::of(input)).unwrap().unwrap(), input);
    assert_eq!(payloads.get(&ContentId::of(&output)).unwrap().unwrap(), output);
    drop(payloads);

    // A submission may name only an input the coordinator holds.
    let dir = tempfile::tempdir().unwrap();
    let commons = LocalCommons::start(dir.path(), two_workers()).await.unwrap();
    let client = commons.client().await.unwrap();
    let module2 = client.ensure_module(&wat::parse_str(icn_cli::demo::UPPER_WAT).unwrap()).await.unwrap();
    assert_eq!(module, module2);
    let unstored = job(module, b"never uploaded", Limits::default());
    let refused = client.submit_signed(&unstored.submission).await.unwrap_err().to_string();
    assert!(
        refused.contains("is not stored here for you") && refused.contains("upload it first"),
        "{refused}"
    );
    commons.stop().await.unwrap();
}

/// Ended jobs leave the coordinator's memory beyond the configured count; their
/// status, output, a watch and a repeated submission are answered from the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_jobs_leave_memory_and_the_journal_answers_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions { ended_jobs_in_memory: 2, ..two_workers() };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let client = commons.client().await.unwrap();
    let module = client.ensure_module(&wat::parse_str(SUM_WAT).unwrap()).await.unwrap();
    let first = job(module, b"20 22", Limits::default());
    let first_id = client.submit(&first).await.unwrap();
    let first_view = client.watch(first_id, |_| {}).await.unwrap();
    for i in 0..4u32 {
        run_wat(&client, SUM_WAT, format!("{i} 1").as_bytes(), Limits::default()).await;
    }
    let api = commons.coordinator.api();
    assert_eq!(api.read(|core| core.jobs_in_memory()).await.unwrap(), 2, "the two latest ended jobs");

    assert_eq!(client.status(first_id).await.unwrap(), first_view, "status from the journal");
    assert_eq!(client.watch(first_id, |_| {}).await.unwrap(), first_view, "a watch ends at once");
    assert_eq!(client.output(first_id).await.unwrap(), b"42\n");
    // A forgotten job is found by the start of its id too, from the journal's index.
    assert_eq!(client.resolve_job(&first_id.to_string()[..8]).await.unwrap(), first_id);
    let submitted = journal::read(&commons.journal)
        .unwrap()
        .iter()
        .filter(|e| matches!(e.decode_record().unwrap(), Record::JobSubmitted { .. }))
        .count();
    assert_eq!(submitted, 5, "one submission entry per job");
    let unknown = client.status(JobId(ContentId::of(b"never submitted"))).await.unwrap_err().to_string();
    assert!(unknown.contains("no job"), "{unknown}");
    commons.stop().await.unwrap();
}

fn commons_journal(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("journal.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_no_worker_can_take_wait_with_their_reason_and_never_delay_the_others() {
    use icn_protocol::wire::{ExecutorKind, Waiting};
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions {
        mandate_executors: &[ExecutorKind::Wasm, ExecutorKind::Container],
        second_federation: Some("fed-south"),
        ..two_workers()
    };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    commons.decide_container_terms(20).await.unwrap();
    let client = commons.client().await.unwrap();
    let module = client.ensure_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();
    // More memory than the workers offer (256 MiB each), and an executor none offers.
    let asked_bytes = 512 * 1024 * 1024;
    let too_big = Limits { memory_bytes: asked_bytes, ..Limits::default() };
    let big = client.submit(&job(module, b"", too_big)).await.unwrap();
    let container = JobRequest::new(
        icn_cli::local::federation(),
        ExecutorKind::Container,
        module,
        b"",
        vec![],
        Limits::default(),
    );
    let container = client.submit(&container).await.unwrap();
    // Twenty in the same scope, then twenty in another.
    let mut placeable = Vec::new();
    for _ in 0..20 {
        placeable.push(client.submit(&job(module, b"", Limits::default())).await.unwrap());
    }
    let south: icn_protocol::governance::ScopeId = "fed-south".parse().unwrap();
    for i in 0..20u8 {
        let request =
            JobRequest::new(south.clone(), ExecutorKind::Wasm, module, &[i], vec![], Limits::default());
        placeable.push(client.submit(&request).await.unwrap());
    }
    for id in &placeable {
        let view =
            tokio::time::timeout(Duration::from_secs(30), client.watch(*id, |_| {})).await.unwrap().unwrap();
        assert_eq!(output(&client, &view).await, b"hello from the commons\n");
    }

    let view = client.status(big).await.unwrap();
    assert_eq!(view.state, JobState::Queued);
    let waiting = view.waiting.expect("a queued job says why it waits");
    assert_eq!(waiting, Waiting::NoMemory { asked_bytes, largest_bytes: 256 * 1024 * 1024 });
    assert!(waiting.is_stuck());
    assert_eq!(waiting.to_string(), "it asks 512 MiB of memory; the largest connected worker offers 256 MiB");
    let view = client.status(container).await.unwrap();
    assert_eq!(view.state, JobState::Queued);
    let waiting = view.waiting.expect("a queued job says why it waits");
    assert_eq!(waiting, Waiting::NoExecutor { executor: ExecutorKind::Container });
    assert_eq!(waiting.to_string(), "no connected worker offers the container executor");
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job_pays_what_ran_and_needs_standing() {
    use icn_protocol::governance::ScopeId;
    let dir = tempfile::tempdir().unwrap();
    // One worker with one slot: a second job runs only once the first stopped.
    let options =
        LocalOptions { owners: &["coop-a"], slots: 1, commons_only: &["cleo"], ..LocalOptions::default() };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let ana = commons.client().await.unwrap();
    let cleo = commons.client_for(commons.members[2].key.clone()).await.unwrap();
    // It spins, asking the clock each turn: the sandbox counts its fuel at each call, so
    // a stopped run says what it used (one that never calls out is counted only to its
    // last call; see worker/src/wasm.rs).
    const TICKING: &str = r#"(module
      (import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (loop $forever (drop (call $now (i32.const 1) (i64.const 0) (i32.const 0))) (br $forever))))"#;
    let spin = ana.ensure_module(&wat::parse_str(TICKING).unwrap()).await.unwrap();
    let hello = ana.ensure_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();
    // It would spin for a minute.
    let long = Limits { fuel: Fuel(icn_protocol::wire::FUEL_MAX), timeout_ms: 60_000, ..Limits::default() };
    let spinning = ana.submit(&job(spin, b"", long)).await.unwrap();
    let started = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if matches!(ana.status(spinning).await.unwrap().state, JobState::Running { .. }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    started.await.expect("the spinning job starts");
    // Let it spin a while: what runs before the cancel is paid.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = ana.submit(&job(hello, b"", Limits::default())).await.unwrap();

    // A member without standing in the job's scope may not cancel it.
    let refused = cleo.cancel(spinning).await.unwrap_err().to_string();
    assert!(
        refused.contains("cleo did not submit job")
            && refused.contains("holds neither vote nor operate standing in fed-north"),
        "{refused}"
    );
    assert!(matches!(ana.status(spinning).await.unwrap().state, JobState::Running { .. }));

    let cancelled = ana.cancel(spinning).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    let by = cancelled.failure.clone().unwrap();
    assert!(by.contains("cancelled by ana"), "{by}");
    // The worker stopped the spinning task: its only slot takes the waiting job, long
    // before the minute is up.
    let view =
        tokio::time::timeout(Duration::from_secs(10), ana.watch(waiting, |_| {})).await.unwrap().unwrap();
    assert_eq!(output(&ana, &view).await, b"hello from the commons\n");

    // The cancelled job paid for what it ran before it stopped (the fuel its stopped run
    // reported, a credit a million), the hello job its credit, and nothing stays held.
    let trace = ana.trace(icn_protocol::wire::TraceQuery::Job(spinning)).await.unwrap();
    let settled = trace
        .job
        .as_ref()
        .unwrap()
        .entries
        .iter()
        .find(|l| l.text.contains("the runs its cancel stopped used"));
    let text = settled.expect("the stopped run's usage is settled").text.clone();
    let fuel: u64 = text.split("used ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(fuel > 10_000, "it spun 300 ms and more: {text}");
    let paid = fuel.div_ceil(1_000_000) as i64;
    let positions = ana.positions().await.unwrap();
    let fed = positions.account(&icn_cli::local::federation()).unwrap();
    assert_eq!((fed.position, fed.reserved), (-1 - paid, 0));
    assert_eq!(positions.account(&"coop-a".parse::<ScopeId>().unwrap()).unwrap().position, 1 + paid);
    assert_eq!(positions.accounts.iter().map(|a| a.position).sum::<i64>(), 0);
    let again = ana.cancel(spinning).await.unwrap_err().to_string();
    assert!(again.contains("has already ended"), "{again}");
    let trace = ana.trace(icn_protocol::wire::TraceQuery::Job(spinning)).await.unwrap().to_string();
    assert!(trace.contains("cancelled by ana"), "{trace}");
    assert!(trace.contains("which is what ran: fed-north paid"), "{trace}");
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_found_by_any_unique_start_and_an_ambiguous_one_names_the_matches() {
    use icn_protocol::wire::IdKind;
    // Two admitted worker keys that share their first 6 hex digits (found by drawing keys
    // until two collide: about 5,000 draws for 24 bits).
    let mut seen = std::collections::HashMap::new();
    let (a, b) = loop {
        let key = Keypair::generate().public();
        let start = key.to_string()[..6].to_string();
        if let Some(other) = seen.insert(start, key) {
            break (other, key);
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let extra = [(a, "coop-a"), (b, "coop-b")];
    let options = LocalOptions { extra_workers: &extra, ..two_workers() };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let client = commons.client().await.unwrap();
    let shared = &a.to_string()[..6];
    let ambiguous = client.resolve(IdKind::Key, shared).await.unwrap_err().to_string();
    assert!(ambiguous.contains(&format!("{shared} is the start of 2 keys")), "{ambiguous}");
    assert!(
        ambiguous.contains(&a.to_string()[..16]) && ambiguous.contains(&b.to_string()[..16]),
        "{ambiguous}"
    );
    let longer = common_start(&a.to_string(), &b.to_string()) + 1;
    assert_eq!(client.resolve(IdKind::Key, &a.to_string()[..longer]).await.unwrap(), a.to_string());

    let job = submit_wat(&client, HELLO_WAT, b"", Limits::default()).await;
    assert_eq!(client.resolve_job(&job.to_string()[..6]).await.unwrap(), job);
    let short = client.resolve(IdKind::Job, "abc").await.unwrap_err().to_string();
    assert!(short.contains("give at least 6 of its hex digits"), "{short}");
    let unknown = client.resolve(IdKind::Proposal, &job.to_string()[..12]).await.unwrap_err().to_string();
    assert!(unknown.contains("no proposal known here starts with"), "{unknown}");
    commons.stop().await.unwrap();
}

fn common_start(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_list_newest_first_with_filters_and_says_why_each_waits() {
    use icn_protocol::wire::JobsQuery;
    let dir = tempfile::tempdir().unwrap();
    let commons = LocalCommons::start(dir.path(), two_workers()).await.unwrap();
    let ana = commons.client().await.unwrap();
    let ben = commons.client_for(commons.members[1].key.clone()).await.unwrap();
    let done = run_wat(&ana, HELLO_WAT, b"", Limits::default()).await.job;
    let by_ben = run_wat(&ben, SUM_WAT, b"1 2", Limits::default()).await.job;
    let too_big = Limits { memory_bytes: 512 * 1024 * 1024, ..Limits::default() };
    let stuck = submit_wat(&ana, HELLO_WAT, b"", too_big).await;

    let all = ana.jobs(&JobsQuery::default(), 50).await.unwrap();
    let ids: Vec<JobId> = all.iter().map(|j| j.job).collect();
    assert_eq!(ids, vec![stuck, by_ben, done], "newest first");
    assert_eq!(all[0].state, JobState::Queued);
    assert!(all[0].waiting.as_ref().unwrap().to_string().contains("the largest connected worker offers"));
    assert_eq!(all[1].submitter.name.as_deref(), Some("ben"));

    let mine =
        ben.jobs(&JobsQuery { submitter: Some(ben.member()), ..JobsQuery::default() }, 50).await.unwrap();
    assert_eq!(mine.iter().map(|j| j.job).collect::<Vec<_>>(), vec![by_ben]);
    let queued = JobsQuery { state: Some("queued".into()), ..JobsQuery::default() };
    assert_eq!(ana.jobs(&queued, 50).await.unwrap().iter().map(|j| j.job).collect::<Vec<_>>(), vec![stuck]);
    let later =
        JobsQuery { since_ms: Some(icn_coordinator::server::now_ms() + 60_000), ..JobsQuery::default() };
    assert!(ana.jobs(&later, 50).await.unwrap().is_empty());
    let other_scope = JobsQuery { scope: Some("coop-a".parse().unwrap()), ..JobsQuery::default() };
    assert!(ana.jobs(&other_scope, 50).await.unwrap().is_empty());
    assert_eq!(ana.jobs(&JobsQuery::default(), 2).await.unwrap().len(), 2, "at most the limit");
    // One a page: each page starts where the last ended, newest first.
    let api = commons.coordinator.api();
    let page = |after| icn_protocol::views::Page { after, limit: Some(1) };
    let mut after = None;
    let mut paged = Vec::new();
    loop {
        let query = JobsQuery::default();
        let one = api.read(move |core| core.jobs_list(&query, &page(after))).await.unwrap();
        paged.extend(one.items.iter().map(|j| j.job));
        match one.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, ids, "pages of one give the whole list once");
    let bad = JobsQuery { state: Some("sleeping".into()), ..JobsQuery::default() };
    let refused = ana.jobs(&bad, 50).await.unwrap_err().to_string();
    assert!(refused.contains("\"sleeping\" is not a job state; give one of queued, running"), "{refused}");

    let table = icn_cli::governance::jobs(&all, icn_coordinator::server::now_ms());
    let first = table.lines().nth(1).unwrap();
    assert!(first.starts_with(&stuck.to_string()[..12]) && first.contains("queued"), "{table}");
    commons.stop().await.unwrap();
}

/// Two federations flood a four-slot commons after the commons decided their shares 3 to
/// 1: the first 400 jobs to complete split 3 to 1 (within 10%), `queue` shows the weights
/// and the decision, and a job's trace names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_federations_share_scarce_slots_by_the_weights_the_commons_decided() {
    use icn_protocol::governance::{Choice, Effect, Proposal, ScopeId};
    use icn_protocol::wire::ExecutorKind;
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions {
        second_federation: Some("fed-south"),
        voting_window_ms: 400,
        slots: 2,
        ..two_workers()
    };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let ana = commons.client().await.unwrap();
    let ben = commons.client_for(commons.members[1].key.clone()).await.unwrap();
    let (north, south): (ScopeId, ScopeId) = ("fed-north".parse().unwrap(), "fed-south".parse().unwrap());
    let effect = Effect::Share { scope: north.clone(), weight: 3 };
    let proposal =
        Proposal { scope: "commons".parse().unwrap(), title: "North runs three to one".into(), effect };
    let (id, _) = ana.propose(&proposal).await.unwrap();
    ana.vote(id, Choice::Yes).await.unwrap();
    ben.vote(id, Choice::Yes).await.unwrap();
    let decision = tokio::time::timeout(Duration::from_secs(20), icn_cli::demo::wait_for_decision(&ana, id))
        .await
        .unwrap()
        .unwrap();

    let module = ana.ensure_module(&wat::parse_str(BUSY_WAT).unwrap()).await.unwrap();
    // Submitted four at a time, and each job long enough (40 million counts) that the
    // queues fill faster than four slots drain them: slots stay scarce from the start.
    let mut jobs = vec![];
    for _ in 0..200 {
        let requests: Vec<JobRequest> = [&north, &south, &north, &south]
            .into_iter()
            .map(|scope| {
                JobRequest::new(scope.clone(), ExecutorKind::Wasm, module, b"xxxx", vec![], Limits::default())
            })
            .collect();
        let submitted = futures_util::future::join_all(requests.iter().map(|r| ana.submit(r))).await;
        jobs.extend(submitted.into_iter().map(Result::unwrap));
    }
    let queue = ana.queue().await.unwrap();
    let shares: Vec<(&str, u32, Option<u64>, f64)> =
        queue.scopes.iter().map(|s| (s.scope.as_str(), s.weight, s.decision, s.share)).collect();
    assert!(shares.contains(&("fed-north", 3, Some(decision.seq), 0.75)), "{queue:?}");
    assert!(shares.contains(&("fed-south", 1, None, 0.25)), "{queue:?}");
    assert_eq!(queue.slots, 4);
    for id in &jobs {
        let view =
            tokio::time::timeout(Duration::from_secs(120), ana.watch(*id, |_| {})).await.unwrap().unwrap();
        assert_eq!(view.state, JobState::Completed);
    }
    let trace = ana.trace(icn_protocol::wire::TraceQuery::Job(jobs[0])).await.unwrap().job.unwrap();
    let expected = format!("weight 3 among the scopes of commons, set by decision #{}", decision.seq);
    assert!(trace.order.as_deref().is_some_and(|o| o.contains(&expected)), "{:?}", trace.order);
    commons.stop().await.unwrap();

    let scope_of: std::collections::BTreeMap<JobId, bool> =
        jobs.iter().enumerate().map(|(i, id)| (*id, i % 2 == 0)).collect();
    let completed: Vec<bool> = journal::read(&commons_journal(dir.path()))
        .unwrap()
        .iter()
        .filter_map(|e| match e.decode_record().unwrap() {
            Record::JobCompleted { job, .. } => Some(scope_of[&job]),
            _ => None,
        })
        .take(400)
        .collect();
    let north_done = completed.iter().filter(|n| **n).count();
    let ratio = north_done as f64 / (400 - north_done) as f64;
    assert!(
        (2.7..=3.3).contains(&ratio),
        "the first 400 completions split {north_done}:{}",
        400 - north_done
    );
}

/// `GET path` on `addr` over HTTP/1.1: the status line and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Two workers of two slots each, and a coordinator serving `/metrics` where it says.
async fn with_metrics(dir: &std::path::Path) -> (LocalCommons, std::net::SocketAddr) {
    let options = LocalOptions { metrics_listen: Some(([127, 0, 0, 1], 0).into()), ..two_workers() };
    let commons = LocalCommons::start(dir, options).await.unwrap();
    let addr = commons.coordinator.metrics_addr().expect("metrics are served");
    (commons, addr)
}

/// The value of the sample whose name and labels `line_starts` begins, in a scrape.
fn sample(scrape: &str, line_starts: &str) -> Option<f64> {
    scrape.lines().find(|l| l.starts_with(line_starts)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The coordinator serves Prometheus metrics: jobs by scope and state, workers by trust
/// band, slots, refusals by request and reason, journal append latency, accounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_serves_prometheus_metrics_with_bounded_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (commons, addr) = with_metrics(dir.path()).await;
    let client = commons.client().await.unwrap();
    let module = client.ensure_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();
    let id = client.submit(&job(module, b"", Limits::default())).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), client.watch(id, |_| {})).await.unwrap().unwrap();
    let nowhere = JobRequest::new(
        "fed-nowhere".parse().unwrap(),
        icn_protocol::wire::ExecutorKind::Wasm,
        module,
        b"",
        vec![],
        Limits::default(),
    );
    client.submit(&nowhere).await.unwrap_err();

    let (status, scrape) = http_get(addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(sample(&scrape, "icn_jobs{scope=\"fed-north\",state=\"completed\"}"), Some(1.0), "{scrape}");
    assert_eq!(sample(&scrape, "icn_workers_connected{band=\"new\"}"), Some(2.0), "{scrape}");
    assert_eq!(sample(&scrape, "icn_slots "), Some(4.0), "{scrape}");
    assert_eq!(sample(&scrape, "icn_ledger_position_credits{scope=\"fed-north\"}"), Some(-1.0), "{scrape}");
    assert_eq!(sample(&scrape, "icn_ledger_reserved_credits{scope=\"fed-north\"}"), Some(0.0), "{scrape}");
    let refused = "icn_requests_refused_total{reason=\"unknown_scope\",request=\"submit\"}";
    assert_eq!(sample(&scrape, refused), Some(1.0), "{scrape}");
    assert!(
        sample(&scrape, "icn_journal_append_duration_seconds_count").is_some_and(|n| n >= 1.0),
        "{scrape}"
    );
    assert!(scrape.contains("# TYPE icn_journal_append_duration_seconds histogram"), "{scrape}");
    // What the batch's records did, counted as they happened.
    assert_eq!(sample(&scrape, "icn_jobs_submitted_total{scope=\"fed-north\"}"), Some(1.0), "{scrape}");
    let ended = "icn_jobs_ended_total{scope=\"fed-north\",state=\"completed\"}";
    assert_eq!(sample(&scrape, ended), Some(1.0), "{scrape}");
    assert_eq!(sample(&scrape, "icn_queue_wait_seconds_count{scope=\"fed-north\"}"), Some(1.0), "{scrape}");
    assert_eq!(
        sample(&scrape, "icn_placement_latency_seconds_count{executor=\"wasm\"}"),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(sample(&scrape, "icn_replicas_placed_total{executor=\"wasm\"}"), Some(1.0), "{scrape}");
    assert_eq!(sample(&scrape, "icn_job_replicas_count"), Some(1.0), "{scrape}");
    assert_eq!(
        sample(&scrape, "icn_ledger_posted_credits_total{scope=\"fed-north\"}"),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(sample(&scrape, "icn_disagreements_total"), Some(0.0), "{scrape}");
    assert!(!scrape.contains(&id.to_string()[..12]), "no job ids in labels");
    let (status, _) = http_get(addr, "/nothing").await;
    assert!(status.contains("404"), "{status}");
    commons.stop().await.unwrap();
}

/// A worker serves Prometheus metrics of its own: slots, whether it is connected, and its
/// tasks by executor and ending, with their duration and fuel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_prometheus_metrics_of_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(Keypair::generate());
    let extra: &'static [(icn_protocol::PublicKey, &'static str)] =
        Box::leak(Box::new([(key.public(), "coop-e")]));
    let options = LocalOptions { owners: &[], extra_workers: extra, ..LocalOptions::default() };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    // A free port for the worker's listener.
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = icn_worker::WorkerConfig {
        key: key.clone(),
        coordinator: commons.coordinator.addr(),
        coordinator_key: commons.coordinator.public_key(),
        slots: 3,
        memory_bytes: 256 << 20,
        metrics_listen: Some(listen),
        agent: "metered".into(),
    };
    let worker = tokio::spawn(icn_worker::run(config, Arc::new(icn_worker::WasmExecutor::new().unwrap())));
    commons.wait_for_workers(1).await.unwrap();
    let client = commons.client().await.unwrap();
    let hello = run_wat(&client, HELLO_WAT, b"", Limits::default()).await;
    assert_eq!(hello.state, JobState::Completed);
    let spun = run_wat(&client, SPIN_WAT, b"", Limits { fuel: Fuel(2_000_000), ..Limits::default() }).await;
    assert_eq!(spun.state, JobState::Failed);

    let (status, scrape) = http_get(listen, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(sample(&scrape, "icn_worker_slots "), Some(3.0), "{scrape}");
    assert_eq!(sample(&scrape, "icn_worker_slots_busy "), Some(0.0), "{scrape}");
    assert_eq!(sample(&scrape, "icn_worker_connected "), Some(1.0), "{scrape}");
    let ended = |ending: &str| format!("icn_worker_tasks_total{{ending=\"{ending}\",executor=\"wasm\"}}");
    assert_eq!(sample(&scrape, &ended("exited_zero")), Some(1.0), "{scrape}");
    assert_eq!(sample(&scrape, &ended("out_of_fuel")), Some(1.0), "{scrape}");
    assert_eq!(
        sample(&scrape, "icn_worker_task_duration_seconds_count{executor=\"wasm\"}"),
        Some(2.0),
        "{scrape}"
    );
    let fuel = sample(&scrape, "icn_worker_task_fuel_sum{executor=\"wasm\"}").unwrap();
    assert!(fuel >= 2_000_000.0, "the spin used all its 2000000 fuel: {scrape}");
    worker.abort();
    commons.stop().await.unwrap();
}
