//! Governance as a pure state machine: every refusal reason, the count at close and the
//! effects of decisions. (Replay of the journal is proven through the coordinator core,
//! in `coordinator/tests/replay.rs`.)

use icn_governance::genesis::{GenesisMember, GenesisScope};
use icn_governance::{Event, Genesis, Governance, Refusal};
use icn_protocol::governance::{
    Ballot, Choice, Credits, Effect, Mandate, PriceSchedule, Proposal, Rule, ScopeId, ScopeKind, Standing,
};
use icn_protocol::wire::{ExecutorKind, Limits, Submission};
use icn_protocol::{ContentId, Envelope, Fuel, Keypair};

const WINDOW_MS: u64 = 1_000;

fn scope(id: &str) -> ScopeId {
    id.parse().unwrap()
}

fn rule(quorum: &str, approval: &str) -> Rule {
    Rule { quorum: quorum.parse().unwrap(), approval: approval.parse().unwrap(), voting_window_ms: WINDOW_MS }
}

/// A commons with federation `fed` holding cooperatives `coop-a` and `coop-b`.
/// Members 0, 1 and 2 vote in `fed` (0 and 1 may also submit); member 3 only in `coop-a`.
struct World {
    governance: Governance,
    keys: Vec<Keypair>,
    log: Vec<(u64, u64, Event)>,
    now_ms: u64,
    nonce: u64,
}

impl World {
    fn new() -> World {
        let keys: Vec<Keypair> = (0..4).map(member_key).collect();
        let in_fed = |standing: &[Standing]| [(scope("fed"), standing.to_vec())].into_iter().collect();
        let genesis = Genesis {
            scopes: vec![
                GenesisScope {
                    id: scope("commons"),
                    kind: ScopeKind::Commons,
                    parent: None,
                    rule: rule("1/2", "1/2"),
                    prices: Some(PriceSchedule { credits_per_mega_fuel: 1 }),
                    policy: None,
                    credit_limit: None,
                },
                GenesisScope {
                    id: scope("fed"),
                    kind: ScopeKind::Federation,
                    parent: Some(scope("commons")),
                    rule: rule("1/2", "2/3"),
                    prices: None,
                    policy: None,
                    credit_limit: None,
                },
                GenesisScope {
                    id: scope("coop-a"),
                    kind: ScopeKind::Cooperative,
                    parent: Some(scope("fed")),
                    rule: rule("1/2", "1/2"),
                    prices: None,
                    policy: None,
                    credit_limit: None,
                },
            ],
            members: vec![
                GenesisMember {
                    name: "ana".into(),
                    key: keys[0].public(),
                    standing: in_fed(&[Standing::Vote, Standing::Submit]),
                },
                GenesisMember {
                    name: "ben".into(),
                    key: keys[1].public(),
                    standing: in_fed(&[Standing::Vote, Standing::Submit]),
                },
                GenesisMember {
                    name: "cy".into(),
                    key: keys[2].public(),
                    standing: [
                        (scope("fed"), vec![Standing::Vote]),
                        (scope("commons"), vec![Standing::Vote]),
                    ]
                    .into_iter()
                    .collect(),
                },
                GenesisMember {
                    name: "dee".into(),
                    key: keys[3].public(),
                    standing: [(scope("coop-a"), vec![Standing::Vote, Standing::Submit])]
                        .into_iter()
                        .collect(),
                },
            ],
            workers: vec![],
            mandates: vec![],
            free_compute: false,
        };
        genesis.validate().unwrap();
        let mut world =
            World { governance: Governance::default(), keys, log: vec![], now_ms: 1_000, nonce: 0 };
        world.record(Event::Genesis(genesis));
        world
    }

    fn record(&mut self, event: Event) -> u64 {
        let seq = self.log.len() as u64;
        self.governance.apply(seq, self.now_ms, &event);
        self.log.push((seq, self.now_ms, event));
        seq
    }

    fn propose(&mut self, member: usize, scope_id: &str, effect: Effect) -> Result<ContentId, Refusal> {
        let proposal = Proposal { scope: scope(scope_id), title: "a proposal".into(), effect };
        self.nonce += 1;
        let envelope = Envelope::seal(&self.keys[member], self.nonce, &proposal);
        let event = self.governance.check_proposal(self.now_ms, &envelope, &proposal)?;
        self.record(event);
        Ok(envelope.id())
    }

    fn vote_as(&mut self, key: &Keypair, proposal: ContentId, choice: Choice) -> Result<u64, Refusal> {
        let ballot = Ballot { proposal, choice, reason: None };
        self.nonce += 1;
        let envelope = Envelope::seal(key, self.nonce, &ballot);
        let event = self.governance.check_ballot(self.now_ms, &envelope, &ballot)?;
        Ok(self.record(event))
    }

    fn vote(&mut self, member: usize, proposal: ContentId, choice: Choice) -> Result<u64, Refusal> {
        self.vote_as(&member_key(member), proposal, choice)
    }

    /// Moves time on and closes every proposal due, as the coordinator's tick does.
    fn advance(&mut self, ms: u64) -> Vec<u64> {
        self.now_ms += ms;
        let mut decisions = vec![];
        for proposal in self.governance.due(self.now_ms) {
            let record = self.governance.decide(&proposal);
            decisions.push(self.record(Event::DecisionMade(record)));
        }
        decisions
    }

    /// Passes a mandate for `fed` with ana and ben voting yes; returns its decision entry.
    fn pass_mandate(&mut self, budget: i64, period_ms: u64) -> u64 {
        let mandate = Mandate {
            scope: scope("fed"),
            budget: Credits(budget),
            period_ms,
            executors: vec![ExecutorKind::Wasm],
            limits: Limits::default(),
        };
        let proposal = self.propose(0, "fed", Effect::Mandate(mandate)).unwrap();
        self.vote(0, proposal, Choice::Yes).unwrap();
        self.vote(1, proposal, Choice::Yes).unwrap();
        let decisions = self.advance(WINDOW_MS);
        assert!(self.governance.decisions[&decisions[0]].record.accepted);
        decisions[0]
    }
}

fn member_key(index: usize) -> Keypair {
    Keypair::from_seed([index as u8 + 1; 32])
}

fn job(scope_id: &str, fuel: u64) -> Submission {
    Submission {
        scope: scope(scope_id),
        executor: ExecutorKind::Wasm,
        module: ContentId::of(b"module"),
        input: icn_protocol::wire::empty_input(),
        args: vec![],
        limits: Limits { fuel: Fuel(fuel), ..Limits::default() },
        options: Default::default(),
    }
}

#[test]
fn each_reason_to_refuse_a_submission_is_named() {
    let mut world = World::new();
    let g = |w: &World, key: &Keypair, s: &Submission| w.governance.authorize(w.now_ms, &key.public(), s);
    let stranger = Keypair::generate();
    assert!(matches!(g(&world, &stranger, &job("fed", 1_000_000)), Err(Refusal::NotAMember { .. })));
    assert!(matches!(g(&world, &world.keys[0], &job("nowhere", 1)), Err(Refusal::UnknownScope { .. })));
    let refusal = g(&world, &world.keys[3], &job("fed", 1)).unwrap_err();
    assert_eq!(refusal.to_string(), "member dee holds no submit standing in scope fed");
    let refusal = g(&world, &world.keys[2], &job("fed", 1)).unwrap_err();
    assert!(matches!(refusal, Refusal::NoStanding { standing: Standing::Submit, .. }), "{refusal}");
    assert!(matches!(g(&world, &world.keys[0], &job("fed", 1)), Err(Refusal::NoMandate { .. })));

    // A mandate of 1500 credits for a day: a job of a billion fuel may cost 1000.
    let decision = world.pass_mandate(1_500, 86_400_000);
    let first = g(&world, &world.keys[0], &job("fed", 1_000_000_000)).unwrap();
    assert_eq!((first.decision, first.hold), (decision, Credits(1_000)));
    world.governance.hold(first.decision, first.hold);
    let refusal = g(&world, &world.keys[1], &job("fed", 1_000_000_000)).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::BudgetExhausted { scope: scope("fed"), decision, left: Credits(500), cost: Credits(1_000) }
    );
    // Completing spends only what the job used; the rest comes back.
    world.governance.release(first.decision, first.hold, Credits(300));
    assert_eq!(world.governance.mandates[&decision].left(), Credits(1_200));
    assert!(g(&world, &world.keys[1], &job("fed", 1_000_000_000)).is_ok());

    let mut container = job("fed", 1);
    container.executor = ExecutorKind::Container;
    let refusal = g(&world, &world.keys[0], &container).unwrap_err();
    assert!(matches!(refusal, Refusal::ExecutorNotAllowed { .. }), "{refusal}");
    assert!(refusal.to_string().contains("allows wasm"), "{refusal}");
    let refusal = g(&world, &world.keys[0], &job("fed", Limits::default().fuel.0 + 1)).unwrap_err();
    assert!(matches!(refusal, Refusal::OverMandateLimit { flag: "--fuel", .. }), "{refusal}");
    // In the flag's own units, with how to get more.
    let mut big = job("fed", 1);
    big.limits.memory_bytes = Limits::default().memory_bytes * 2;
    let said = g(&world, &world.keys[0], &big).unwrap_err().to_string();
    let (asked, allowed) = ((Limits::default().memory_bytes * 2) >> 20, Limits::default().memory_bytes >> 20);
    assert!(
        said.contains(&format!("asks --memory-mib {asked}, over"))
            && said.contains(&format!("--memory-mib {allowed}: ask for less"))
            && said.contains("mandate --for fed --budget N --memory-mib"),
        "{said}"
    );

    world.advance(86_400_000);
    let refusal = g(&world, &world.keys[0], &job("fed", 1)).unwrap_err();
    assert!(matches!(refusal, Refusal::MandateExpired { decision: d, .. } if d == decision), "{refusal}");
    // A time a person reads, and what to do.
    assert!(refusal.to_string().contains("expired at 1970-01-02T00:00:02Z (UTC)"), "{refusal}");
    assert!(refusal.to_string().contains("must grant a new one"), "{refusal}");
}

#[test]
fn ballots_from_outsiders_twice_or_late_are_refused_and_a_changed_vote_counts_once() {
    let mut world = World::new();
    let proposal =
        world.propose(0, "fed", Effect::PriceSchedule(PriceSchedule { credits_per_mega_fuel: 2 })).unwrap();
    let stranger = Keypair::generate();
    assert!(matches!(world.vote_as(&stranger, proposal, Choice::Yes), Err(Refusal::NotAMember { .. })));
    assert!(matches!(world.vote(3, proposal, Choice::Yes), Err(Refusal::NotInElectorate { .. })));
    assert!(matches!(
        world.vote(0, ContentId::of(b"no such proposal"), Choice::Yes),
        Err(Refusal::UnknownProposal { .. })
    ));
    world.vote(0, proposal, Choice::No).unwrap();
    let refusal = world.vote(0, proposal, Choice::No).unwrap_err();
    assert_eq!(
        refusal.to_string(),
        format!("duplicate ballot: member ana already voted no on proposal {proposal}")
    );
    world.vote(0, proposal, Choice::Yes).unwrap();
    world.vote(1, proposal, Choice::Yes).unwrap();

    world.now_ms += WINDOW_MS;
    let late = world.vote(2, proposal, Choice::No).unwrap_err();
    assert!(matches!(late, Refusal::VotingClosed { .. }), "window over");
    assert!(late.to_string().contains("closed at 1970-01-01T00:00:02Z (UTC)"), "{late}");
    let decisions = world.advance(0);
    assert!(matches!(world.vote(2, proposal, Choice::No), Err(Refusal::VotingClosed { .. })), "decided");
    let decision = &world.governance.decisions[&decisions[0]];
    assert!(decision.record.accepted, "{}", decision.record.reason);
    assert_eq!(
        (decision.record.tally.yes, decision.record.tally.no),
        (2, 0),
        "ana's changed vote counts once"
    );
    assert_eq!(
        world.governance.scopes[&scope("fed")].prices,
        Some(PriceSchedule { credits_per_mega_fuel: 2 })
    );
}

#[test]
fn a_proposal_short_of_quorum_is_rejected_and_changes_nothing() {
    let mut world = World::new();
    let proposal =
        world.propose(0, "fed", Effect::PriceSchedule(PriceSchedule { credits_per_mega_fuel: 9 })).unwrap();
    world.vote(0, proposal, Choice::Yes).unwrap();
    let decisions = world.advance(WINDOW_MS);
    let record = &world.governance.decisions[&decisions[0]].record;
    assert!(!record.accepted);
    assert_eq!(
        record.reason,
        "rejected: short of quorum: 1 of 3 members with vote standing cast a ballot; quorum 1/2 needs 2"
    );
    assert_eq!(world.governance.scopes[&scope("fed")].prices, None);
}

#[test]
fn revoked_standing_stops_later_submissions_only() {
    let mut world = World::new();
    let decision = world.pass_mandate(1_000_000, 86_400_000);
    let before =
        world.governance.authorize(world.now_ms, &world.keys[1].public(), &job("fed", 1_000_000)).unwrap();
    world.governance.hold(before.decision, before.hold);

    let revoke = Effect::RevokeStanding { key: world.keys[1].public(), standing: vec![Standing::Submit] };
    let proposal = world.propose(0, "fed", revoke).unwrap();
    world.vote(0, proposal, Choice::Yes).unwrap();
    world.vote(2, proposal, Choice::Yes).unwrap();
    world.advance(WINDOW_MS);

    let after = world.governance.authorize(world.now_ms, &world.keys[1].public(), &job("fed", 1_000_000));
    assert_eq!(after.unwrap_err().to_string(), "member ben holds no submit standing in scope fed");
    assert!(
        world.governance.holds(&world.keys[1].public(), &scope("fed"), Standing::Vote),
        "only submit went"
    );
    // The job admitted before the decision keeps its hold and settles as usual.
    world.governance.release(before.decision, before.hold, Credits(1));
    assert_eq!(world.governance.mandates[&decision].spent, Credits(1));
}

#[test]
fn a_scope_decides_only_for_itself_and_what_it_contains() {
    let mut world = World::new();
    let mandate = Mandate {
        scope: scope("fed"),
        budget: Credits(10),
        period_ms: 1_000,
        executors: vec![ExecutorKind::Wasm],
        limits: Limits::default(),
    };
    let refusal = world.propose(3, "coop-a", Effect::Mandate(mandate)).unwrap_err();
    assert_eq!(refusal.to_string(), "scope coop-a cannot decide for fed: it is neither fed nor contains it");
    assert!(matches!(
        world.propose(3, "fed", Effect::PriceSchedule(PriceSchedule { credits_per_mega_fuel: 1 })),
        Err(Refusal::NoStanding { standing: Standing::Vote, .. })
    ));
}

#[test]
fn genesis_errors_name_the_bad_value() {
    let text = r#"
        [[scopes]]
        id = "commons"
        kind = "commons"
        rule = { quorum = "1/2", approval = "1/2", voting_window_ms = 1000 }
        prices = { credits_per_mega_fuel = 1 }

        [[scopes]]
        id = "coop-a"
        kind = "cooperative"
        parent = "fed-missing"
        rule = { quorum = "1/2", approval = "1/2", voting_window_ms = 1000 }
    "#;
    let error = Genesis::parse(text).unwrap_err().to_string();
    assert_eq!(error, "scope coop-a: parent fed-missing is not declared");
    let error = Genesis::parse(&text.replace("\"1/2\", approval", "\"3/2\", approval")).unwrap_err();
    assert!(error.to_string().contains("\"3/2\" is not a fraction"), "{error}");
}

#[test]
fn free_compute_needs_the_genesis_to_say_so() {
    let text = r#"
        [[scopes]]
        id = "commons"
        kind = "commons"
        rule = { quorum = "1/2", approval = "1/2", voting_window_ms = 1000 }
        prices = { credits_per_mega_fuel = 0 }
    "#;
    let error = Genesis::parse(text).unwrap_err().to_string();
    assert!(error.contains("credits_per_mega_fuel is 0") && error.contains("free_compute = true"), "{error}");
    let free = Genesis::parse(&format!("free_compute = true\n{text}")).unwrap();
    assert!(free.free_compute);

    // Nor can a decision make compute free where the genesis did not allow it.
    let mut world = World::new();
    let refusal = world
        .propose(0, "fed", Effect::PriceSchedule(PriceSchedule { credits_per_mega_fuel: 0 }))
        .unwrap_err()
        .to_string();
    assert!(refusal.contains("makes all compute free"), "{refusal}");
}

#[test]
fn a_ballot_replayed_after_a_change_of_vote_is_refused_and_changes_are_bounded() {
    let mut world = World::new();
    let proposal =
        world.propose(0, "fed", Effect::PriceSchedule(PriceSchedule { credits_per_mega_fuel: 2 })).unwrap();
    let yes = Envelope::seal(&world.keys[0], 900, &Ballot { proposal, choice: Choice::Yes, reason: None });
    let no = Envelope::seal(&world.keys[0], 901, &Ballot { proposal, choice: Choice::No, reason: None });
    for envelope in [&yes, &no] {
        let ballot = envelope.open().unwrap();
        let event = world.governance.check_ballot(world.now_ms, envelope, &ballot).unwrap();
        world.record(event);
    }
    let refusal = world.governance.check_ballot(world.now_ms, &yes, &yes.open().unwrap()).unwrap_err();
    assert!(matches!(refusal, Refusal::ReplayedBallot { .. }), "{refusal}");
    assert_eq!(world.governance.open[&proposal].ballots[&world.keys[0].public()].0, Choice::No);
    // Every change is a new ballot in the journal; a member gets a bounded number of them.
    let mut refused = None;
    for round in 0..40 {
        let choice = if round % 2 == 0 { Choice::Yes } else { Choice::No };
        match world.vote(0, proposal, choice) {
            Ok(_) => {}
            Err(refusal) => {
                refused = Some(refusal);
                break;
            }
        }
    }
    assert!(matches!(refused, Some(Refusal::TooManyBallots { changes: 16, .. })), "{refused:?}");
}

#[test]
fn no_scope_lends_itself_credit_and_one_that_contains_it_may() {
    let mut world = World::new();
    // Dee is coop-a's only voter: alone she could pass anything coop-a may decide.
    let own = Effect::CreditLimit { scope: scope("coop-a"), limit: Credits(4_000_000_000_000) };
    let refusal = world.propose(3, "coop-a", own).unwrap_err();
    assert!(
        refusal.to_string().contains("scope coop-a cannot set its own credit line")
            && refusal.to_string().contains("(fed or commons)"),
        "{refusal}"
    );
    let own = Effect::CreditLimit { scope: scope("fed"), limit: Credits(1) };
    assert!(world.propose(0, "fed", own).is_err(), "nor may a federation");
    // Its federation may lend it a line; what coop-a decides for itself stays its own.
    let lent = Effect::CreditLimit { scope: scope("coop-a"), limit: Credits(500) };
    assert!(world.propose(0, "fed", lent).is_ok());
    let standing = Effect::GrantStanding {
        name: "dee".into(),
        key: world.keys[3].public(),
        standing: vec![Standing::Submit],
    };
    assert!(world.propose(3, "coop-a", standing).is_ok(), "its members' standing is coop-a's to decide");
}

#[test]
fn a_scope_may_pay_donors_more_than_the_scopes_above_it_ask_never_less() {
    let mut world = World::new();
    let decide = |world: &mut World, price: u64| {
        let proposal = world
            .propose(0, "fed", Effect::PriceSchedule(PriceSchedule { credits_per_mega_fuel: price }))
            .unwrap();
        world.vote(0, proposal, Choice::Yes).unwrap();
        world.vote(1, proposal, Choice::Yes).unwrap();
        world.advance(WINDOW_MS);
    };
    decide(&mut world, 5);
    assert_eq!(world.governance.prices(&scope("coop-a")).credits_per_mega_fuel, 5, "fed raised its price");
    // Back down to the commons' 1: as low as fed may go.
    decide(&mut world, 1);
    assert_eq!(world.governance.prices(&scope("fed")).credits_per_mega_fuel, 1);
    let mut world = World::new();
    world.governance.scopes.get_mut(&scope("commons")).unwrap().prices =
        Some(PriceSchedule { credits_per_mega_fuel: 3 });
    decide(&mut world, 1);
    assert_eq!(
        world.governance.prices(&scope("fed")).credits_per_mega_fuel,
        3,
        "fed decided 1, below the commons' 3: its jobs still pay 3"
    );
}

/// M3: the open proposals were shared by the whole commons, so one member could fill
/// them, even blocking the proposal that would revoke them. Now one member holds at most
/// 16, one scope at most 1,000, and the last 1,000 are the commons scope's alone.
#[test]
fn no_member_or_scope_fills_the_open_proposals_and_the_commons_keeps_room() {
    use icn_governance::{PROPOSALS_COMMONS_RESERVED, PROPOSALS_OPEN_MAX, PROPOSALS_OPEN_PER_PROPOSER_MAX};
    let mut world = World::new();
    let price = |n: u64| Effect::PriceSchedule(PriceSchedule { credits_per_mega_fuel: n });
    for n in 0..PROPOSALS_OPEN_PER_PROPOSER_MAX as u64 {
        world.propose(0, "fed", price(n + 1)).unwrap();
    }
    let refusal = world.propose(0, "fed", price(99)).unwrap_err().to_string();
    assert!(refusal.contains("you have 16 proposals open, as many as one member may"), "{refusal}");
    assert!(world.propose(1, "fed", price(99)).is_ok(), "another member still may propose");
    world.advance(WINDOW_MS);
    assert!(world.propose(0, "fed", price(99)).is_ok(), "and ana again once hers closed");

    // Every other scope's room taken (as if by many members of coop-a): fed may add
    // nothing more, and the commons may still decide.
    let filler = world.governance.open.values().next().unwrap().clone();
    let taken = PROPOSALS_OPEN_MAX - PROPOSALS_COMMONS_RESERVED - world.governance.open.len();
    for i in 0..taken {
        let mut open = filler.clone();
        open.proposal.scope = scope("coop-a");
        open.proposer = member_key(3).public();
        world.governance.open.insert(ContentId::of(&(i as u64).to_le_bytes()), open);
    }
    let refusal = world.propose(1, "fed", price(7)).unwrap_err().to_string();
    assert!(refusal.contains("9000 proposals are open, as many as fed may add to"), "{refusal}");
    assert!(world.propose(2, "commons", price(1)).is_ok(), "the commons keeps room to decide");
}
