//! The ledger's invariants under random operations, and its errors for bad input.

use std::collections::{BTreeMap, BTreeSet};

use icn_ledger::{AMOUNT_MAX, Applied, Ledger, LedgerError, State, TransferId};
use icn_protocol::governance::{Credits, ScopeId};
use proptest::prelude::*;

const SCOPES: [&str; 5] = ["coop-a", "coop-b", "coop-c", "fed-north", "fed-south"];

fn scope(i: usize) -> ScopeId {
    SCOPES[i % SCOPES.len()].parse().unwrap()
}

fn id(k: u8) -> TransferId {
    TransferId::derive("test", &[k])
}

fn ledger() -> Ledger {
    let mut ledger = Ledger::default();
    for i in 0..SCOPES.len() {
        ledger.open(scope(i));
    }
    ledger
}

#[derive(Clone, Debug)]
enum Op {
    Reserve { id: u8, payer: usize, amount: i64 },
    Post { id: u8, payees: Vec<(usize, i64)> },
    Void { id: u8 },
    Limit { scope: usize, limit: i64 },
    Clear { members: Vec<usize> },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..12u8, 0..5usize, -5..2_000i64).prop_map(|(id, payer, amount)| Op::Reserve { id, payer, amount }),
        3 => (0..12u8, proptest::collection::vec((0..5usize, -1..1_200i64), 0..4))
            .prop_map(|(id, payees)| Op::Post { id, payees }),
        1 => (0..12u8).prop_map(|id| Op::Void { id }),
        2 => (0..5usize, -10..5_000i64).prop_map(|(scope, limit)| Op::Limit { scope, limit }),
        1 => proptest::collection::vec(0..5usize, 0..5).prop_map(|members| Op::Clear { members }),
    ]
}

fn apply(ledger: &mut Ledger, op: &Op) -> Result<Applied, LedgerError> {
    match op {
        Op::Reserve { id: k, payer, amount } => ledger.reserve(id(*k), &scope(*payer), Credits(*amount)),
        Op::Post { id: k, payees } => {
            let payees: Vec<(ScopeId, Credits)> =
                payees.iter().map(|(s, a)| (scope(*s), Credits(*a))).collect();
            ledger.post(id(*k), &payees)
        }
        Op::Void { id: k } => ledger.void(id(*k)),
        Op::Limit { scope: s, limit } => ledger.set_limit(&scope(*s), Credits(*limit)),
        Op::Clear { members } => {
            let members: BTreeSet<ScopeId> = members.iter().map(|m| scope(*m)).collect();
            ledger.clear(&members).map(|_| Applied::Done)
        }
    }
}

/// Each member's net of the obligations among `members`.
fn nets(ledger: &Ledger, members: &BTreeSet<ScopeId>) -> BTreeMap<ScopeId, i64> {
    let mut net = BTreeMap::new();
    for o in ledger.obligations().filter(|o| members.contains(&o.debtor) && members.contains(&o.creditor)) {
        *net.entry(o.debtor.clone()).or_default() -= o.amount.0;
        *net.entry(o.creditor.clone()).or_default() += o.amount.0;
    }
    net.retain(|_, n| *n != 0);
    net
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn invariants_hold_under_any_sequence_of_operations(ops in proptest::collection::vec(op(), 1..150)) {
        let mut live = ledger();
        let mut log = vec![];
        let mut ever_posted = BTreeSet::new();
        let mut ever_voided = BTreeSet::new();
        for op in &ops {
            let before = live.clone();
            let result = apply(&mut live, op);
            match &result {
                Err(_) => prop_assert_eq!(&live, &before, "an error leaves the ledger as it was: {:?}", op),
                Ok(_) => {
                    log.push(op.clone());
                    if let Op::Clear { members } = op {
                        let members: BTreeSet<ScopeId> = members.iter().map(|m| scope(*m)).collect();
                        prop_assert_eq!(nets(&live, &members), nets(&before, &members), "clearing keeps every net");
                        let positions = |l: &Ledger| l.accounts().iter().map(|(s, a)| (s.clone(), a.position)).collect::<Vec<_>>();
                        prop_assert_eq!(positions(&live), positions(&before), "clearing moves no position");
                        let after = live.obligations().filter(|o| members.contains(&o.debtor) && members.contains(&o.creditor)).count();
                        prop_assert!(after <= nets(&live, &members).len().saturating_sub(1));
                    } else {
                        // Doing it again changes nothing.
                        let again = live.clone();
                        let twice = apply(&mut live, op);
                        prop_assert_eq!(twice, Ok(Applied::AlreadyDone), "{:?}", op);
                        prop_assert_eq!(&live, &again);
                    }
                }
            }
            if let Err(broken) = live.check() {
                prop_assert!(false, "{} after {:?}", broken, op);
            }
            for k in 0..12u8 {
                match live.reservation(&id(k)).map(|r| r.state) {
                    Some(State::Posted) => { ever_posted.insert(k); }
                    Some(State::Voided) => { ever_voided.insert(k); }
                    _ => {}
                }
            }
            prop_assert!(ever_posted.is_disjoint(&ever_voided), "no reservation is both posted and voided");
        }
        let mut replayed = ledger();
        for op in &log {
            prop_assert!(apply(&mut replayed, op).is_ok(), "replay of {:?}", op);
        }
        prop_assert_eq!(replayed, live);
    }
}

#[test]
fn bad_amounts_unknown_accounts_and_limits_below_use_are_named_and_change_nothing() {
    let mut ledger = ledger();
    let (a, b) = (scope(0), scope(1));
    let unknown: ScopeId = "nowhere".parse().unwrap();
    assert_eq!(ledger.reserve(id(1), &a, Credits(-5)), Err(LedgerError::BadAmount(-5)));
    assert_eq!(
        ledger.reserve(id(1), &a, Credits(AMOUNT_MAX + 1)),
        Err(LedgerError::BadAmount(AMOUNT_MAX + 1))
    );
    assert_eq!(
        ledger.reserve(id(1), &unknown, Credits(5)),
        Err(LedgerError::UnknownAccount(unknown.clone()))
    );
    let refused = ledger.reserve(id(1), &a, Credits(5)).unwrap_err();
    assert_eq!(refused.to_string(), "account coop-a can take on 0 more credits of obligations; 5 were asked");
    assert_eq!(ledger.set_limit(&a, Credits(-1)), Err(LedgerError::BadLimit(-1)));

    ledger.set_limit(&a, Credits(100)).unwrap();
    ledger.reserve(id(1), &a, Credits(80)).unwrap();
    let before = ledger.clone();
    let refused = ledger.set_limit(&a, Credits(50)).unwrap_err();
    assert!(matches!(refused, LedgerError::LimitBelowUse { used: 80, limit: 50, .. }), "{refused}");
    let mismatch = ledger.reserve(id(1), &a, Credits(81)).unwrap_err();
    assert!(matches!(mismatch, LedgerError::Mismatch { .. }), "the same id cannot mean another transfer");
    let over = ledger.post(id(1), &[(b.clone(), Credits(81))]).unwrap_err();
    assert_eq!(over, LedgerError::OverReservation { id: id(1), reserved: 80, posted: 81 });
    let overflow =
        ledger.post(id(1), &[(b.clone(), Credits(i64::MAX)), (b.clone(), Credits(i64::MAX))]).unwrap_err();
    assert_eq!(overflow, LedgerError::BadAmount(i64::MAX));
    assert_eq!(ledger, before, "nothing half applied");

    ledger.post(id(1), &[(b.clone(), Credits(30))]).unwrap();
    assert_eq!(ledger.account(&a).unwrap().position, -30);
    assert_eq!(ledger.account(&a).unwrap().reserved, 0, "the unposted rest of the hold is released");
    assert_eq!(ledger.account(&b).unwrap().position, 30);
    assert!(matches!(ledger.void(id(1)), Err(LedgerError::Conflict { state: State::Posted, .. })));
}

#[test]
fn clearing_nets_a_cycle_away_and_a_chain_into_one_transfer() {
    let mut ledger = ledger();
    let [a, b, c] = [0, 1, 2].map(scope);
    for s in [&a, &b, &c] {
        ledger.set_limit(s, Credits(1_000)).unwrap();
    }
    let mut k = 0;
    let mut pay = |ledger: &mut Ledger, from: &ScopeId, to: &ScopeId, amount: i64| {
        k += 1;
        ledger.reserve(id(k), from, Credits(amount)).unwrap();
        ledger.post(id(k), &[(to.clone(), Credits(amount))]).unwrap();
    };
    // a owes b 100, b owes c 100: one transfer, a to c.
    pay(&mut ledger, &a, &b, 100);
    pay(&mut ledger, &b, &c, 100);
    // c owes a 40 on top: a now owes c 60 net.
    pay(&mut ledger, &c, &a, 40);
    let members: BTreeSet<ScopeId> = [a.clone(), b.clone(), c.clone()].into();
    let clearing = ledger.clear(&members).unwrap();
    assert_eq!(clearing.before.len(), 3);
    assert_eq!(clearing.after.len(), 1);
    assert_eq!(
        (&clearing.after[0].debtor, &clearing.after[0].creditor, clearing.after[0].amount),
        (&a, &c, Credits(60))
    );
    assert_eq!(ledger.account(&b).unwrap().position, 0);
}

#[test]
fn settled_transfers_are_remembered_up_to_a_bound_so_memory_does_not_grow_with_history() {
    use icn_ledger::{Applied, LedgerError, SETTLED_REMEMBERED_MAX, TransferId};
    use icn_protocol::governance::{Credits, ScopeId};
    let payer: ScopeId = "fed".parse().unwrap();
    let payee: ScopeId = "coop".parse().unwrap();
    let mut ledger = icn_ledger::Ledger::default();
    ledger.open(payer.clone());
    ledger.open(payee.clone());
    ledger.set_limit(&payer, Credits(icn_ledger::AMOUNT_MAX)).unwrap();
    let id = |i: usize| TransferId::derive("test", &i.to_le_bytes());
    let total = SETTLED_REMEMBERED_MAX + 100;
    for i in 0..total {
        ledger.reserve(id(i), &payer, Credits(10)).unwrap();
        ledger.post(id(i), &[(payee.clone(), Credits(3))]).unwrap();
    }
    // The most recent are remembered: a repeat changes nothing and says so.
    assert_eq!(ledger.post(id(total - 1), &[(payee.clone(), Credits(3))]), Ok(Applied::AlreadyDone));
    // The oldest are forgotten: a repeat is refused as unknown, and changes nothing.
    let before = ledger.positions();
    assert!(matches!(
        ledger.post(id(0), &[(payee.clone(), Credits(3))]),
        Err(LedgerError::UnknownTransfer(_))
    ));
    assert_eq!(ledger.positions(), before);
    assert!(ledger.reservation(&id(99)).is_none() && ledger.reservation(&id(100)).is_some());
    assert_eq!(ledger.account(&payee).unwrap().position, 3 * total as i64);
    assert_eq!(ledger.check(), Ok(()));
}
