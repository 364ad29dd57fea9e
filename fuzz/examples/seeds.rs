//! Writes the seed corpus: valid encodings of every message each fuzz target decodes,
//! made with the same constructors the coordinator, worker and client use, so the
//! fuzzers start from real messages instead of guessing their shape.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds` writes
//! `fuzz/corpus/<target>/seed-<name>`; `cargo fuzz cmin` then keeps what adds coverage.

use std::path::PathBuf;

use icn_core::Record;
use icn_core::record::Scores;
use icn_governance::{Authorization, Event};
use icn_protocol::governance::{
    Ballot, Choice, ClearRequest, ContainerTerms, Credits, Effect, Mandate, PlacementPolicy, PriceSchedule,
    PriorityClass, Proposal, Rule, ScopeId, Standing, Tally,
};
use icn_protocol::request::SignedRequest;
use icn_protocol::views::{
    Authority, ClearingView, EntryView, JobTrace, Line, Page, Paged, Person, ProposalTrace, QueueView,
    ScopeQueue, Statement, StatementLine, Trace, WorkerView,
};
use icn_protocol::wire::{
    Answer, ApiError, Assignment, Cancel, Capacity, ClientRequest, ClientResponse, CoordinatorMessage,
    ExecutionReport, ExecutorKind, FailureKind, Hello, HelloReply, IdKind, JobOptions, JobState, JobSummary,
    JobView, JobsQuery, Limits, LiveStderr, Outcome, PlanView, Role, Submission, TraceQuery, Usage,
    VersionView, Waiting, Welcome, WorkerMessage, empty_input,
};
use icn_protocol::{ContentId, Envelope, Fuel, JobId, Keypair, Kind, Seal, TaskId};
use serde::Serialize;

struct Corpus {
    root: PathBuf,
}

impl Corpus {
    fn write(&self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("the corpus directory can be made");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("a seed can be written");
    }

    /// A postcard message, after `prefix` (a target's mode byte, if it has one).
    fn message<T: Serialize>(&self, target: &str, name: &str, prefix: &[u8], value: &T) {
        self.write(target, name, &[prefix, &icn_protocol::encode(value)].concat());
    }

    fn json<T: Serialize>(&self, which: u8, name: &str, value: &T) {
        let json = serde_json::to_vec_pretty(value).expect("a view writes as JSON");
        self.write("json", name, &[&[which][..], &json].concat());
    }
}

fn scope(name: &str) -> ScopeId {
    name.parse().expect("a valid scope name")
}

fn person(key: &Keypair, name: Option<&str>) -> Person {
    Person { key: key.public(), name: name.map(str::to_string) }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let corpus = Corpus { root };
    let coordinator = &*icn_fuzz::KEY;
    let member = Keypair::from_seed([1; 32]);
    let worker = Keypair::from_seed([2; 32]);

    // ---- statements, as signed envelopes ---------------------------------------------
    let limits = Limits::default();
    let submission = Submission {
        scope: scope("fed-north"),
        executor: ExecutorKind::Wasm,
        module: ContentId::of(b"module"),
        input: empty_input(),
        args: vec!["--n".into(), "42".into()],
        limits,
        options: JobOptions { deadline_ms: Some(1_700_000_600_000), priority: Some("urgent".into()) },
    };
    let submitted = Envelope::seal(&member, 11, &submission);
    let job = JobId(submitted.id());
    let task = TaskId { job, index: 0 };
    let report = ExecutionReport {
        task,
        attempt: 1,
        outcome: Outcome::Exited { code: 0 },
        output_digest: ContentId::of(b"42\n"),
        output_bytes: 3,
        stderr: b"warming up\n".to_vec(),
        fuel: Fuel(12_345),
        usage: Usage::default(),
    };
    let failed = ExecutionReport {
        outcome: Outcome::Failed { kind: FailureKind::Trap, detail: "unreachable executed".into() },
        usage: Usage { cpu_ms: 800, memory_peak_bytes: 1 << 20, wall_ms: 1_000 },
        ..report.clone()
    };
    let reported = Envelope::seal(&worker, 12, &report);
    let seal = Seal::sign(coordinator, 41, ContentId::of(b"entry 41"));
    let hello_worker = Hello {
        role: Role::Worker,
        channel_binding: [5; 32],
        agent: "icn-worker 0.1.0".into(),
        capacity: Some(Capacity {
            slots: 4,
            memory_bytes: 1 << 30,
            executors: vec![ExecutorKind::Wasm, ExecutorKind::Container],
        }),
        seen: Some(seal),
        running: vec![(task, 1)],
    };
    let hello_member =
        Hello { role: Role::Member, capacity: None, running: vec![], seen: None, ..hello_worker.clone() };
    let welcome = Welcome { channel_binding: [5; 32], heartbeat_interval_ms: 1_000, seal, known: Some(seal) };
    let rule =
        Rule { quorum: "1/2".parse().unwrap(), approval: "2/3".parse().unwrap(), voting_window_ms: 5_000 };
    let mandate = Mandate {
        scope: scope("fed-north"),
        budget: Credits(100_000),
        period_ms: 604_800_000,
        executors: vec![ExecutorKind::Wasm],
        limits,
    };
    let effects = [
        Effect::Mandate(mandate.clone()),
        Effect::AdmitWorker { key: worker.public(), owner: scope("coop-a") },
        Effect::GrantStanding { name: "ana".into(), key: member.public(), standing: vec![Standing::Vote] },
        Effect::PlacementPolicy(PlacementPolicy { replicas: 3, quorum: 2 }),
        Effect::PriceSchedule(PriceSchedule { credits_per_mega_fuel: 2 }),
        Effect::CreditLimit { scope: scope("fed-north"), limit: Credits(10_000) },
        Effect::PriorityClasses { classes: vec![PriorityClass { name: "urgent".into(), weight: 4 }] },
        Effect::ContainerTerms(ContainerTerms {
            credits_per_cpu_second: 10,
            credits_per_gib_second: 4,
            usage_tolerance_percent: 20,
        }),
    ];
    let proposals: Vec<Envelope> = effects
        .iter()
        .enumerate()
        .map(|(i, effect)| {
            let proposal = Proposal {
                scope: scope("fed-north"),
                title: format!("proposal {i}"),
                effect: effect.clone(),
            };
            Envelope::seal(&member, 20 + i as u64, &proposal)
        })
        .collect();
    let ballot =
        Ballot { proposal: proposals[0].id(), choice: Choice::Yes, reason: Some("we need it".into()) };
    let voted = Envelope::seal(&member, 30, &ballot);
    let clear = Envelope::seal(&member, 31, &ClearRequest { federation: scope("fed-north"), made_ms: 1 });
    let cancel = Envelope::seal(&member, 32, &Cancel { job });
    let request = SignedRequest {
        method: "POST".into(),
        target: "/v1/jobs?state=queued".into(),
        time_ms: 1_700_000_000_000,
        body: ContentId::of(b"{}"),
    };
    let envelopes: Vec<(&str, Envelope)> = vec![
        ("hello-worker", Envelope::seal(&worker, 1, &hello_worker)),
        ("hello-member", Envelope::seal(&member, 2, &hello_member)),
        ("welcome", Envelope::seal(coordinator, 3, &welcome)),
        ("submission", submitted.clone()),
        ("report", reported.clone()),
        ("report-failed", Envelope::seal(&worker, 13, &failed)),
        ("proposal", proposals[0].clone()),
        ("ballot", voted.clone()),
        ("clear", clear.clone()),
        ("cancel", cancel.clone()),
        ("request", Envelope::seal(&member, 33, &request)),
    ];
    for (name, envelope) in &envelopes {
        corpus.message("envelope", name, &[0], envelope);
    }
    for (i, proposal) in proposals.iter().enumerate().skip(1) {
        corpus.message("envelope", &format!("proposal-{i}"), &[0], proposal);
    }
    // Payloads for the target to sign itself (mode odd, then the kind's index), the
    // earlier encodings of the statements that grew among them.
    #[derive(Serialize)]
    struct SubmissionV1<'a>(&'a ScopeId, ExecutorKind, ContentId, ContentId, &'a [String], Limits);
    #[derive(Serialize)]
    struct ReportV1<'a>(TaskId, u32, &'a Outcome, ContentId, u64, &'a [u8], Fuel);
    #[derive(Serialize)]
    struct BallotV1(ContentId, Choice);
    let s = &submission;
    let payloads: Vec<(&str, Kind, Vec<u8>)> = vec![
        (
            "submission-v1",
            Kind::Submission,
            icn_protocol::encode(&SubmissionV1(&s.scope, s.executor, s.module, s.input, &s.args, s.limits)),
        ),
        (
            "report-v1",
            Kind::ExecutionReport,
            icn_protocol::encode(&ReportV1(
                task,
                1,
                &report.outcome,
                report.output_digest,
                3,
                &report.stderr,
                report.fuel,
            )),
        ),
        ("ballot-v1", Kind::Ballot, icn_protocol::encode(&BallotV1(ballot.proposal, Choice::No))),
    ];
    let kinds = [
        Kind::Hello,
        Kind::Welcome,
        Kind::Submission,
        Kind::ExecutionReport,
        Kind::JournalRecord,
        Kind::Proposal,
        Kind::Ballot,
        Kind::ClearRequest,
        Kind::Cancel,
        Kind::Request,
    ];
    let index = |kind: Kind| kinds.iter().position(|k| *k == kind).expect("every kind is listed") as u8;
    for (name, envelope) in &envelopes {
        corpus.write(
            "envelope",
            &format!("payload-{name}"),
            &[&[1, index(envelope.kind)][..], &envelope.payload].concat(),
        );
    }
    for (name, kind, payload) in &payloads {
        corpus.write("envelope", &format!("payload-{name}"), &[&[1, index(*kind)][..], payload].concat());
    }

    // ---- worker ⇄ coordinator -------------------------------------------------------
    let worker_messages = [
        ("heartbeat", WorkerMessage::Heartbeat { running: vec![(task, 1)], free_slots: 3 }),
        ("fetch-module", WorkerMessage::FetchModule(ContentId::of(b"module"))),
        ("report", WorkerMessage::Report { report: reported.clone(), output: b"42\n".to_vec() }),
        ("drain", WorkerMessage::Drain),
        ("progress", WorkerMessage::Progress { stderr: b"step 3 of 9\n".to_vec(), skipped: 0 }),
    ];
    for (name, message) in &worker_messages {
        corpus.message("worker_message", name, &[], message);
    }
    let assignment = Assignment {
        task,
        attempt: 1,
        executor: ExecutorKind::Wasm,
        module: submission.module,
        input: submission.input,
        args: submission.args.clone(),
        limits,
    };
    let coordinator_messages = [
        ("assign", CoordinatorMessage::Assign { assignment: Box::new(assignment), input: vec![], seal }),
        ("module", CoordinatorMessage::Module(b"\0asm\x01\0\0\0".to_vec())),
        ("no-module", CoordinatorMessage::NoModule("not stored here".into())),
        ("cancel", CoordinatorMessage::Cancel),
    ];
    for (name, message) in &coordinator_messages {
        corpus.message("coordinator_message", name, &[0], message);
    }
    let welcomed = HelloReply::Welcome(Envelope::seal(coordinator, 3, &welcome));
    corpus.message("coordinator_message", "hello-welcome", &[1], &welcomed);
    corpus.message("coordinator_message", "hello-refused", &[1], &HelloReply::Refused("not admitted".into()));

    // ---- member ⇄ coordinator ---------------------------------------------------------
    let page = Page { after: Some(10), limit: Some(20) };
    let requests = [
        ("has-module", ClientRequest::HasModule(submission.module)),
        ("put-module", ClientRequest::PutModule(b"\0asm\x01\0\0\0".to_vec())),
        ("put-input", ClientRequest::PutInput(b"1 2 3\n".to_vec())),
        ("submit", ClientRequest::Submit(submitted.clone())),
        ("plan", ClientRequest::Plan(submitted.clone())),
        ("watch", ClientRequest::Watch(job)),
        ("propose", ClientRequest::Propose(proposals[0].clone())),
        ("vote", ClientRequest::Vote(voted.clone())),
        ("clear", ClientRequest::Clear(clear.clone())),
        ("cancel", ClientRequest::Cancel(cancel.clone())),
        ("scope", ClientRequest::Scope(scope("coop-a"), page)),
        ("trace", ClientRequest::Trace(TraceQuery::Decision(4, page))),
        ("complete", ClientRequest::Complete { kind: IdKind::Job, prefix: "ab12cd".into() }),
        (
            "jobs",
            ClientRequest::Jobs(
                JobsQuery {
                    scope: Some(scope("fed-north")),
                    state: Some("queued".into()),
                    submitter: Some(member.public()),
                    since_ms: Some(1),
                },
                page,
            ),
        ),
        ("entry", ClientRequest::Entry(41)),
        ("live-stderr", ClientRequest::LiveStderr { job, from: 0, wait_ms: 1_000 }),
        ("version", ClientRequest::Version),
    ];
    for (name, request) in &requests {
        corpus.message("client_request", name, &[], request);
    }
    // The same requests framed, two to a stream, under a limit of 64 KiB.
    for pair in requests.chunks(2) {
        let mut stream = vec![0xff, 0xff, 0];
        for (_, request) in pair {
            let body = icn_protocol::encode(request);
            stream.extend_from_slice(&(body.len() as u32).to_be_bytes());
            stream.extend_from_slice(&body);
        }
        corpus.write("frame", pair[0].0, &stream);
    }
    corpus.write("frame", "finished-empty", &[0xff, 0xff, 1]);
    corpus.write("frame", "finished-more", &[0xff, 0xff, 1, 0, 0, 0, 1, 22]);
    corpus.write("frame", "too-large", &[0x10, 0x00, 0, 0xff, 0xff, 0xff, 0xff, 0]);

    let job_view = JobView {
        job,
        scope: scope("fed-north"),
        submitter: member.public(),
        state: JobState::Running { worker: worker.public(), attempt: 1 },
        attempts: 1,
        result: Some((worker.public(), report.clone())),
        failure: None,
        waiting: Some(Waiting::SlotsBusy { slots: 4, ahead: 2, scope: scope("fed-north") }),
    };
    let line = |seq: u64, text: &str| Line {
        seq,
        time_ms: 1_700_000_000_000 + seq,
        cause: seq.checked_sub(1),
        signer: person(&member, Some("ana")),
        text: text.into(),
    };
    let trace = Trace {
        job: Some(JobTrace {
            job,
            scope: scope("fed-north"),
            submitter: person(&member, Some("ana")),
            hold: Credits(1_000),
            entries: vec![line(5, "job submitted"), line(6, "task placed")],
            money: vec!["#9 fed-north paid coop-a 13 credits".into()],
            order: Some("weight 1".into()),
        }),
        authority: Authority {
            decision: 4,
            founding: false,
            time_ms: 1_700_000_000_000,
            scope: scope("fed-north"),
            effect: "a mandate".into(),
            proposal: Some(ProposalTrace {
                seq: 3,
                id: proposals[0].id(),
                title: "proposal 0".into(),
                proposer: person(&member, None),
                closes_ms: 1_700_000_005_000,
                rule,
                tally: Tally { electorate: 1, yes: 1, no: 0, abstain: 0 },
                accepted: true,
                reason: "quorum and approval met".into(),
                ballots_digest: ContentId::of(b"ballots"),
                ballots: vec![],
            }),
        },
        authorized_jobs: vec![],
    };
    let statement = Statement {
        scope: scope("fed-north"),
        lines: vec![StatementLine {
            seq: 9,
            time_ms: 1_700_000_000_000,
            change: Credits(-13),
            position: Credits(-13),
            text: "paid coop-a for job".into(),
            decision: Some(4),
        }],
        next: None,
    };
    let summary = JobSummary {
        job,
        scope: scope("fed-north"),
        submitter: person(&member, Some("ana")),
        submitted_ms: 1_700_000_000_000,
        state: JobState::Queued,
        waiting: Some(Waiting::NoExecutor { executor: ExecutorKind::Container }),
        failure: None,
    };
    let plan = PlanView {
        scope: scope("fed-north"),
        decision: 4,
        hold: Credits(1_000),
        available_after: Credits(9_000),
        replicas: 1,
        placements: vec![],
        waiting: Some(Waiting::Backoff { wait_ms: 2_000, attempts: 2, attempts_max: 5 }),
        queued_ahead: 0,
    };
    let live = LiveStderr {
        job,
        state: JobState::Queued,
        worker: Some(worker.public()),
        from: 0,
        stderr: b"step 1\n".to_vec(),
        next: 7,
        skipped: 0,
    };
    let responses = [
        ("has-module", ClientResponse::HasModule(true)),
        ("submitted", ClientResponse::Submitted(job)),
        ("job", ClientResponse::Job(Box::new(job_view.clone()))),
        ("jobs", ClientResponse::Jobs(Paged { items: vec![summary.clone()], next: Some(7) })),
        ("trace", ClientResponse::Trace(Box::new(trace.clone()))),
        ("statement", ClientResponse::Statement(statement.clone())),
        ("plan", ClientResponse::Plan(Box::new(plan.clone()))),
        ("error", ClientResponse::Error(ApiError::new("not_found", "no job ab12cd"))),
        ("live-stderr", ClientResponse::LiveStderr(Box::new(live.clone()))),
        ("completions", ClientResponse::Completions(vec![job.0.to_string()])),
        ("version", ClientResponse::Version(VersionView::of("0.1.0"))),
        ("output", ClientResponse::Output { job, digest: ContentId::of(b"42\n"), bytes: b"42\n".to_vec() }),
    ];
    for (name, response) in responses {
        corpus.message("answer", name, &[], &Answer { seal, response });
    }

    // ---- JSON -------------------------------------------------------------------------
    let envelope_json = serde_json::json!({
        "version": 1,
        "kind": "Submission",
        "signer": submitted.signer.to_string(),
        "seq": submitted.seq,
        "payload": "AAEC",
        "signature": submitted.signature.0.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    });
    corpus.json(0, "envelope", &envelope_json);
    corpus.json(1, "job", &job_view);
    corpus.json(2, "error", &ApiError::new("malformed", "the body is not JSON"));
    corpus.json(3, "jobs", &Paged { items: vec![summary], next: None });
    corpus.json(8, "statement", &statement);
    corpus.json(9, "trace", &trace);
    let worker_view = WorkerView {
        key: worker.public(),
        owner: Some(scope("coop-a")),
        connected: true,
        slots: 4,
        free_slots: 2,
        trust: Default::default(),
        trust_lower_bound: 0.25,
        quarantined: false,
        draining: false,
    };
    corpus.json(10, "workers", &Paged { items: vec![worker_view], next: None });
    let queue = QueueView {
        slots: 8,
        free_slots: 3,
        half_life_ms: 600_000,
        scopes: vec![ScopeQueue {
            scope: scope("fed-north"),
            weight: 1,
            decision: None,
            share: 0.5,
            recent_ms: 1_000,
            running: 2,
            waiting: 1,
            classes: vec![],
        }],
    };
    corpus.json(11, "queue", &queue);
    let entry_view = EntryView {
        line: line(41, "job completed"),
        prev_hash: ContentId::of(b"40"),
        hash: ContentId::of(b"41"),
        seal: Some(seal),
    };
    corpus.json(12, "entry", &entry_view);
    corpus.json(13, "plan", &plan);
    corpus.json(14, "live", &live);
    corpus.json(15, "version", &VersionView::of("0.1.0"));
    corpus.json(
        17,
        "clearing",
        &ClearingView { federation: scope("fed-north"), before: vec![], after: vec![] },
    );

    // ---- text: seals, ids, headers, genesis ---------------------------------------------
    let texts = [
        ("seal-point", seal.point().to_string()),
        ("content-id", ContentId::of(b"x").to_string()),
        ("public-key", member.public().to_string()),
        ("scope", "fed-north".to_string()),
        ("fraction", "2/3".to_string()),
        ("standing", "donate".to_string()),
        ("choice", "abstain".to_string()),
        ("executor", "container".to_string()),
        ("prefix", "AB12cd3".to_string()),
    ];
    for (name, text) in &texts {
        corpus.write("seal", name, &[&[0][..], text.as_bytes()].concat());
    }
    corpus.message("seal", "seal", &[1], &seal);
    let headers = SignedRequest::sign(&member, 7, "POST", "/v1/jobs", 1_700_000_000_000, b"{}");
    let header_input = [
        headers.signer,
        headers.nonce,
        headers.time,
        headers.signature,
        "POST".into(),
        "/v1/jobs".into(),
        "{}".into(),
    ]
    .join("\0");
    corpus.write("request_claims", "signed", header_input.as_bytes());
    let genesis = include_str!("../../deploy/genesis.example.toml")
        .replace("<public key of ana>", &member.public().to_string())
        .replace("<public key of the worker>", &worker.public().to_string());
    assert!(icn_governance::Genesis::parse(&genesis).is_ok(), "the example genesis is valid once keyed");
    corpus.write("genesis_toml", "example", genesis.as_bytes());
    let full = format!(
        "free_compute = true\n{genesis}\n[[mandates]]\nscope = \"fed-north\"\nbudget = 100000\nperiod_ms = 604800000\n\
         executors = [\"wasm\", \"container\"]\nlimits = {{ fuel = 1000000000, memory_bytes = 67108864, timeout_ms = 10000, output_bytes = 65536 }}\n\n\
         [[scopes]]\nid = \"town\"\nkind = \"community\"\nparent = \"fed-north\"\n\
         rule = {{ quorum = \"1/3\", approval = \"1/2\", voting_window_ms = 1000 }}\nprices = {{ credits_per_mega_fuel = 0 }}\n\
         policy = {{ replicas = 3, quorum = 2 }}\ncredit_limit = 5\n"
    );
    assert!(icn_governance::Genesis::parse(&full).is_ok(), "the full genesis seed is valid");
    corpus.write("genesis_toml", "full", full.as_bytes());

    // ---- journal records ------------------------------------------------------------
    let authorization = Authorization {
        decision: 4,
        hold: Credits(1_000),
        price: PriceSchedule { credits_per_mega_fuel: 1 },
    };
    let records = vec![
        ("submitted", Record::JobSubmitted { submission: submitted.clone(), authorization }),
        (
            "placed",
            Record::TaskPlaced {
                task,
                attempt: 1,
                worker: worker.public(),
                owner: scope("coop-a"),
                scores: Scores { trust: 500, capacity: 750, fairness: 1_000, total: 700 },
                quorum: 1,
            },
        ),
        ("requeued", Record::TaskRequeued { task, attempt: 1, reason: "worker lost".into(), fault: true }),
        ("report", Record::ReportReceived { report: reported.clone() }),
        (
            "completed",
            Record::JobCompleted {
                job,
                output_digest: report.output_digest,
                fuel: report.fuel,
                worker: worker.public(),
                payees: vec![(scope("coop-a"), Credits(13))],
            },
        ),
        ("failed", Record::JobFailed { job, reason: "out of fuel".into() }),
        (
            "genesis",
            Record::Governance(Event::Genesis(
                icn_governance::Genesis::parse(&genesis).expect("checked above"),
            )),
        ),
        (
            "proposal",
            Record::Governance(Event::ProposalOpened {
                proposal: proposals[0].clone(),
                closes_ms: 1_700_000_005_000,
                electorate: vec![member.public()],
            }),
        ),
        ("ballot", Record::Governance(Event::BallotCast { ballot: voted, standing: vec![Standing::Vote] })),
        ("cancelled", Record::JobCancelled { request: cancel }),
    ];
    for (name, record) in &records {
        corpus.message("journal_record", name, &[1], record);
    }
    println!("seeds written under {}", corpus.root.display());
}
