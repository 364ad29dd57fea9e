//! Settlement through a real coordinator: reservations against credit, postings to
//! the donating cooperatives, voids on failure, credit lines by decision, clearing.

use std::time::Duration;

use icn_cli::client::Client;
use icn_cli::demo::{HELLO_WAT, SPIN_WAT, wait_for_decision};
use icn_cli::local::{self, LocalCommons, LocalOptions};
use icn_protocol::governance::{Choice, Credits, Effect, Proposal, ScopeId};
use icn_protocol::views::DecisionView as Decision;
use icn_protocol::wire::{JobState, Limits, TraceQuery};
use icn_protocol::{ContentId, Fuel};

async fn decide(clients: &[&Client], effect: Effect) -> Decision {
    // A credit line is lent by a scope that contains the borrower: the commons, here.
    let scope = match &effect {
        Effect::CreditLimit { .. } => "commons".parse().unwrap(),
        _ => local::federation(),
    };
    let proposal = Proposal { scope, title: "ledger".into(), effect };
    let (id, _) = clients[0].propose(&proposal).await.unwrap();
    for client in clients {
        client.vote(id, Choice::Yes).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(20), wait_for_decision(clients[0], id)).await.unwrap().unwrap()
}

fn job(module: ContentId, fuel: u64) -> icn_cli::client::JobRequest {
    local::submission(module, b"", Limits { fuel: Fuel(fuel), ..Limits::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_settles_into_the_ledger_within_credit_lines_set_by_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions {
        owners: &["coop-a"],
        voting_window_ms: 400,
        credit_limit: Credits(3),
        ..LocalOptions::default()
    };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let ana = commons.client().await.unwrap();
    let ben = commons.client_for(commons.members[1].key.clone()).await.unwrap();
    let fed = local::federation();
    let coop: ScopeId = "coop-a".parse().unwrap();
    let hello = ana.ensure_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();
    let spin = ana.ensure_module(&wat::parse_str(SPIN_WAT).unwrap()).await.unwrap();

    // A billion fuel holds 1000 credits: more than the line of 3.
    let refused = ana.submit(&job(hello, 1_000_000_000)).await.unwrap_err().to_string();
    assert!(
        refused.contains("the account of scope fed-north can take on 3 more credits")
            && refused.contains("this job may cost up to 1000 credits"),
        "{refused}"
    );
    let raised =
        decide(&[&ana, &ben], Effect::CreditLimit { scope: fed.clone(), limit: Credits(5_000) }).await;
    assert!(raised.accepted && raised.effect_refused.is_none());

    let done = ana.submit(&job(hello, 1_000_000_000)).await.unwrap();
    let failed = ana.submit(&job(spin, 2_000_000)).await.unwrap();
    assert_eq!(ana.watch(done, |_| {}).await.unwrap().state, JobState::Completed);
    assert_eq!(ana.watch(failed, |_| {}).await.unwrap().state, JobState::Failed);
    let positions = ana.positions().await.unwrap();
    // hello uses 12 fuel: 1 credit, rounded up. The spinning job ran out of its 2,000,000
    // fuel by its own doing: usage is usage, so it pays 2 credits to the cooperative that
    // ran it.
    assert_eq!(positions.account(&fed).unwrap().position, -3);
    assert_eq!(positions.account(&fed).unwrap().reserved, 0, "nothing stays held once jobs end");
    assert_eq!(positions.account(&coop).unwrap().position, 3);
    assert_eq!(positions.accounts.iter().map(|a| a.position).sum::<i64>(), 0);

    let statement = ana.statement(fed.clone()).await.unwrap();
    // The genesis, entry 0, granted the founding mandate both jobs ran under.
    assert!(statement.lines.iter().all(|l| l.decision == Some(0)), "{statement}");
    let mut moved: Vec<i64> = statement.lines.iter().map(|l| l.change.0).filter(|c| *c != 0).collect();
    // The two jobs run at once; either may end first.
    moved.sort_unstable();
    assert_eq!(moved, vec![-2, -1], "one posting per job, once: {statement}");
    assert!(
        statement.to_string().contains("paid 2 to coop-a for a run that failed by the job's own doing"),
        "{statement}"
    );
    let trace = ana.trace(TraceQuery::Job(failed)).await.unwrap().to_string();
    assert!(trace.contains("the job failed by its own doing, so it pays for what it used"), "{trace}");

    // Lowering the line below what the account uses: accepted, but the effect is refused.
    let ana_first =
        decide(&[&ana, &ben], Effect::CreditLimit { scope: fed.clone(), limit: Credits(0) }).await;
    let why = ana_first.effect_refused.expect("the effect cannot apply");
    assert!(why.contains("already uses 3 credits below zero"), "{why}");
    assert_eq!(ana.positions().await.unwrap().account(&fed).unwrap().limit, 5_000, "nothing half applied");

    // Clearing: only members with vote or operate standing in the federation may ask.
    let cleared = ana.clear(fed.clone()).await.unwrap();
    assert_eq!(cleared.before, cleared.after, "one debtor and one creditor: nothing to net");
    let refused = ana.clear(coop.clone()).await.unwrap_err().to_string();
    assert!(refused.contains("coop-a is not a federation"), "{refused}");
    commons.stop().await.unwrap();
}

#[test]
fn the_ledger_benchmark_posts_every_transfer_and_reports_all_three_rates() {
    // `ledger` fails unless every reserve and post succeeds and the ledger checks out.
    let report = icn_cli::bench::ledger(2_000, 100).unwrap();
    assert_eq!((report.postings, report.batch), (2_000, 100));
    for rate in [report.pure_postings_per_s, report.durable_postings_per_s, report.sqlite_inserts_per_s] {
        assert!(rate.is_finite() && rate > 0.0, "{report:?}");
    }
}
