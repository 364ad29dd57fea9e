//! Every signed message kind sent again, over the wire, to a real coordinator: a replayed
//! envelope is refused or answered as the first time, and never has a second effect in
//! the journal.

use std::sync::Arc;
use std::time::Duration;

use icn_cli::client::Client;
use icn_cli::demo::SUM_WAT;
use icn_cli::local::{self, LocalCommons, LocalOptions};
use icn_coordinator::journal;
use icn_core::record::Record;
use icn_governance::Event;
use icn_protocol::governance::{Ballot, Choice, ClearRequest, Effect, PriceSchedule, Proposal};
use icn_protocol::wire::{
    Answer, ClientRequest, ClientResponse, CoordinatorMessage, ExecutionReport, Hello, HelloReply, Limits,
    Outcome, Role, WorkerMessage,
};
use icn_protocol::{ContentId, Envelope, Fuel, Keypair, PublicKey};

async fn raw(client: &Client, request: ClientRequest) -> ClientResponse {
    let (mut send, mut recv) = icn_transport::open(client.connection()).await.unwrap();
    send.write(&request).await.unwrap();
    send.get_mut().finish().unwrap();
    recv.read::<Answer>(1 << 20).await.unwrap().unwrap().response
}

fn records(commons: &LocalCommons) -> Vec<Record> {
    journal::read(&commons.journal).unwrap().iter().map(|e| e.decode_record().unwrap()).collect()
}

fn count(commons: &LocalCommons, what: impl Fn(&Record) -> bool) -> usize {
    records(commons).iter().filter(|r| what(r)).count()
}

async fn commons(dir: &std::path::Path, extra: &'static [(PublicKey, &'static str)]) -> LocalCommons {
    let options = LocalOptions { voting_window_ms: 60_000, extra_workers: extra, ..LocalOptions::default() };
    LocalCommons::start(dir, options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_sent_twice_is_one_job() {
    a_submission_sent_twice(LocalOptions::default().ended_jobs_in_memory).await;
}

/// The same, when the job left the coordinator's memory as soon as it ended: the
/// journal's index knows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_sent_again_after_its_job_left_memory_is_the_same_job() {
    a_submission_sent_twice(0).await;
}

async fn a_submission_sent_twice(ended_jobs_in_memory: usize) {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions { voting_window_ms: 60_000, ended_jobs_in_memory, ..LocalOptions::default() };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let ana = commons.client().await.unwrap();
    let module = ana.ensure_module(&wat::parse_str(SUM_WAT).unwrap()).await.unwrap();
    let job = local::submission(module, b"1 2", Limits::default());
    ana.ensure_input(&job.input).await.unwrap();
    let envelope = Envelope::seal(&commons.member, 7, &job.submission);
    let first = raw(&ana, ClientRequest::Submit(envelope.clone())).await;
    let again = raw(&ana, ClientRequest::Submit(envelope.clone())).await;
    let (ClientResponse::Submitted(a), ClientResponse::Submitted(b)) = (&first, &again) else {
        panic!("{first:?} {again:?}");
    };
    assert_eq!(a, b, "the replay answers with the job the first made");
    let view = tokio::time::timeout(Duration::from_secs(20), ana.watch(*a, |_| {})).await.unwrap().unwrap();
    assert_eq!(ana.output(view.job).await.unwrap(), b"3\n");
    // Sent again after the job ended, it is still the same job and runs no more.
    let late = raw(&ana, ClientRequest::Submit(envelope)).await;
    assert!(matches!(late, ClientResponse::Submitted(c) if c == *a), "{late:?}");
    assert_eq!(count(&commons, |r| matches!(r, Record::JobSubmitted { .. })), 1);
    assert_eq!(count(&commons, |r| matches!(r, Record::JobCompleted { .. })), 1);
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_sent_twice_opens_once_and_an_old_ballot_cannot_undo_a_change_of_vote() {
    let dir = tempfile::tempdir().unwrap();
    let commons = commons(dir.path(), &[]).await;
    let ana = commons.client().await.unwrap();
    let proposal = Proposal {
        scope: local::federation(),
        title: "prices".into(),
        effect: Effect::PriceSchedule(PriceSchedule { credits_per_mega_fuel: 3 }),
    };
    let envelope = Envelope::seal(&commons.member, 11, &proposal);
    let ClientResponse::Proposed { proposal: id, .. } =
        raw(&ana, ClientRequest::Propose(envelope.clone())).await
    else {
        panic!("the proposal opens");
    };
    let again = raw(&ana, ClientRequest::Propose(envelope)).await;
    assert!(matches!(&again, ClientResponse::Error(e) if e.message.contains("already made")), "{again:?}");

    let yes =
        Envelope::seal(&commons.member, 12, &Ballot { proposal: id, choice: Choice::Yes, reason: None });
    let no = Envelope::seal(&commons.member, 13, &Ballot { proposal: id, choice: Choice::No, reason: None });
    assert!(matches!(raw(&ana, ClientRequest::Vote(yes.clone())).await, ClientResponse::Voted { .. }));
    assert!(matches!(raw(&ana, ClientRequest::Vote(no)).await, ClientResponse::Voted { .. }));
    // Whoever kept ana's first ballot sends it again to turn her "no" back into "yes".
    let replayed = raw(&ana, ClientRequest::Vote(yes)).await;
    assert!(
        matches!(&replayed, ClientResponse::Error(e) if e.message.contains("replayed ballot")),
        "{replayed:?}"
    );
    let proposal = ana.proposal(id).await.unwrap();
    let ana_key = commons.member.public();
    let standing = proposal.ballots.iter().find(|(voter, _)| voter.key == ana_key).map(|(_, choice)| *choice);
    assert_eq!(standing, Some(Choice::No), "her last ballot stands");
    assert_eq!(count(&commons, |r| matches!(r, Record::Governance(Event::ProposalOpened { .. }))), 1);
    assert_eq!(count(&commons, |r| matches!(r, Record::Governance(Event::BallotCast { .. }))), 2);
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clearing_request_sent_twice_clears_once_and_an_old_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let commons = commons(dir.path(), &[]).await;
    let ana = commons.client().await.unwrap();
    let now = icn_coordinator::server::now_ms();
    let request = ClearRequest { federation: local::federation(), made_ms: now };
    let envelope = Envelope::seal(&commons.member, 21, &request);
    let first = raw(&ana, ClientRequest::Clear(envelope.clone())).await;
    assert!(matches!(first, ClientResponse::Cleared(_)), "{first:?}");
    let again = raw(&ana, ClientRequest::Clear(envelope)).await;
    assert!(
        matches!(&again, ClientResponse::Error(e) if e.message.contains("was carried out at entry")),
        "{again:?}"
    );
    let stale = ClearRequest { federation: local::federation(), made_ms: now - 3_600_000 };
    let old = raw(&ana, ClientRequest::Clear(Envelope::seal(&commons.member, 22, &stale))).await;
    assert!(matches!(&old, ClientResponse::Error(e) if e.message.contains("make a new request")), "{old:?}");
    assert_eq!(count(&commons, |r| matches!(r, Record::Cleared { .. })), 1);
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_sent_twice_is_received_once_and_costs_its_worker_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(Keypair::generate());
    let extra: &'static [(PublicKey, &'static str)] = Box::leak(Box::new([(key.public(), "coop-h")]));
    let options = LocalOptions {
        owners: &[],
        voting_window_ms: 60_000,
        extra_workers: extra,
        ..LocalOptions::default()
    };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let (_endpoint, session) = commons.connect_worker(&key, 1).await.unwrap();
    let ana = commons.client().await.unwrap();
    let module = ana.ensure_module(&wat::parse_str(SUM_WAT).unwrap()).await.unwrap();
    let job = ana.submit(&local::submission(module, b"2 2", Limits::default())).await.unwrap();
    let (mut send, mut recv) = icn_transport::accept(&session.connection).await.unwrap();
    let Some(CoordinatorMessage::Assign { assignment, .. }) = recv.read(1 << 20).await.unwrap() else {
        panic!("expected an assignment");
    };
    let output = b"4\n".to_vec();
    let report = ExecutionReport {
        task: assignment.task,
        attempt: assignment.attempt,
        outcome: Outcome::Exited { code: 0 },
        output_digest: ContentId::of(&output),
        output_bytes: output.len() as u64,
        stderr: vec![],
        fuel: Fuel(100),
        usage: Default::default(),
    };
    let envelope = Envelope::seal(&key, 31, &report);
    send.write(&WorkerMessage::Report { report: envelope.clone(), output: output.clone() }).await.unwrap();
    send.get_mut().finish().unwrap();
    let view = tokio::time::timeout(Duration::from_secs(20), ana.watch(job, |_| {})).await.unwrap().unwrap();
    assert_eq!(ana.output(view.job).await.unwrap(), b"4\n");
    // The same signed report again, on a stream of the worker's own.
    let (mut send, mut recv) = icn_transport::open(&session.connection).await.unwrap();
    send.write(&WorkerMessage::Report { report: envelope, output }).await.unwrap();
    send.get_mut().finish().unwrap();
    let _ = recv.finished().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&commons, |r| matches!(r, Record::ReportReceived { .. })), 1);
    assert_eq!(count(&commons, |r| matches!(r, Record::JobCompleted { .. })), 1);
    let workers = ana.workers().await.unwrap();
    let worker = workers.iter().find(|w| w.key == key.public()).unwrap();
    assert!(worker.connected && worker.trust.missed == 0 && worker.trust.disagreements == 0, "{worker:?}");
    assert!(session.connection.close_reason().is_none(), "a stale report is no breach of the protocol");
    commons.stop().await.unwrap();
}

/// A hello is bound to the TLS session it was made on: sent on another connection, it
/// proves nothing and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_replayed_on_another_connection_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let commons = commons(dir.path(), &[]).await;
    let endpoint = icn_transport::endpoint::client_endpoint().unwrap();
    let first = endpoint.connect(commons.coordinator.addr(), "icn-coordinator").unwrap().await.unwrap();
    let binding = icn_transport::endpoint::channel_binding(&first).unwrap();
    let hello = Hello {
        role: Role::Member,
        channel_binding: binding,
        agent: "replay".into(),
        capacity: None,
        seen: None,
        running: vec![],
    };
    let captured = Envelope::seal(&commons.member, 41, &hello);
    let second = endpoint.connect(commons.coordinator.addr(), "icn-coordinator").unwrap().await.unwrap();
    let (mut send, mut recv) = icn_transport::open(&second).await.unwrap();
    send.write(&captured).await.unwrap();
    let reply = recv.read::<HelloReply>(1 << 16).await;
    assert!(!matches!(reply, Ok(Some(HelloReply::Welcome(_)))), "no welcome for a replayed hello");
    let closed = tokio::time::timeout(Duration::from_secs(10), second.closed()).await.unwrap();
    assert!(closed.to_string().contains("bad hello"), "{closed}");
    commons.stop().await.unwrap();
}
