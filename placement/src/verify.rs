//! Which results count: replicas agree when their output digest and fuel match.

use std::collections::BTreeMap;

use icn_protocol::governance::ScopeId;
use icn_protocol::{ContentId, PublicKey};

/// One replica's signed result, as verification needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub worker: PublicKey,
    pub owner: ScopeId,
    pub digest: ContentId,
    pub fuel: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judged {
    pub digest: ContentId,
    pub fuel: u64,
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

/// Judges the results in hand, with `outstanding` replicas not yet reported and
/// `placed` replicas placed so far of at most `replicas_max`.
pub fn judge(reports: &[Report], quorum: u32, outstanding: u32, placed: u32, replicas_max: u32) -> Verdict {
    let mut groups: BTreeMap<(ContentId, u64), Vec<PublicKey>> = BTreeMap::new();
    for report in reports {
        groups.entry((report.digest, report.fuel)).or_default().push(report.worker);
    }
    let mut ranked: Vec<(&(ContentId, u64), &Vec<PublicKey>)> = groups.iter().collect();
    // Largest first; ties by digest so judging is deterministic.
    ranked.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    if let Some(((digest, fuel), top)) = ranked.first() {
        let others: usize = ranked[1..].iter().map(|(_, w)| w.len()).sum();
        if top.len() >= quorum as usize && top.len() > others + outstanding as usize {
            let dissenting = ranked[1..].iter().flat_map(|(_, w)| w.iter().copied()).collect();
            return Verdict::Accepted(Judged {
                digest: *digest,
                fuel: *fuel,
                agreeing: (*top).clone(),
                dissenting,
            });
        }
    }
    if outstanding > 0 {
        Verdict::Pending
    } else if placed < replicas_max {
        Verdict::NeedMore
    } else {
        Verdict::Dispute
    }
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
        }
    }

    #[test]
    fn agreement_at_quorum_accepts_and_disagreement_grows_then_disputes() {
        let (a, b, c) = (report(1, "coop-a", b"ok"), report(2, "coop-b", b"ok"), report(3, "coop-c", b"bad"));
        assert!(matches!(judge(std::slice::from_ref(&a), 2, 1, 2, 5), Verdict::Pending));
        let Verdict::Accepted(judged) = judge(&[a.clone(), b.clone()], 2, 0, 2, 5) else { panic!() };
        assert_eq!((judged.agreeing.len(), judged.dissenting.len()), (2, 0));
        assert_eq!(judge(&[a.clone(), c.clone()], 2, 0, 2, 5), Verdict::NeedMore);
        let Verdict::Accepted(judged) = judge(&[a.clone(), c.clone(), b.clone()], 2, 0, 3, 5) else {
            panic!()
        };
        assert_eq!(judged.dissenting, vec![c.worker]);
        assert_eq!(judge(&[a.clone(), c.clone()], 2, 0, 2, 2), Verdict::Dispute);
        // The same digest with other fuel is another result.
        let mut greedy = b.clone();
        greedy.fuel = 8;
        assert_eq!(judge(&[a.clone(), greedy], 2, 0, 2, 5), Verdict::NeedMore);
        // A quorum that a replica still out could outnumber waits for it.
        assert_eq!(judge(&[a, b], 2, 3, 5, 5), Verdict::Pending);
    }
}
