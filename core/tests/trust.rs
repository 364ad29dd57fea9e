//! Trust in the core: a worker lost mid-task loses trust; twice, and it is quarantined
//! until a decision readmits it.

use std::collections::BTreeMap;
use std::sync::Arc;

use icn_core::{Command, Core, CoreConfig, Now};
use icn_governance::Genesis;
use icn_governance::genesis::{GenesisMember, GenesisScope, GenesisWorker};
use icn_protocol::governance::{
    Ballot, Choice, Credits, Effect, Mandate, PriceSchedule, Proposal, Rule, ScopeKind, Standing,
};
use icn_protocol::wire::{Capacity, ExecutorKind, JobState, Limits, Submission};
use icn_protocol::{ContentId, Envelope, Keypair};

fn genesis(member: &Keypair, worker: &Keypair) -> Genesis {
    let rule =
        Rule { quorum: "1/2".parse().unwrap(), approval: "1/2".parse().unwrap(), voting_window_ms: 1_000 };
    let scope = |id: &str, kind, parent: Option<&str>| GenesisScope {
        id: id.parse().unwrap(),
        kind,
        parent: parent.map(|p| p.parse().unwrap()),
        rule,
        prices: (kind == ScopeKind::Commons).then_some(PriceSchedule { credits_per_mega_fuel: 1 }),
        policy: None,
        credit_limit: (kind == ScopeKind::Federation).then_some(Credits(1_000_000)),
    };
    Genesis {
        scopes: vec![
            scope("commons", ScopeKind::Commons, None),
            scope("fed", ScopeKind::Federation, Some("commons")),
            scope("coop-a", ScopeKind::Cooperative, Some("fed")),
        ],
        members: vec![GenesisMember {
            name: "ana".into(),
            key: member.public(),
            standing: BTreeMap::from([("fed".parse().unwrap(), vec![Standing::Vote, Standing::Submit])]),
        }],
        workers: vec![GenesisWorker { key: worker.public(), owner: "coop-a".parse().unwrap() }],
        mandates: vec![Mandate {
            scope: "fed".parse().unwrap(),
            budget: Credits(1_000_000),
            period_ms: 86_400_000,
            executors: vec![ExecutorKind::Wasm],
            limits: Limits::default(),
        }],
        free_compute: false,
    }
}

fn dispatched(core: &mut Core) -> usize {
    core.take_commands().iter().filter(|c| matches!(c, Command::Dispatch { .. })).count()
}

#[test]
fn a_worker_lost_twice_mid_task_is_quarantined_until_a_decision_readmits_it() {
    let (member, worker) = (Keypair::from_seed([1; 32]), Keypair::from_seed([2; 32]));
    let mut core = Core::new(Arc::new(Keypair::from_seed([3; 32])), CoreConfig::default());
    let mut now_ms = 1_000_000;
    core.found(Now::at(now_ms), &genesis(&member, &worker)).unwrap();
    let capacity = Capacity { slots: 1, memory_bytes: 1 << 30, executors: vec![ExecutorKind::Wasm] };
    let submission = Submission {
        scope: "fed".parse().unwrap(),
        executor: ExecutorKind::Wasm,
        module: ContentId::of(b"m"),
        input: icn_protocol::wire::empty_input(),
        args: vec![],
        limits: Limits::default(),
        options: Default::default(),
    };
    let job = core.submit(Now::at(now_ms), Envelope::seal(&member, 1, &submission), submission).unwrap();

    let timeout_ms = CoreConfig::default().worker_timeout_ms;
    for session in 1..=2 {
        core.worker_connected(Now::at(now_ms), worker.public(), session, capacity.clone(), &[]).unwrap();
        assert_eq!(dispatched(&mut core), 1, "session {session}: the task is placed on the worker");
        core.worker_disconnected(Now::at(now_ms), worker.public(), session, "connection lost".into());
        core.tick(Now::at(now_ms + timeout_ms));
        let view = core.workers_view().into_iter().find(|w| w.key == worker.public()).unwrap();
        assert_eq!(view.trust.missed, session - 1, "it may still come back: no loss yet");
        now_ms += timeout_ms + 1;
        core.tick(Now::at(now_ms));
        let view = core.workers_view().into_iter().find(|w| w.key == worker.public()).unwrap();
        assert_eq!(view.trust.missed, session, "silent past the timeout, the loss mid-task costs trust");
    }
    let view = core.workers_view().into_iter().find(|w| w.key == worker.public()).unwrap();
    assert!(view.quarantined, "{view:?}");

    // Connected again, it gets nothing: the job waits.
    core.worker_connected(Now::at(now_ms), worker.public(), 3, capacity.clone(), &[]).unwrap();
    assert_eq!(dispatched(&mut core), 0);
    assert_eq!(core.job(&job).unwrap().state, JobState::Queued);

    let proposal = Proposal {
        scope: "fed".parse().unwrap(),
        title: "it was a power cut".into(),
        effect: Effect::Readmit { key: worker.public() },
    };
    let (id, _) = core.propose(Now::at(now_ms), Envelope::seal(&member, 2, &proposal), proposal).unwrap();
    let ballot = Ballot { proposal: id, choice: Choice::Yes, reason: None };
    core.vote(Now::at(now_ms), Envelope::seal(&member, 3, &ballot), ballot).unwrap();
    now_ms += 1_000;
    core.heartbeat(Now::at(now_ms), worker.public(), 3, &[]);
    core.tick(Now::at(now_ms));
    assert_eq!(dispatched(&mut core), 1, "readmitted, it takes the waiting task");
    let view = core.workers_view().into_iter().find(|w| w.key == worker.public()).unwrap();
    assert!(!view.quarantined && view.trust.missed == 0, "it starts over: {view:?}");
}
