//! The coordinator core's governance after any sequence of proposals, ballots,
//! submissions and passing time equals what replaying its journal from empty gives.

use std::collections::BTreeMap;
use std::sync::Arc;

use icn_coordinator::core::{Core, CoreConfig};
use icn_coordinator::journal::Entry;
use icn_governance::Genesis;
use icn_governance::genesis::{GenesisMember, GenesisScope};
use icn_protocol::governance::{
    Choice, Credits, Effect, Mandate, PriceSchedule, Proposal, Rule, ScopeId, ScopeKind, Standing,
};
use icn_protocol::wire::{ExecutorKind, Limits, Submission};
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
            },
            GenesisScope {
                id: scope("fed"),
                kind: ScopeKind::Federation,
                parent: Some(scope("commons")),
                rule: rule("2/3"),
                prices: None,
                policy: None,
            },
        ],
        members: (0..MEMBERS)
            .map(|i| GenesisMember {
                name: format!("m{i}"),
                key: key(i).public(),
                standing: BTreeMap::from([(scope("fed"), vec![Standing::Vote, Standing::Submit])]),
            })
            .collect(),
        workers: vec![],
        mandates: vec![],
    }
}

#[derive(Clone, Debug)]
enum Op {
    Propose { member: usize, effect: u8, value: u32 },
    Vote { member: usize, proposal: usize, choice: u8 },
    Submit { member: usize, fuel_mega: u64 },
    Advance { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..MEMBERS, 0..4u8, 1..6u32).prop_map(|(member, effect, value)| Op::Propose {
            member,
            effect,
            value
        }),
        (0..MEMBERS, 0..6usize, 0..3u8).prop_map(|(member, proposal, choice)| Op::Vote {
            member,
            proposal,
            choice
        }),
        (0..MEMBERS, 1..3_000u64).prop_map(|(member, fuel_mega)| Op::Submit { member, fuel_mega }),
        (1..1_500u64).prop_map(|ms| Op::Advance { ms }),
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
    fn replaying_the_journal_from_empty_gives_the_live_governance(ops in proptest::collection::vec(op(), 20..120)) {
        let coordinator = Arc::new(Keypair::from_seed([99; 32]));
        let mut live = Core::new(coordinator.clone(), CoreConfig::default());
        let mut now_ms = 1_000_000;
        live.found(now_ms, &genesis()).unwrap();
        let mut journal: Vec<Entry> = live.take_entries();
        let mut proposals: Vec<ContentId> = vec![];
                for (nonce, op) in ops.into_iter().enumerate() {
            let nonce = nonce as u64;
            match op {
                Op::Propose { member, effect: kind, value } => {
                    let proposal = Proposal { scope: scope("fed"), title: "p".into(), effect: effect(kind, value) };
                    let envelope = Envelope::seal(&key(member), nonce, &proposal);
                    if let Ok((id, _)) = live.propose(now_ms, envelope, proposal) {
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
                        let _ = live.vote(now_ms, envelope, ballot);
                    }
                }
                Op::Submit { member, fuel_mega } => {
                    let submission = Submission {
                        scope: scope("fed"),
                        executor: ExecutorKind::Wasm,
                        module: ContentId::of(b"m"),
                        input: vec![],
                        args: vec![],
                        limits: Limits { fuel: Fuel(fuel_mega * 1_000_000), ..Limits::default() },
                    };
                    let envelope = Envelope::seal(&key(member), nonce, &submission);
                    let _ = live.submit(now_ms, envelope, submission);
                }
                Op::Advance { ms } => {
                    now_ms += ms;
                    live.tick(now_ms);
                }
            }
            journal.extend(live.take_entries());
        }
        let mut replayed = Core::new(coordinator, CoreConfig::default());
        replayed.recover(&journal, now_ms).unwrap();
        replayed.found(now_ms, &genesis()).unwrap();
        prop_assert_eq!(live.governance(), replayed.governance());
    }
}
