//! Placement: the indexed pool chooses exactly what a full scan would, owners never
//! repeat, trust shapes replication, and the seeded simulation meets its goals.

use std::collections::BTreeSet;

use icn_placement::sim::{self, SimConfig};
use icn_placement::{
    Candidate, Infeasible, Policy, Pool, Request, Shortfall, Trust, Weights, feasible, naive_place, plan,
};
use icn_protocol::PublicKey;
use icn_protocol::governance::ScopeId;
use icn_protocol::wire::ExecutorKind;
use proptest::prelude::*;

fn candidate(i: u8, owner: u8, free_slots: u32, agreements: u64, failures: u64) -> Candidate {
    Candidate {
        key: PublicKey([i; 32]),
        owner: format!("coop-{owner}").parse().unwrap(),
        slots: 4,
        free_slots,
        memory_bytes: 1 << 30,
        executors: vec![ExecutorKind::Wasm],
        quarantined: false,
        trust: Trust { agreements, disagreements: failures, missed: 0 },
    }
}

fn arb_candidate() -> impl Strategy<Value = (u8, u32, u64, u64, bool, bool)> {
    (0..6u8, 0..5u32, 0..60u64, 0..4u64, proptest::bool::weighted(0.1), proptest::bool::weighted(0.9))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// For any pool and request, the index picks exactly what scoring every worker and
    /// sorting would, and no two chosen workers share an owner or an excluded owner.
    #[test]
    fn the_index_chooses_what_a_full_scan_would_and_owners_never_repeat(
        workers in proptest::collection::vec(arb_candidate(), 1..40),
        replicas in 1..5u32,
        min_trust in prop_oneof![Just(0.0), Just(0.5), Just(0.9)],
        excluded in proptest::collection::btree_set(0..6u8, 0..3),
        earnings in proptest::collection::vec(0..500u64, 6),
    ) {
        let weights = Weights::default();
        let mut pool = Pool::new(weights);
        let mut candidates = vec![];
        for (i, (owner, free, agreements, failures, quarantined, wasm)) in workers.into_iter().enumerate() {
            let mut c = candidate(i as u8, owner, free, agreements, failures);
            c.quarantined = quarantined;
            if !wasm {
                c.executors = vec![ExecutorKind::Container];
            }
            pool.insert(c.clone());
            candidates.push(c);
        }
        for (owner, earned) in earnings.iter().enumerate() {
            pool.earn(&format!("coop-{owner}").parse().unwrap(), *earned);
        }
        let mut request = Request::new(ExecutorKind::Wasm, 1 << 20, replicas);
        request.min_trust = min_trust;
        request.exclude_owners = excluded.iter().map(|o| format!("coop-{o}").parse().unwrap()).collect();
        let chosen = pool.place(&request);
        let earned = |o: &ScopeId| pool.earned(o);
        prop_assert_eq!(&chosen, &naive_place(&candidates, &earned, &weights, &request));
        let owners: BTreeSet<&ScopeId> = chosen.iter().map(|(k, _)| pool.owner_of(k).unwrap()).collect();
        prop_assert_eq!(owners.len(), chosen.len());
        prop_assert!(owners.iter().all(|o| !request.exclude_owners.contains(*o)));
        for (key, score) in &chosen {
            let c = pool.get(key).unwrap();
            prop_assert!(!c.quarantined && c.free_slots > 0 && score.trust >= min_trust);
        }
    }
}

#[test]
fn feasibility_names_the_first_stage_that_says_no() {
    let request = Request::new(ExecutorKind::Wasm, 1 << 20, 1);
    let none = BTreeSet::new();
    let mut c = candidate(1, 1, 1, 0, 0);
    assert_eq!(feasible(&c, &request, &none), Ok(()));
    c.free_slots = 0;
    assert_eq!(feasible(&c, &request, &none), Err(Infeasible::NoFreeSlot));
    c.quarantined = true;
    assert_eq!(feasible(&c, &request, &none), Err(Infeasible::Quarantined));
    let taken: BTreeSet<ScopeId> = ["coop-1".parse().unwrap()].into();
    let c = candidate(1, 1, 1, 0, 0);
    assert_eq!(feasible(&c, &request, &taken), Err(Infeasible::OwnerTaken));
    let big = Request::new(ExecutorKind::Wasm, 2 << 30, 1);
    assert_eq!(feasible(&c, &big, &none), Err(Infeasible::Memory));
}

#[test]
fn trusted_workers_run_alone_but_spot_checked_and_new_ones_run_beside_a_trusted_one() {
    let policy = Policy::default();
    let mut pool = Pool::new(Weights::default());
    pool.insert(candidate(1, 1, 4, 200, 0)); // trusted
    pool.insert(candidate(2, 2, 4, 0, 0)); // new
    pool.insert(candidate(3, 3, 4, 0, 0)); // new
    let request = Request::new(ExecutorKind::Wasm, 0, policy.replicas);
    let alone = plan(&pool, &request, &policy, 0.5).unwrap();
    assert_eq!((alone.chosen.len(), alone.quorum), (1, 1));
    assert_eq!(alone.chosen[0].0, PublicKey([1; 32]));
    let checked = plan(&pool, &request, &policy, 0.05).unwrap();
    assert_eq!((checked.chosen.len(), checked.quorum, checked.spot_check), (2, 2, true));
    assert_eq!(checked.chosen[0].0, PublicKey([1; 32]));

    // Once its cooperative has earned much more than the others, a new worker scores
    // best: it runs, beside the trusted worker.
    pool.earn(&"coop-1".parse().unwrap(), 1_000);
    let paired = plan(&pool, &request, &policy, 0.5).unwrap();
    let keys: Vec<PublicKey> = paired.chosen.iter().map(|(k, _)| *k).collect();
    assert_eq!((keys.len(), paired.quorum), (2, 2));
    assert!(keys[0] != PublicKey([1; 32]) && keys[1] == PublicKey([1; 32]), "{keys:?}");

    // The trusted worker is busy: two new workers of distinct owners, quorum 2.
    pool.update(&PublicKey([1; 32]), |c| c.free_slots = 0);
    let pair = plan(&pool, &request, &policy, 0.5).unwrap();
    assert_eq!((pair.chosen.len(), pair.quorum), (2, 2));
    // A lone new worker cannot form a quorum: no plan until another is free.
    pool.update(&PublicKey([3; 32]), |c| c.free_slots = 0);
    assert!(plan(&pool, &request, &policy, 0.5).is_none());
}

#[test]
fn quarantine_needs_repeated_failure_below_the_floor() {
    let policy = Policy::default();
    assert!(!policy.quarantines(&Trust { agreements: 0, disagreements: 1, missed: 0 }));
    assert!(policy.quarantines(&Trust { agreements: 0, disagreements: 1, missed: 1 }));
    assert!(!policy.quarantines(&Trust { agreements: 100, disagreements: 2, missed: 0 }));
}

#[test]
fn the_seeded_simulation_accepts_no_wrong_result_and_replicates_less_than_two_fold() {
    let config = SimConfig { tasks: 3_000, ..SimConfig::default() };
    let aware = sim::trust_aware(&config);
    let fixed = sim::fixed_two_fold(&config);
    println!("{aware:#?}\n{fixed:#?}");
    assert_eq!(aware.wrong_from_byzantine, 0, "{aware:#?}");
    assert_eq!(aware.wrong_from_colluders, 0, "colluders alone never form a quorum: {aware:#?}");
    assert!(aware.replicas_per_task_late < fixed.replicas_per_task_late, "{aware:#?} {fixed:#?}");
    assert_eq!(aware.quarantined_honest, 0, "{aware:#?}");
    // The same seed gives the same run.
    assert_eq!(format!("{aware:?}"), format!("{:?}", sim::trust_aware(&config)));
}

/// A request that cannot be placed names the first stage the workers fall short at, and
/// the free-slot count placement stops on follows every change, quarantine included.
#[test]
fn shortfall_names_the_first_stage_that_holds_a_request_back() {
    let mut pool = Pool::new(Weights::default());
    let wasm = |replicas| Request::new(ExecutorKind::Wasm, 1 << 20, replicas);
    assert_eq!(pool.shortfall(&wasm(1)), Shortfall::Executor);
    pool.insert(candidate(1, 1, 0, 0, 0));
    pool.insert(Candidate { memory_bytes: 1 << 28, ..candidate(2, 2, 3, 0, 0) });
    assert_eq!(pool.free_slots(), 3);
    assert_eq!(pool.shortfall(&Request::new(ExecutorKind::Container, 1 << 20, 1)), Shortfall::Executor);
    assert_eq!(
        pool.shortfall(&Request::new(ExecutorKind::Wasm, 1 << 31, 1)),
        Shortfall::Memory { largest_bytes: 1 << 30 }
    );
    // Only worker 1 has a gigabyte: one cooperative for two replicas.
    assert_eq!(
        pool.shortfall(&Request::new(ExecutorKind::Wasm, 1 << 30, 2)),
        Shortfall::Owners { owners: 1 }
    );
    let mut excluded = wasm(2);
    excluded.exclude_owners.insert("coop-1".parse().unwrap());
    assert_eq!(pool.shortfall(&excluded), Shortfall::Owners { owners: 1 });
    assert_eq!(pool.shortfall(&wasm(2)), Shortfall::Slots { slots: 8 });
    pool.update(&PublicKey([2; 32]), |c| c.quarantined = true);
    assert_eq!(pool.free_slots(), 0, "a quarantined worker's slots are not free to placement");
    assert_eq!(pool.shortfall(&wasm(1)), Shortfall::Slots { slots: 4 });
    pool.update(&PublicKey([1; 32]), |c| c.free_slots = 2);
    assert_eq!(pool.free_slots(), 2);
    pool.remove(&PublicKey([1; 32]));
    assert_eq!(pool.free_slots(), 0);
    assert_eq!(pool.shortfall(&wasm(1)), Shortfall::Executor);
}
