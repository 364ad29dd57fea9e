//! Redundant execution through a real coordinator: replicas on distinct cooperatives,
//! a lying worker outvoted and losing trust, and a dispute settled by a decision.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use icn_cli::client::Client;
use icn_cli::demo::{HELLO_WAT, SUM_WAT, wait_for_decision};
use icn_cli::local::{self, LocalCommons, LocalOptions};
use icn_coordinator::journal;
use icn_core::record::Record;
use icn_protocol::governance::{Choice, Effect, PlacementPolicy, Proposal, ScopeId};
use icn_protocol::views::DecisionView as Decision;
use icn_protocol::wire::{
    CoordinatorMessage, ExecutionReport, JobState, JobView, Limits, Outcome, WorkerMessage,
};
use icn_protocol::{ContentId, Envelope, Fuel, JobId, Keypair, PublicKey};

const WINDOW_MS: u64 = 300;

async fn decide(clients: &[&Client], scope: &str, effect: Effect) -> Decision {
    let proposal = Proposal { scope: scope.parse().unwrap(), title: "replication".into(), effect };
    let (id, _) = clients[0].propose(&proposal).await.unwrap();
    for client in clients {
        client.vote(id, Choice::Yes).await.unwrap();
    }
    let decision = tokio::time::timeout(Duration::from_secs(20), wait_for_decision(clients[0], id))
        .await
        .unwrap()
        .unwrap();
    assert!(decision.accepted, "{}", decision.reason);
    decision
}

async fn start(
    dir: &std::path::Path,
    owners: &'static [&'static str],
    rogue: Option<&PublicKey>,
) -> LocalCommons {
    let extra: &'static [(PublicKey, &'static str)] = match rogue {
        Some(key) => Box::leak(Box::new([(*key, "coop-r")])),
        None => &[],
    };
    let options =
        LocalOptions { owners, voting_window_ms: WINDOW_MS, extra_workers: extra, ..LocalOptions::default() };
    LocalCommons::start(dir, options).await.unwrap()
}

async fn replicate(commons: &LocalCommons) -> (Client, Client) {
    let ana = commons.client().await.unwrap();
    let ben = commons.client_for(commons.members[1].key.clone()).await.unwrap();
    let policy = Effect::PlacementPolicy(PlacementPolicy { replicas: 2, quorum: 2 });
    decide(&[&ana, &ben], local::FEDERATION, policy).await;
    (ana, ben)
}

async fn run(client: &Client, wat: &str, input: &[u8]) -> JobView {
    let module = client.ensure_module(&wat::parse_str(wat).unwrap()).await.unwrap();
    let job = client.submit(&local::submission(module, input, Limits::default())).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), client.watch(job, |_| {})).await.unwrap().unwrap()
}

fn records_of(commons: &LocalCommons, job: JobId) -> Vec<Record> {
    journal::read(&commons.journal)
        .unwrap()
        .iter()
        .map(|e| e.decode_record().unwrap())
        .filter(|r| r.job() == Some(job))
        .collect()
}

/// A worker that signs honestly what it claims, and claims a wrong output for every task.
async fn rogue(commons: &LocalCommons, key: Arc<Keypair>) -> tokio::task::JoinHandle<()> {
    let (endpoint, session) = commons.connect_worker(&key, 4).await.unwrap();
    tokio::spawn(async move {
        let _endpoint = endpoint;
        let mut control = session.control.0;
        let heartbeat = async move {
            loop {
                let beat = WorkerMessage::Heartbeat { running: vec![], free_slots: 4 };
                if control.write(&beat).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let lie = async {
            while let Ok((mut send, mut recv)) = icn_transport::accept(&session.connection).await {
                let Ok(Some(CoordinatorMessage::Assign { assignment, .. })) = recv.read(1 << 20).await else {
                    continue;
                };
                let output = b"not the answer\n".to_vec();
                let report = ExecutionReport {
                    task: assignment.task,
                    attempt: assignment.attempt,
                    outcome: Outcome::Exited { code: 0 },
                    output_digest: ContentId::of(&output),
                    output_bytes: output.len() as u64,
                    stderr: vec![],
                    fuel: Fuel(10),
                    usage: Default::default(),
                };
                let report = Envelope::seal(&key, 1, &report);
                let _ = send.write(&WorkerMessage::Report { report, output }).await;
                let _ = send.get_mut().finish();
            }
        };
        tokio::select! { _ = heartbeat => {}, _ = lie => {} }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_run_on_distinct_cooperatives_agree_and_each_is_paid() {
    let dir = tempfile::tempdir().unwrap();
    let commons = start(dir.path(), &["coop-a", "coop-b", "coop-c"], None).await;
    let (ana, _ben) = replicate(&commons).await;
    for i in 0..6u32 {
        let view = run(&ana, SUM_WAT, format!("{i} 1").as_bytes()).await;
        assert_eq!(view.state, JobState::Completed, "{view:?}");
        let records = records_of(&commons, view.job);
        let owners: Vec<&ScopeId> = records
            .iter()
            .filter_map(|r| match r {
                Record::TaskPlaced { owner, .. } => Some(owner),
                _ => None,
            })
            .collect();
        let distinct: BTreeSet<&&ScopeId> = owners.iter().collect();
        assert_eq!((owners.len(), distinct.len()), (2, 2), "two replicas, two cooperatives: {owners:?}");
        let paid = records.iter().find_map(|r| match r {
            Record::JobCompleted { payees, .. } => Some(payees.clone()),
            _ => None,
        });
        assert_eq!(
            paid.expect("a completed job's payments are journaled").len(),
            2,
            "both cooperatives are paid"
        );
    }
    let workers = ana.workers().await.unwrap();
    let agreements: u64 = workers.iter().map(|w| w.trust.agreements).sum();
    assert_eq!(agreements, 12, "every replica of six jobs agreed: {workers:?}");
    let positions = ana.positions().await.unwrap();
    assert_eq!(positions.accounts.iter().map(|a| a.position).sum::<i64>(), 0);
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_worker_is_outvoted_loses_trust_and_is_not_paid() {
    let dir = tempfile::tempdir().unwrap();
    let liar = Arc::new(Keypair::generate());
    let commons = start(dir.path(), &["coop-a", "coop-b", "coop-c"], Some(&liar.public())).await;
    let (ana, _ben) = replicate(&commons).await;
    let _rogue = rogue(&commons, liar.clone()).await;
    commons.wait_for_workers(4).await.unwrap();
    // Donor fairness rotates work to the cooperative that has earned least, so the
    // liar's gets a replica within a few jobs.
    let mut outvoted = None;
    for i in 0..12u32 {
        let view = run(&ana, SUM_WAT, format!("{i} 2").as_bytes()).await;
        assert_eq!(view.state, JobState::Completed, "{view:?}");
        assert_eq!(
            ana.output(view.job).await.unwrap(),
            format!("{}\n", i + 2).into_bytes(),
            "the truth stands"
        );
        let records = records_of(&commons, view.job);
        if records
            .iter()
            .any(|r| matches!(r, Record::Verified { dissenting, .. } if dissenting.contains(&liar.public())))
        {
            assert!(
                records.iter().any(|r| matches!(r, Record::ReplicasWanted { .. })),
                "a third replica settled it"
            );
            let paid = records.iter().find_map(|r| match r {
                Record::JobCompleted { payees, .. } => Some(payees.clone()),
                _ => None,
            });
            assert!(
                paid.unwrap().iter().all(|(owner, _)| owner.as_str() != "coop-r"),
                "the liar is not paid"
            );
            outvoted = Some(view.job);
            break;
        }
    }
    assert!(outvoted.is_some(), "the liar never got a replica");
    let workers = ana.workers().await.unwrap();
    let liar_view = workers.iter().find(|w| w.key == liar.public()).unwrap();
    assert_eq!(liar_view.trust.disagreements, 1, "{liar_view:?}");
    let positions = ana.positions().await.unwrap();
    assert_eq!(positions.account(&"coop-r".parse::<ScopeId>().unwrap()).unwrap().position, 0);
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispute_is_settled_by_a_decision_that_moves_trust_and_money_as_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let liar = Arc::new(Keypair::generate());
    // One honest cooperative and the liar's: two results, nobody to break the tie.
    let commons = start(dir.path(), &["coop-a"], Some(&liar.public())).await;
    let (ana, ben) = replicate(&commons).await;
    let _rogue = rogue(&commons, liar.clone()).await;
    commons.wait_for_workers(2).await.unwrap();
    let module = ana.ensure_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();
    let job = ana.submit(&local::submission(module, b"", Limits::default())).await.unwrap();
    // A member following the job hears that it is in dispute, and stops waiting there.
    let view = tokio::time::timeout(Duration::from_secs(20), ana.watch(job, |_| {})).await.unwrap().unwrap();
    assert_eq!(view.state, JobState::Disputed, "{view:?}");
    let honest = records_of(&commons, job)
        .into_iter()
        .find_map(|r| match r {
            Record::ReportReceived { report } if report.signer != liar.public() => {
                Some(report.open_trusted::<ExecutionReport>().unwrap())
            }
            _ => None,
        })
        .unwrap();
    let verdict = Effect::ResolveDispute { job, output_digest: honest.output_digest, fuel: honest.fuel };
    let refused = ana
        .propose(&Proposal {
            scope: local::federation(),
            title: "wrong scope".into(),
            effect: verdict.clone(),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("disputes are decided in the commons scope"), "{refused}");
    let decision = decide(&[&ana, &ben], "commons", verdict).await;

    let view = tokio::time::timeout(Duration::from_secs(20), ana.watch(job, |_| {})).await.unwrap().unwrap();
    assert_eq!(view.state, JobState::Completed, "{view:?}");
    assert_eq!(ana.output(job).await.unwrap(), b"hello from the commons\n");
    let records = records_of(&commons, job);
    assert!(records.iter().any(|r| matches!(r, Record::DisputeOpened { .. })));
    assert!(records.iter().any(|r| matches!(
        r,
        Record::Verified { by_decision: Some(d), dissenting, .. } if *d == decision.seq && dissenting == &vec![liar.public()]
    )));
    let workers = ana.workers().await.unwrap();
    let liar_view = workers.iter().find(|w| w.key == liar.public()).unwrap();
    let honest_view =
        workers.iter().find(|w| w.owner.as_ref().is_some_and(|o| o.as_str() == "coop-a")).unwrap();
    assert_eq!((liar_view.trust.disagreements, honest_view.trust.agreements), (1, 1));
    let positions = ana.positions().await.unwrap();
    assert_eq!(
        positions.account(&"coop-r".parse::<ScopeId>().unwrap()).unwrap().position,
        0,
        "losers are paid nothing"
    );
    assert_eq!(
        positions.account(&"coop-a".parse::<ScopeId>().unwrap()).unwrap().position,
        1,
        "the winner is paid"
    );
    commons.stop().await.unwrap();
}

/// A module that floods its output fails the same way on every honest worker, at the
/// same fuel: the replicas agree, nobody loses trust, and there is no dispute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_a_module_that_floods_its_output_agree() {
    let dir = tempfile::tempdir().unwrap();
    let commons = start(dir.path(), &["coop-a", "coop-b", "coop-c"], None).await;
    let (ana, _ben) = replicate(&commons).await;
    let flood = include_str!("../../examples/wat/flood.wat");
    let module = ana.ensure_module(&wat::parse_str(flood).unwrap()).await.unwrap();
    let limits = Limits { output_bytes: 100_000, timeout_ms: 3_000, ..Limits::default() };
    let job = ana.submit(&local::submission(module, b"", limits)).await.unwrap();
    let view = tokio::time::timeout(Duration::from_secs(30), ana.watch(job, |_| {})).await.unwrap().unwrap();
    assert_eq!(view.state, JobState::Failed, "{view:?}");
    assert!(view.failure.as_deref().is_some_and(|f| f.contains("went over its output limit")), "{view:?}");
    let records = records_of(&commons, job);
    let verified = records.iter().find_map(|r| match r {
        Record::Verified { agreeing, dissenting, .. } => Some((agreeing.len(), dissenting.len())),
        _ => None,
    });
    assert_eq!(verified, Some((2, 0)), "{records:#?}");
    assert!(
        !records.iter().any(|r| matches!(r, Record::DisputeOpened { .. } | Record::ReplicasWanted { .. }))
    );
    let workers = ana.workers().await.unwrap();
    assert!(workers.iter().all(|w| w.trust.disagreements == 0), "{workers:?}");
    commons.stop().await.unwrap();
}
