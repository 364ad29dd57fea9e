//! Governance through a real coordinator over QUIC: jobs run only under decisions,
//! ballots are checked, every job traces back to its decision, and the governance
//! rows of the journal are as tamper-evident as the job rows.

use std::sync::Arc;
use std::time::Duration;

use icn_cli::client::Client;
use icn_cli::demo::{HELLO_WAT, wait_for_decision};
use icn_cli::local::{self, LocalCommons, LocalOptions};
use icn_coordinator::journal;
use icn_core::record::Record;
use icn_governance::Event;
use icn_protocol::governance::{Ballot, Choice, Credits, Effect, Proposal, Standing};
use icn_protocol::views::{DecisionView as Decision, Page};
use icn_protocol::wire::{ClientRequest, ClientResponse, ExecutorKind, JobState, Limits, TraceQuery};
use icn_protocol::{ContentId, Envelope, Fuel, Keypair};

const WINDOW_MS: u64 = 400;

async fn commons(dir: &std::path::Path) -> LocalCommons {
    let options = LocalOptions {
        owners: &["coop-a", "coop-b"],
        members: &["ana", "ben", "cy"],
        voting_window_ms: WINDOW_MS,
        founding_budget: None,
        ..LocalOptions::default()
    };
    LocalCommons::start(dir, options).await.unwrap()
}

fn hello(module: ContentId, fuel: u64) -> icn_cli::client::JobRequest {
    local::submission(module, b"", Limits { fuel: Fuel(fuel), ..Limits::default() })
}

/// Proposes `effect` in the federation as the first client, has every client vote yes,
/// and waits for the decision.
async fn decide(clients: &[&Client], title: &str, effect: Effect) -> Decision {
    let proposal = Proposal { scope: local::federation(), title: title.into(), effect };
    let (id, _) = clients[0].propose(&proposal).await.unwrap();
    for client in clients {
        client.vote(id, Choice::Yes).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(20), wait_for_decision(clients[0], id)).await.unwrap().unwrap()
}

async fn refusal(client: &Client, submission: &icn_cli::client::JobRequest) -> String {
    client.submit(submission).await.unwrap_err().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_only_under_a_mandate_in_force_with_budget_and_standing() {
    let dir = tempfile::tempdir().unwrap();
    let commons = commons(dir.path()).await;
    let [ana, ben, cy] = [0, 1, 2].map(|i| commons.members[i].key.clone());
    let (ana, ben, cy) = (
        commons.client_for(ana).await.unwrap(),
        commons.client_for(ben).await.unwrap(),
        commons.client_for(cy).await.unwrap(),
    );
    let module = ana.ensure_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();

    let why = refusal(&ana, &hello(module, 1_000_000)).await;
    assert!(why.contains("scope fed-north holds no mandate to run jobs"), "{why}");

    // 2 credits: a job of up to a million fuel holds 1.
    let mut mandate = local::day_mandate(Credits(2));
    mandate.limits.fuel = Fuel(2_000_000);
    let granted = decide(&[&ana, &ben], "a small budget", Effect::Mandate(mandate)).await;
    assert!(granted.accepted, "{}", granted.reason);

    let first = ana.submit(&hello(module, 1_000_000)).await.unwrap();
    let why = refusal(&ana, &hello(module, 3_000_000)).await;
    assert!(
        why.contains("asks --fuel 3000000, over") && why.contains("--fuel 2000000: ask for less"),
        "{why}"
    );
    let mut container = hello(module, 1_000_000);
    container.submission.executor = ExecutorKind::Container;
    let why = refusal(&ana, &container).await;
    assert!(why.contains("does not allow the container executor (it allows wasm)"), "{why}");
    let second = ben.submit(&hello(module, 1_000_000)).await.unwrap();
    for job in [first, second] {
        assert_eq!(ana.watch(job, |_| {}).await.unwrap().state, JobState::Completed);
    }
    // Both completed jobs used 12 fuel: each spent 1 credit (rounded up), none left.
    let why = refusal(&ana, &hello(module, 1_000_000)).await;
    assert!(why.contains(&format!("(decision #{}) has 0 credits left", granted.seq)), "{why}");

    // A bigger budget; then ben's submit standing is revoked: his later job is refused,
    // while the job he submitted before the decision completes.
    let granted = decide(&[&ana, &cy], "more", Effect::Mandate(local::day_mandate(Credits(1_000_000)))).await;
    let busy = wat::parse_str(icn_cli::demo::BUSY_WAT).unwrap();
    let busy = ben.ensure_module(&busy).await.unwrap();
    let before =
        local::submission(busy, &[b'x'; 5], Limits { fuel: Fuel(1_000_000_000), ..Limits::default() });
    let before = ben.submit(&before).await.unwrap();
    let revoke =
        Effect::RevokeStanding { key: commons.members[1].key.public(), standing: vec![Standing::Submit] };
    let revoked = decide(&[&ana, &cy], "ben stops submitting", revoke).await;
    assert!(revoked.accepted && revoked.seq > granted.seq);
    let why = refusal(&ben, &hello(module, 1_000_000)).await;
    assert!(why.contains("member ben holds no submit standing in scope fed-north"), "{why}");
    let view = ben.watch(before, |_| {}).await.unwrap();
    assert_eq!(view.state, JobState::Completed, "{view:?}");

    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_outsider_duplicate_and_late_ballots_are_refused_and_short_quorum_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let commons = commons(dir.path()).await;
    let ana = commons.client().await.unwrap();
    let proposal = Proposal {
        scope: local::federation(),
        title: "prices".into(),
        effect: Effect::PriceSchedule(icn_protocol::governance::PriceSchedule { credits_per_mega_fuel: 5 }),
    };
    let (id, _) = ana.propose(&proposal).await.unwrap();

    // A ballot whose bytes were changed after signing, sent on ana's own connection.
    let mut forged =
        Envelope::seal(&commons.member, 7, &Ballot { proposal: id, choice: Choice::Yes, reason: None });
    forged.payload[0] ^= 1;
    let answer = raw_request(&ana, ClientRequest::Vote(forged)).await;
    assert!(matches!(&answer, ClientResponse::Error(e) if e.message.contains("signature")), "{answer:?}");
    // A ballot signed by a key that is no member, relayed by a member: a connection
    // carries only its own member's statements.
    let outsider = Keypair::generate();
    let stray = Envelope::seal(&outsider, 1, &Ballot { proposal: id, choice: Choice::Yes, reason: None });
    let answer = raw_request(&ana, ClientRequest::Vote(stray)).await;
    assert!(
        matches!(&answer, ClientResponse::Error(e) if e.message.contains(&format!("cannot carry a statement signed by {}", outsider.public().short()))),
        "{answer:?}"
    );
    ana.vote(id, Choice::Yes).await.unwrap();
    let again = ana.vote(id, Choice::Yes).await.unwrap_err().to_string();
    assert!(again.contains("duplicate ballot: member ana already voted yes"), "{again}");

    // Only ana of three voted: short of the 1/2 quorum.
    let decision = wait_for_decision(&ana, id).await.unwrap();
    assert!(!decision.accepted);
    assert!(decision.reason.contains("short of quorum: 1 of 3"), "{}", decision.reason);
    let late = ana.vote(id, Choice::No).await.unwrap_err().to_string();
    assert!(late.contains("voting on proposal") && late.contains("closed"), "{late}");
    let scope = ana.scope(local::federation()).await.unwrap();
    assert_eq!(scope.prices.credits_per_mega_fuel, 1, "rejected: nothing changed");
    commons.stop().await.unwrap();
}

async fn raw_request(client: &Client, request: ClientRequest) -> ClientResponse {
    let (mut send, mut recv) = icn_transport::open(client.connection()).await.unwrap();
    send.write(&request).await.unwrap();
    send.get_mut().finish().unwrap();
    recv.read::<icn_protocol::wire::Answer>(1 << 20).await.unwrap().unwrap().response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_traces_to_its_decision_proposal_ballots_standing_and_rule_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let commons = commons(dir.path()).await;
    let ana = commons.client().await.unwrap();
    let ben = commons.client_for(commons.members[1].key.clone()).await.unwrap();
    let granted =
        decide(&[&ana, &ben], "budget for the week", Effect::Mandate(local::day_mandate(Credits(5_000))))
            .await;
    let module = ana.ensure_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();
    let job = ana.submit(&hello(module, 1_000_000)).await.unwrap();
    ana.watch(job, |_| {}).await.unwrap();

    let trace = ben.trace(TraceQuery::Job(job)).await.unwrap();
    let traced = trace.job.as_ref().unwrap();
    assert_eq!(traced.job, job);
    assert_eq!(traced.submitter.name.as_deref(), Some("ana"));
    let texts: Vec<&str> = traced.entries.iter().map(|l| l.text.as_str()).collect();
    assert!(texts[0].contains("submitted by ana for fed-north"), "{texts:?}");
    assert_eq!(traced.entries[0].cause, Some(granted.seq), "the submission's cause is the decision");
    assert!(texts.iter().any(|t| t.contains("placed on worker")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("reported task")), "{texts:?}");
    assert!(texts.last().unwrap().contains("completed on worker"), "{texts:?}");

    let authority = &trace.authority;
    assert_eq!((authority.decision, authority.founding), (granted.seq, false));
    assert!(authority.effect.contains("mandate: scope fed-north may run jobs costing up to 5000 credits"));
    let proposal = authority.proposal.as_ref().unwrap();
    assert_eq!(proposal.title, "budget for the week");
    assert_eq!(proposal.proposer.name.as_deref(), Some("ana"));
    assert_eq!(
        (proposal.rule.quorum.to_string(), proposal.rule.approval.to_string()),
        ("1/2".into(), "2/3".into())
    );
    assert_eq!((proposal.tally.electorate, proposal.tally.yes), (3, 2));
    let voters: Vec<(Option<&str>, Choice, &[Standing])> =
        proposal.ballots.iter().map(|b| (b.voter.name.as_deref(), b.choice, b.standing.as_slice())).collect();
    let held: &[Standing] = &[Standing::Vote, Standing::Submit];
    assert_eq!(voters, vec![(Some("ana"), Choice::Yes, held), (Some("ben"), Choice::Yes, held)]);
    let text = trace.to_string();
    for words in [
        "authorized by decision",
        "ballot #",
        "ben (",
        "voted yes, holding vote, submit standing",
        "quorum 1/2",
    ] {
        assert!(text.contains(words), "{words:?} missing from:\n{text}");
    }

    let back = ana.trace(TraceQuery::Decision(granted.seq, Page::default())).await.unwrap();
    assert_eq!(back.authorized_jobs.iter().map(|j| j.job).collect::<Vec<_>>(), vec![job]);
    let not_a_decision =
        ana.trace(TraceQuery::Decision(traced.entries[1].seq, Page::default())).await.unwrap_err();
    assert!(not_a_decision.to_string().contains("is not a decision"), "{not_a_decision}");
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_any_governance_row_is_caught_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let commons = commons(dir.path()).await;
    let ana = commons.client().await.unwrap();
    let ben = commons.client_for(commons.members[1].key.clone()).await.unwrap();
    decide(&[&ana, &ben], "budget", Effect::Mandate(local::day_mandate(Credits(10)))).await;
    let coordinator = commons.coordinator.public_key();
    let path = commons.journal.clone();
    drop((ana, ben));
    commons.stop().await.unwrap();

    let governance_rows: Vec<i64> = journal::read(&path)
        .unwrap()
        .iter()
        .filter(|e| matches!(e.decode_record().unwrap(), Record::Governance(_)))
        .map(|e| e.seq as i64)
        .collect();
    let kinds: Vec<&str> = journal::read(&path)
        .unwrap()
        .iter()
        .filter_map(|e| match e.decode_record().unwrap() {
            Record::Governance(Event::Genesis(_)) => Some("genesis"),
            Record::Governance(Event::ProposalOpened { .. }) => Some("proposal"),
            Record::Governance(Event::BallotCast { .. }) => Some("ballot"),
            Record::Governance(Event::DecisionMade(_)) => Some("decision"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["genesis", "proposal", "ballot", "ballot", "decision"]);
    assert!(journal::verify(&path, Some(coordinator)).unwrap().first_bad.is_none());
    for seq in governance_rows {
        let copy = dir.path().join(format!("tampered-{seq}.db"));
        std::fs::copy(&path, &copy).unwrap();
        let db = rusqlite::Connection::open(&copy).unwrap();
        let mut record: Vec<u8> =
            db.query_row("SELECT record FROM journal WHERE seq = ?1", [seq], |row| row.get(0)).unwrap();
        let middle = record.len() / 2;
        record[middle] ^= 0x20;
        db.execute("UPDATE journal SET record = ?1 WHERE seq = ?2", rusqlite::params![record, seq]).unwrap();
        drop(db);
        let verification = journal::verify(&copy, Some(coordinator)).unwrap();
        assert_eq!(verification.first_bad.map(|bad| bad.seq as i64), Some(seq), "row {seq} was changed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_admits_a_worker_and_another_removes_it_from_the_running_commons() {
    let dir = tempfile::tempdir().unwrap();
    let commons = commons(dir.path()).await;
    let ana = commons.client().await.unwrap();
    let ben = commons.client_for(commons.members[1].key.clone()).await.unwrap();
    let newcomer = Arc::new(Keypair::generate());
    let run_newcomer = || {
        let config = icn_worker::WorkerConfig {
            key: newcomer.clone(),
            coordinator: commons.coordinator.addr(),
            coordinator_key: commons.coordinator.public_key(),
            slots: 1,
            memory_bytes: 256 << 20,
            metrics_listen: None,
            agent: "newcomer".into(),
        };
        tokio::spawn(icn_worker::run(config, Arc::new(icn_worker::WasmExecutor::new().unwrap())))
    };
    let refused = run_newcomer().await.unwrap().unwrap_err().to_string();
    assert!(refused.contains("is not admitted to this commons"), "{refused}");

    let owner: icn_protocol::governance::ScopeId = "coop-b".parse().unwrap();
    let admit = Effect::AdmitWorker { key: newcomer.public(), owner };
    assert!(decide(&[&ana, &ben], "coop-b's new server", admit).await.accepted);
    let running = run_newcomer();
    commons.wait_for_workers(3).await.unwrap();
    let connected = commons.coordinator.workers().await.unwrap();
    assert!(connected.iter().any(|w| w.key == newcomer.public() && w.owner == "coop-b"), "{connected:?}");

    let remove = Effect::RemoveWorker { key: newcomer.public() };
    assert!(decide(&[&ana, &ben], "retire it", remove).await.accepted);
    // Disconnected by the decision; its reconnection is refused, which stops the agent.
    let ended = tokio::time::timeout(Duration::from_secs(20), running).await.unwrap().unwrap();
    assert!(ended.unwrap_err().to_string().contains("is not admitted"));
    let connected = commons.coordinator.workers().await.unwrap();
    assert!(connected.iter().all(|w| w.key != newcomer.public()), "{connected:?}");
    commons.stop().await.unwrap();
}
