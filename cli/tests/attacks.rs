//! The attacker's review, performed as it was described and shown refused (or priced):
//! one test per finding, each leaving the journal and the ledger as they were where
//! nothing should happen. docs/SECURITY.md names each test beside the boundary it holds.

use std::time::Duration;

use icn_cli::client::{Client, JobRequest};
use icn_cli::demo::wait_for_decision;
use icn_cli::demo::{SPIN_WAT, UPPER_WAT};
use icn_cli::local::{self, LocalCommons, LocalOptions};
use icn_governance::Genesis;
use icn_protocol::JobId;
use icn_protocol::governance::{Choice, Credits, Effect, Mandate, Proposal, ScopeId, Standing};
use icn_protocol::wire::{ExecutorKind, JobState, Limits};

fn coop_a() -> ScopeId {
    "coop-a".parse().unwrap()
}

/// Ana (the first member) also submits in coop-a, which holds a mandate and a credit
/// line of its own: coop-a's jobs are coop-a's business.
fn coop_a_runs_jobs(genesis: &mut Genesis) {
    let ana = &mut genesis.members[0];
    ana.standing.insert(coop_a(), vec![Standing::Vote, Standing::Donate, Standing::Submit]);
    let mut mandate = genesis.mandates[0].clone();
    mandate.scope = coop_a();
    genesis.mandates.push(mandate);
    let scope = genesis.scopes.iter_mut().find(|s| s.id == coop_a()).expect("coop-a is founded");
    scope.credit_limit = Some(Credits(1_000_000_000));
}

async fn journal_len(commons: &LocalCommons) -> u64 {
    commons.coordinator.api().read(|core| core.journal_len()).await.unwrap()
}

async fn ended(client: &Client, job: JobId) -> icn_protocol::wire::JobView {
    tokio::time::timeout(Duration::from_secs(30), client.watch(job, |_| {})).await.unwrap().unwrap()
}

/// C1: ben, with no standing in coop-a, names coop-a's private output as the input of
/// his own job (a module that copies its input to its output), and so would read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c1_a_private_output_cannot_be_named_as_another_members_input() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions { genesis_edit: Some(coop_a_runs_jobs), ..LocalOptions::default() };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let ana = commons.client().await.unwrap();
    let ben = commons.client_for(commons.members[1].key.clone()).await.unwrap();
    let upper = ana.ensure_module(&wat::parse_str(UPPER_WAT).unwrap()).await.unwrap();
    let payroll = JobRequest::new(
        coop_a(),
        ExecutorKind::Wasm,
        upper,
        b"coop-a payroll: 1234",
        vec![],
        Limits::default(),
    );
    let job = ana.submit(&payroll).await.unwrap();
    let view = ended(&ana, job).await;
    assert_eq!(view.state, JobState::Completed, "{view:?}");
    let digest = view.result.as_ref().expect("a result").1.output_digest;
    let (positions, before) = (ana.positions().await.unwrap(), journal_len(&commons).await);

    // Ben knows the digest (it was shown to every member before; a guess would do) and
    // names it as the input of his own job in his own federation.
    let theft = icn_protocol::wire::Submission {
        input: digest,
        ..local::submission(upper, b"", Limits::default()).submission
    };
    let refused = ben.submit_signed(&theft).await.unwrap_err().to_string();
    assert!(refused.contains(&format!("input {digest} is not stored here for you")), "{refused}");
    assert_eq!(journal_len(&commons).await, before, "a refused submission journals nothing");
    assert_eq!(ben.positions().await.unwrap(), positions, "and moves no credit");
    // Whether coop-a's bytes are stored here is not his to learn either.
    let has = ben.request(&icn_protocol::wire::ClientRequest::HasInput(digest)).await.unwrap();
    assert!(matches!(has, icn_protocol::wire::ClientResponse::HasInput(false)), "{has:?}");
    let direct = ben.output(job).await.unwrap_err().to_string();
    assert!(direct.contains("belongs to scope coop-a"), "{direct}");

    // Ana may feed her own job's output to her next job: that is what outputs are for.
    let next = icn_protocol::wire::Submission { input: digest, ..payroll.submission.clone() };
    let again = ana.submit_signed(&next).await.unwrap();
    assert_eq!(ended(&ana, again).await.state, JobState::Completed);
    // A worker reading the output as an input does not start its fetched retention (the
    // short one, after which it goes); only a fetch by a member who may read it does.
    let journal = dir.path().join("journal.db");
    let fetched = || -> Option<i64> {
        let connection = rusqlite::Connection::open(&journal).unwrap();
        connection
            .query_row("SELECT fetched_ms FROM blobs WHERE cid = ?1", [digest.0.as_slice()], |row| row.get(0))
            .unwrap()
    };
    assert_eq!(fetched(), None);
    assert_eq!(ana.output(job).await.unwrap(), b"COOP-A PAYROLL: 1234");
    assert_eq!(ana.output(again).await.unwrap(), b"COOP-A PAYROLL: 1234");
    assert!(fetched().is_some(), "ana's fetch starts it");
    commons.stop().await.unwrap();
}

/// Decides `effect` in `scope` with `voters` all voting yes.
async fn decide(voters: &[&Client], scope: ScopeId, effect: Effect) -> icn_protocol::views::DecisionView {
    let (id, _) = voters[0].propose(&Proposal { scope, title: "attack".into(), effect }).await.unwrap();
    for voter in voters {
        voter.vote(id, Choice::Yes).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(20), wait_for_decision(voters[0], id)).await.unwrap().unwrap()
}

/// H1: coop-a's only voter passes, in coop-a, a credit line of 4,000,000,000,000 for
/// coop-a, a mandate and her own submit standing, to spend on other cooperatives'
/// machines in debt to the commons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_a_scope_cannot_lend_itself_credit() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions { voting_window_ms: 300, ..LocalOptions::default() };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let ana = commons.client().await.unwrap();
    let (positions, before) = (ana.positions().await.unwrap(), journal_len(&commons).await);
    let own = Effect::CreditLimit { scope: coop_a(), limit: Credits(4_000_000_000_000) };
    let refused =
        ana.propose(&Proposal { scope: coop_a(), title: "our own credit".into(), effect: own }).await;
    let refused = refused.unwrap_err().to_string();
    assert!(
        refused.contains("scope coop-a cannot set its own credit line")
            && refused.contains("(fed-north or commons)"),
        "{refused}"
    );
    assert_eq!(journal_len(&commons).await, before, "a refused proposal journals nothing");
    assert_eq!(ana.positions().await.unwrap(), positions);

    // Her own standing and a mandate are coop-a's to decide, and she passes both alone;
    // the mandate is spent only within the credit others lent coop-a, which is none.
    let standing = Effect::GrantStanding {
        name: "ana".into(),
        key: commons.member.public(),
        standing: vec![Standing::Submit],
    };
    assert!(decide(&[&ana], coop_a(), standing).await.accepted);
    let mandate = Mandate { scope: coop_a(), ..local::day_mandate(Credits(4_000_000_000_000)) };
    assert!(decide(&[&ana], coop_a(), Effect::Mandate(mandate)).await.accepted);
    let upper = ana.ensure_module(&wat::parse_str(UPPER_WAT).unwrap()).await.unwrap();
    let job = JobRequest::new(coop_a(), ExecutorKind::Wasm, upper, b"", vec![], Limits::default());
    let refused = ana.submit(&job).await.unwrap_err().to_string();
    assert!(refused.contains("the account of scope coop-a can take on 0 more credits"), "{refused}");
    assert_eq!(ana.positions().await.unwrap().account(&coop_a()).unwrap().limit, 0);
    commons.stop().await.unwrap();
}

/// H2: a wasm job that spins without ever calling out until its wall-clock timeout used
/// to pay nothing (its fuel is counted only at calls), while the same loop ended by fuel
/// paid its fuel: any submitter could hold donated slots for free up to the longest
/// timeout. Now both pay their fuel limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_a_spin_stopped_by_its_timeout_pays_its_fuel_limit() {
    let dir = tempfile::tempdir().unwrap();
    let commons = LocalCommons::start(dir.path(), LocalOptions::default()).await.unwrap();
    let ana = commons.client().await.unwrap();
    let spin = ana.ensure_module(&wat::parse_str(SPIN_WAT).unwrap()).await.unwrap();
    let fed = local::federation();
    let spent = |positions: &icn_protocol::views::PositionsView| positions.account(&fed).unwrap().position;
    // Far more fuel than a second of spinning burns: the timeout ends it.
    let by_time = Limits { fuel: icn_protocol::Fuel(3_000_000_000), timeout_ms: 1_000, ..Limits::default() };
    let before = spent(&ana.positions().await.unwrap());
    let job = ana.submit(&local::submission(spin, b"", by_time)).await.unwrap();
    let view = ended(&ana, job).await;
    assert_eq!(view.state, JobState::Failed, "{view:?}");
    let after = spent(&ana.positions().await.unwrap());
    assert_eq!(before - after, 3_000, "three billion fuel at one credit a million: {view:?}");
    // The same loop ended by its fuel pays the same for the same fuel limit.
    let by_fuel = Limits { fuel: icn_protocol::Fuel(3_000_000_000), ..Limits::default() };
    let job = ana.submit(&local::submission(spin, b"", by_fuel)).await.unwrap();
    assert_eq!(ended(&ana, job).await.state, JobState::Failed);
    assert_eq!(after - spent(&ana.positions().await.unwrap()), 3_000);
    let trace = ana.trace(icn_protocol::wire::TraceQuery::Job(job)).await.unwrap().to_string();
    assert!(trace.contains("pays its whole fuel limit"), "{trace}");
    commons.stop().await.unwrap();
}
