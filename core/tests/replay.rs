//! The coordinator core's governance and ledger after any sequence of proposals,
//! ballots, submissions, results and passing time equal what replaying its journal
//! from empty gives.

use std::collections::BTreeMap;
use std::sync::Arc;

use icn_core::Entry;
use icn_core::{Command, Core, CoreConfig, Now};
use icn_governance::Genesis;
use icn_governance::genesis::GenesisWorker;
use icn_governance::genesis::{GenesisMember, GenesisScope};
use icn_protocol::governance::{
    Choice, Credits, Effect, Mandate, PriceSchedule, Proposal, Rule, ScopeId, ScopeKind, Standing,
};
use icn_protocol::wire::{
    Assignment, Capacity, ExecutionReport, ExecutorKind, FailureKind, Limits, Outcome, Submission,
};
use icn_protocol::{ContentId, Envelope, Fuel, Keypair};
use proptest::prelude::*;

const MEMBERS: usize = 4;
const WINDOW_MS: u64 = 1_000;

fn scope(id: &str) -> ScopeId {
    id.parse().unwrap()
}

fn key(member: usize) -> Keypair {
    Keypair::from_seed([member as u8 + 1; 32])
}

fn genesis() -> Genesis {
    let rule = |approval: &str| Rule {
        quorum: "1/2".parse().unwrap(),
        approval: approval.parse().unwrap(),
        voting_window_ms: WINDOW_MS,
    };
    Genesis {
        scopes: vec![
            GenesisScope {
                id: scope("commons"),
                kind: ScopeKind::Commons,
                parent: None,
                rule: rule("1/2"),
                prices: Some(PriceSchedule { credits_per_mega_fuel: 1 }),
                policy: None,
                credit_limit: None,
            },
            GenesisScope {
                id: scope("coop-a"),
                kind: ScopeKind::Cooperative,
                parent: Some(scope("fed")),
                rule: rule("1/2"),
                prices: None,
                policy: None,
                credit_limit: None,
            },
            GenesisScope {
                id: scope("fed"),
                kind: ScopeKind::Federation,
                parent: Some(scope("commons")),
                rule: rule("2/3"),
                prices: None,
                policy: None,
                credit_limit: Some(Credits(1_000_000_000)),
            },
        ],
        members: (0..MEMBERS)
            .map(|i| GenesisMember {
                name: format!("m{i}"),
                key: key(i).public(),
                standing: BTreeMap::from([(scope("fed"), vec![Standing::Vote, Standing::Submit])]),
            })
            .collect(),
        workers: vec![GenesisWorker { key: worker().public(), owner: scope("coop-a") }],
        mandates: vec![],
        free_compute: false,
    }
}

fn submission(fuel: u64) -> Submission {
    Submission {
        scope: scope("fed"),
        executor: ExecutorKind::Wasm,
        module: ContentId::of(b"m"),
        input: icn_protocol::wire::empty_input(),
        args: vec![],
        limits: Limits { fuel: Fuel(fuel), ..Limits::default() },
    }
}

fn worker() -> Keypair {
    Keypair::from_seed([77; 32])
}

#[derive(Clone, Debug)]
enum Op {
    Propose {
        member: usize,
        effect: u8,
        value: u32,
    },
    Vote {
        member: usize,
        proposal: usize,
        choice: u8,
    },
    Submit {
        member: usize,
        fuel_mega: u64,
    },
    Advance {
        ms: u64,
    },
    /// The worker reports on one of the tasks it runs: exited, or out of fuel.
    Finish {
        task: usize,
        ok: bool,
        fuel_percent: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    // Weighted so that many proposals gather enough ballots to pass, jobs then run
    // against the mandates they grant, and the worker reports on them.
    prop_oneof![
        2 => (0..MEMBERS, 0..6u8, 1..6u32).prop_map(|(member, effect, value)| Op::Propose { member, effect, value }),
        6 => (0..MEMBERS, 0..2usize, 0..10u8).prop_map(|(member, proposal, choice)| Op::Vote { member, proposal, choice }),
        3 => (0..MEMBERS, 1..3_000u64).prop_map(|(member, fuel_mega)| Op::Submit { member, fuel_mega }),
        2 => (1..800u64).prop_map(|ms| Op::Advance { ms }),
        3 => (0..4usize, proptest::bool::weighted(0.8), 0..=100u64)
            .prop_map(|(task, ok, fuel_percent)| Op::Finish { task, ok, fuel_percent }),
    ]
}

fn effect(kind: u8, value: u32) -> Effect {
    let member = value as usize % MEMBERS;
    match kind {
        0..3 => Effect::Mandate(Mandate {
            scope: scope("fed"),
            budget: Credits(i64::from(value) * 1_000),
            period_ms: u64::from(value) * 4_000,
            executors: vec![ExecutorKind::Wasm],
            limits: Limits { fuel: Fuel(3_000_000_000), ..Limits::default() },
        }),
        3 => Effect::PriceSchedule(PriceSchedule { credits_per_mega_fuel: u64::from(value) }),
        4 => Effect::RevokeStanding { key: key(member).public(), standing: vec![Standing::Submit] },
        _ => Effect::GrantStanding {
            name: format!("m{member}"),
            key: key(member).public(),
            standing: vec![Standing::Submit],
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn replaying_the_journal_from_empty_gives_the_live_governance_and_ledger(ops in proptest::collection::vec(op(), 20..120)) {
        let coordinator = Arc::new(Keypair::from_seed([99; 32]));
        let mut live = Core::new(coordinator.clone(), CoreConfig::default());
        let mut now_ms = 1_000_000;
        live.found(Now::at(now_ms), &genesis()).unwrap();
        let capacity = Capacity { slots: 2, memory_bytes: 1 << 30, executors: vec![ExecutorKind::Wasm] };
        live.worker_connected(Now::at(now_ms), worker().public(), 1, capacity, &[]).unwrap();
        let mut running: Vec<Assignment> = vec![];
        let mut journal: Vec<Entry> = live.take_entries();
        let mut proposals: Vec<ContentId> = vec![];
                for (nonce, op) in ops.into_iter().enumerate() {
            let nonce = nonce as u64;
            match op {
                Op::Propose { member, effect: kind, value } => {
                    let proposal = Proposal { scope: scope("fed"), title: "p".into(), effect: effect(kind, value) };
                    let envelope = Envelope::seal(&key(member), nonce, &proposal);
                    if let Ok((id, _)) = live.propose(Now::at(now_ms), envelope, proposal) {
                        proposals.push(id);
                    }
                }
                Op::Vote { member, proposal, choice } => {
                    // One of the two newest proposals: those are the ones still open.
                    if let Some(id) = proposals.iter().rev().nth(proposal) {
                        let choice = match choice {
                            0..7 => Choice::Yes,
                            7..9 => Choice::No,
                            _ => Choice::Abstain,
                        };
                        let ballot = icn_protocol::governance::Ballot { proposal: *id, choice };
                        let envelope = Envelope::seal(&key(member), nonce, &ballot);
                        let _ = live.vote(Now::at(now_ms), envelope, ballot);
                    }
                }
                Op::Submit { member, fuel_mega } => {
                    let submission = submission(fuel_mega * 1_000_000);
                    let envelope = Envelope::seal(&key(member), nonce, &submission);
                    let _ = live.submit(Now::at(now_ms), envelope, submission);
                }
                Op::Advance { ms } => {
                    now_ms += ms;
                    live.heartbeat(Now::at(now_ms), worker().public(), 1, &[]);
                    live.tick(Now::at(now_ms));
                }
                Op::Finish { task, ok, fuel_percent } => {
                    if !running.is_empty() {
                        let assignment = running.remove(task % running.len());
                        let fuel = Fuel(assignment.limits.fuel.0 / 100 * fuel_percent);
                        let outcome = if ok {
                            Outcome::Exited { code: 0 }
                        } else {
                            Outcome::Failed { kind: FailureKind::OutOfFuel, detail: "out of fuel".into() }
                        };
                        let report = ExecutionReport {
                            task: assignment.task,
                            attempt: assignment.attempt,
                            outcome,
                            output_digest: ContentId::of(b""),
                            output_bytes: 0,
                            stderr: vec![],
                            fuel,
                        };
                        let envelope = Envelope::seal(&worker(), nonce, &report);
                        live.report(Now::at(now_ms), worker().public(), 1, envelope, report);
                    }
                }
            }
            for command in live.take_commands() {
                if let Command::Dispatch { assignment, .. } = command {
                    running.push(assignment);
                }
            }
            journal.extend(live.take_entries());
        }
        let mut replayed = Core::new(coordinator, CoreConfig::default());
        replayed.recover(&journal, Now::at(now_ms)).unwrap();
        replayed.found(Now::at(now_ms), &genesis()).unwrap();
        prop_assert_eq!(live.governance(), replayed.governance());
        prop_assert_eq!(live.ledger(), replayed.ledger());
        prop_assert_eq!(live.ledger().check(), Ok(()));
    }
}

#[test]
fn a_job_that_cannot_end_expires_and_its_reservation_is_voided() {
    let coordinator = Arc::new(Keypair::from_seed([99; 32]));
    let config = CoreConfig { job_expiry_ms: 60_000, ..CoreConfig::default() };
    let mut core = Core::new(coordinator, config);
    let mut now_ms = 1_000_000;
    let mut genesis = genesis();
    genesis.mandates.push(Mandate {
        scope: scope("fed"),
        budget: Credits(1_000_000),
        period_ms: 3_600_000,
        executors: vec![ExecutorKind::Wasm],
        limits: Limits::default(),
    });
    core.found(Now::at(now_ms), &genesis).unwrap();
    // No worker ever connects: the job can only wait.
    let submission = submission(Limits::default().fuel.0);
    let job = core.submit(Now::at(now_ms), Envelope::seal(&key(0), 1, &submission), submission).unwrap();
    assert_eq!(core.ledger().account(&scope("fed")).unwrap().reserved, 1_000);
    now_ms += 59_999;
    core.tick(Now::at(now_ms));
    assert_eq!(core.job(&job).unwrap().state, icn_protocol::wire::JobState::Queued);
    now_ms += 1;
    core.tick(Now::at(now_ms));
    let view = core.job(&job).unwrap();
    assert_eq!(view.state, icn_protocol::wire::JobState::Failed);
    assert!(view.failure.unwrap().starts_with("expired: no accepted result within 60000 ms"));
    assert_eq!(core.ledger().account(&scope("fed")).unwrap().reserved, 0);
    assert_eq!(core.governance().mandates[&0].held, Credits(0));
}
