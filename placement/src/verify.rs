//! Which results count: replicas agree when their output digest and fuel match, and, for
//! containers, when their usage is within the tolerance their scope decided.

use std::collections::BTreeMap;

use icn_protocol::governance::ScopeId;
use icn_protocol::wire::Usage;
use icn_protocol::{ContentId, PublicKey};

/// One replica's signed result, as verification needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub worker: PublicKey,
    pub owner: ScopeId,
    pub digest: ContentId,
    pub fuel: u64,
    /// What a container's run used (zero for wasm).
    pub usage: Usage,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judged {
    pub digest: ContentId,
    pub fuel: u64,
    /// The workers whose results agree; for containers the first is the one whose
    /// usage is the median of theirs, the usage that is paid.
    pub agreeing: Vec<PublicKey>,
    pub dissenting: Vec<PublicKey>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A result reached the quorum and outnumbers every other result and every replica
    /// still out: nothing that could still arrive would change it.
    Accepted(Judged),
    /// Wait for the replicas still out.
    Pending,
    /// Results disagree and no quorum can form from what is out: place another replica.
    NeedMore,
    /// Disagreement that more replicas may not resolve: governance decides.
    Dispute,
}

/// Where a task's replicas stand: `quorum` must agree, `outstanding` are not yet
/// reported, `placed` were placed so far of at most `replicas_max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub quorum: u32,
    pub outstanding: u32,
    pub placed: u32,
    pub replicas_max: u32,
}

/// Whether two runs' usage is close enough to be one result (containers); `None`: usage
/// is not compared (wasm, whose fuel is).
pub type UsageAgrees<'a> = Option<&'a dyn Fn(&Usage, &Usage) -> bool>;

/// Judges the results in hand.
pub fn judge(reports: &[Report], counts: Counts, usage: UsageAgrees) -> Verdict {
    let mut ranked = groups(reports, usage);
    // Largest first; ties by result so judging is deterministic.
    ranked.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    if let Some(((digest, fuel, _), top)) = ranked.first() {
        let others: usize = ranked[1..].iter().map(|(_, w)| w.len()).sum();
        if top.len() >= counts.quorum as usize && top.len() > others + counts.outstanding as usize {
            let dissenting = ranked[1..].iter().flat_map(|(_, w)| w.iter().map(|r| r.worker)).collect();
            return Verdict::Accepted(Judged {
                digest: *digest,
                fuel: *fuel,
                agreeing: match usage {
                    Some(_) => median_first(top),
                    None => top.iter().map(|r| r.worker).collect(),
                },
                dissenting,
            });
        }
    }
    if counts.outstanding > 0 {
        Verdict::Pending
    } else if counts.placed < counts.replicas_max {
        Verdict::NeedMore
    } else {
        Verdict::Dispute
    }
}

type Group<'r> = ((ContentId, u64, usize), Vec<&'r Report>);

/// Reports grouped by result: the same digest and fuel and, where usage is compared, a
/// usage that agrees with the group's median. A report whose usage does not agree is a
/// result of its own: it claimed a usage the others did not see.
fn groups<'r>(reports: &'r [Report], usage: UsageAgrees) -> Vec<Group<'r>> {
    let mut exact: BTreeMap<(ContentId, u64), Vec<&Report>> = BTreeMap::new();
    for report in reports {
        exact.entry((report.digest, report.fuel)).or_default().push(report);
    }
    let mut groups = Vec::new();
    for ((digest, fuel), members) in exact {
        let Some(agrees) = usage else {
            groups.push(((digest, fuel, 0), members));
            continue;
        };
        let median = median_usage(&members);
        let (close, far): (Vec<&Report>, Vec<&Report>) =
            members.into_iter().partition(|r| agrees(&median, &r.usage));
        groups.push(((digest, fuel, 0), close));
        groups.extend(far.into_iter().enumerate().map(|(i, r)| ((digest, fuel, i + 1), vec![r])));
    }
    groups.retain(|(_, members)| !members.is_empty());
    groups
}

/// The lower median of the members' usage, by CPU time then memory.
fn median_usage(members: &[&Report]) -> Usage {
    let mut usages: Vec<Usage> = members.iter().map(|r| r.usage).collect();
    usages.sort_by_key(|u| (u.cpu_ms, u.memory_peak_bytes, u.wall_ms));
    usages[(usages.len() - 1) / 2]
}

/// The members' workers, the one with the median usage first (ties by key), the others
/// in the order they reported.
pub fn median_first(members: &[&Report]) -> Vec<PublicKey> {
    let median = median_usage(members);
    let first = members
        .iter()
        .filter(|r| r.usage == median)
        .map(|r| r.worker)
        .min()
        .expect("the median is one of the members' usages");
    std::iter::once(first).chain(members.iter().map(|r| r.worker).filter(|w| *w != first)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(worker: u8, owner: &str, digest: &[u8]) -> Report {
        Report {
            worker: PublicKey([worker; 32]),
            owner: owner.parse().unwrap(),
            digest: ContentId::of(digest),
            fuel: 7,
            usage: Usage::default(),
        }
    }

    fn exact(reports: &[Report], quorum: u32, outstanding: u32, placed: u32, replicas_max: u32) -> Verdict {
        judge(reports, Counts { quorum, outstanding, placed, replicas_max }, None)
    }

    #[test]
    fn agreement_at_quorum_accepts_and_disagreement_grows_then_disputes() {
        let (a, b, c) = (report(1, "coop-a", b"ok"), report(2, "coop-b", b"ok"), report(3, "coop-c", b"bad"));
        assert!(matches!(exact(std::slice::from_ref(&a), 2, 1, 2, 5), Verdict::Pending));
        let Verdict::Accepted(judged) = exact(&[a.clone(), b.clone()], 2, 0, 2, 5) else { panic!() };
        assert_eq!((judged.agreeing.len(), judged.dissenting.len()), (2, 0));
        assert_eq!(exact(&[a.clone(), c.clone()], 2, 0, 2, 5), Verdict::NeedMore);
        let Verdict::Accepted(judged) = exact(&[a.clone(), c.clone(), b.clone()], 2, 0, 3, 5) else {
            panic!()
        };
        assert_eq!(judged.dissenting, vec![c.worker]);
        assert_eq!(exact(&[a.clone(), c.clone()], 2, 0, 2, 2), Verdict::Dispute);
        // The same digest with other fuel is another result.
        let mut greedy = b.clone();
        greedy.fuel = 8;
        assert_eq!(exact(&[a.clone(), greedy], 2, 0, 2, 5), Verdict::NeedMore);
        // A quorum that a replica still out could outnumber waits for it.
        assert_eq!(exact(&[a, b], 2, 3, 5, 5), Verdict::Pending);
    }

    fn container(worker: u8, cpu_ms: u64, memory_mib: u64) -> Report {
        let usage = Usage { cpu_ms, memory_peak_bytes: memory_mib << 20, wall_ms: cpu_ms * 2 };
        Report { fuel: 0, usage, ..report(worker, &format!("coop-{worker}"), b"ok") }
    }

    #[test]
    fn container_usage_agrees_within_the_tolerance_and_the_median_is_paid() {
        let terms = icn_protocol::governance::ContainerTerms {
            credits_per_cpu_second: 1,
            credits_per_gib_second: 1,
            usage_tolerance_percent: 20,
        };
        let agrees = |a: &Usage, b: &Usage| terms.agree(a, b);
        let counts = Counts { quorum: 2, outstanding: 0, placed: 3, replicas_max: 5 };
        // Three honest runs 10% apart agree; the median one's usage is what is paid.
        let honest = [container(1, 2000, 40), container(2, 2200, 42), container(3, 2100, 41)];
        let Verdict::Accepted(judged) = judge(&honest, counts, Some(&agrees)) else { panic!() };
        assert_eq!(judged.agreeing[0], honest[2].worker);
        assert_eq!((judged.agreeing.len(), judged.dissenting.len()), (3, 0));
        // A worker that claims five times the CPU for the same output dissents.
        let greedy = [container(1, 2000, 40), container(2, 10_000, 40), container(3, 2100, 41)];
        let Verdict::Accepted(judged) = judge(&greedy, counts, Some(&agrees)) else { panic!() };
        assert_eq!(judged.dissenting, vec![greedy[1].worker]);
        // Two replicas that disagree on usage are no quorum; compared exactly (wasm),
        // the same reports would agree, since their digest and fuel match.
        let two = [container(1, 2000, 40), container(2, 10_000, 40)];
        let counts = Counts { quorum: 2, outstanding: 0, placed: 2, replicas_max: 5 };
        assert_eq!(judge(&two, counts, Some(&agrees)), Verdict::NeedMore);
        assert!(matches!(judge(&two, counts, None), Verdict::Accepted(_)));
        // Short runs agree within the sampling slack whatever the tolerance.
        assert!(terms.agree(&container(1, 10, 1).usage, &container(2, 200, 4).usage));
    }
}
