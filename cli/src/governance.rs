//! Governance state in plain words, for `icn decisions`, `icn members` and `icn scope`.

use std::fmt::Write;

use icn_governance::Governance;
use icn_protocol::governance::ScopeId;

fn standing_list<'a>(standing: impl IntoIterator<Item = &'a icn_protocol::governance::Standing>) -> String {
    standing.into_iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

pub fn decisions(governance: &Governance) -> String {
    let mut out = String::new();
    if governance.decisions.is_empty() && governance.open.is_empty() {
        out.push_str("no proposals yet\n");
    }
    for decision in governance.decisions.values() {
        let p = &decision.proposal;
        let _ = writeln!(
            out,
            "#{:<6} {} {:<8} {:?} by {}: {}\n        {}",
            decision.seq,
            p.scope,
            if decision.record.accepted { "ACCEPTED" } else { "REJECTED" },
            p.title,
            governance.member_name(&decision.proposer).unwrap_or("?"),
            governance.describe_effect(&p.scope, &p.effect),
            decision.record.reason
        );
    }
    for (id, open) in &governance.open {
        let p = &open.proposal;
        let _ = writeln!(
            out,
            "open    {} proposal {} {:?} by {}: {}\n        {} of {} have voted; voting closes {}",
            p.scope,
            id.short(),
            p.title,
            governance.member_name(&open.proposer).unwrap_or("?"),
            governance.describe_effect(&p.scope, &p.effect),
            open.ballots.len(),
            open.electorate.len(),
            icn_core::trace::when(open.closes_ms)
        );
    }
    out
}

pub fn members(governance: &Governance) -> String {
    let mut out = String::new();
    for (key, name) in &governance.members {
        let _ = writeln!(out, "{name} ({})", key.short());
        for (id, scope) in &governance.scopes {
            if let Some(held) = scope.standing.get(key) {
                let _ = writeln!(out, "    {id}: {}", standing_list(held));
            }
        }
    }
    out
}

pub fn scopes(governance: &Governance) -> String {
    let mut out = String::new();
    // Depth-first from the commons, so the tree reads top-down.
    fn walk(governance: &Governance, id: &ScopeId, depth: usize, out: &mut String) {
        let scope = &governance.scopes[id];
        let members = scope.standing.len();
        let _ =
            writeln!(out, "{}{id} ({:?}, {members} members with standing)", "  ".repeat(depth), scope.kind);
        for (child, c) in &governance.scopes {
            if c.parent.as_ref() == Some(id) {
                walk(governance, child, depth + 1, out);
            }
        }
    }
    for (id, scope) in &governance.scopes {
        if scope.parent.is_none() {
            walk(governance, id, 0, &mut out);
        }
    }
    out
}

pub fn scope(governance: &Governance, id: &ScopeId, now_ms: u64) -> anyhow::Result<String> {
    let scope = governance.scope(id)?;
    let mut out = String::new();
    let parent = scope.parent.as_ref().map_or("none".to_string(), ToString::to_string);
    let _ = writeln!(out, "scope {id}: a {} inside {parent}", format!("{:?}", scope.kind).to_lowercase());
    let r = scope.rule;
    let _ = writeln!(
        out,
        "rule: quorum {} of members with vote standing, approval {} of yes-or-no ballots, voting open {} s",
        r.quorum,
        r.approval,
        r.voting_window_ms as f64 / 1000.0
    );
    let prices = governance.prices(id);
    let _ = writeln!(out, "prices: {} credits per million fuel", prices.credits_per_mega_fuel);
    if let Some(policy) = scope.policy {
        let _ = writeln!(out, "placement: {} replicas, {} must agree", policy.replicas, policy.quorum);
    }
    match scope.mandate.map(|d| &governance.mandates[&d]) {
        Some(m) => {
            let state = if now_ms >= m.expires_ms { "expired" } else { "in force" };
            let _ = writeln!(
                out,
                "mandate from entry #{} ({state}): budget {}, {} spent, {} held by running jobs, {} left; {} jobs",
                m.decision,
                m.mandate.budget,
                m.spent.0,
                m.held.0,
                m.left().0,
                m.jobs
            );
        }
        None => out.push_str("mandate: none\n"),
    }
    out.push_str("members:\n");
    for (key, held) in &scope.standing {
        let name = governance.member_name(key).unwrap_or("?");
        let _ = writeln!(out, "    {name} ({}): {}", key.short(), standing_list(held));
    }
    let workers: Vec<String> =
        governance.workers.iter().filter(|(_, owner)| *owner == id).map(|(key, _)| key.short()).collect();
    if !workers.is_empty() {
        let _ = writeln!(out, "workers: {}", workers.join(", "));
    }
    Ok(out)
}

pub fn positions(positions: &icn_ledger::Positions) -> String {
    let mut out = format!(
        "{:<16} {:>12} {:>12} {:>12} {:>12}\n",
        "scope", "position", "reserved", "credit line", "available"
    );
    for (scope, a) in &positions.accounts {
        let _ = writeln!(
            out,
            "{scope:<16} {:>12} {:>12} {:>12} {:>12}",
            a.position,
            a.reserved,
            a.limit,
            a.available()
        );
    }
    let sum: i64 = positions.accounts.values().map(|a| a.position).sum();
    let _ = writeln!(out, "sum of positions: {sum}");
    if !positions.obligations.is_empty() {
        out.push_str("owed:\n");
        for o in &positions.obligations {
            let _ = writeln!(out, "  {} owes {} {}", o.debtor, o.creditor, o.amount);
        }
    }
    out
}

pub fn workers(workers: &[icn_core::WorkerView]) -> String {
    let mut out = format!(
        "{:<10} {:<12} {:<10} {:>6} {:>7} {:>6} {:>8} {:>6}  state\n",
        "worker", "owner", "connected", "slots", "agreed", "wrong", "missed", "trust"
    );
    for w in workers {
        let owner = w.owner.as_ref().map_or("(removed)".to_string(), ToString::to_string);
        let state = if w.quarantined { "quarantined until a decision readmits it" } else { "" };
        let _ = writeln!(
            out,
            "{:<10} {:<12} {:<10} {:>6} {:>7} {:>6} {:>8} {:>6.3}  {state}",
            w.key.short(),
            owner,
            if w.connected { "yes" } else { "no" },
            format!("{}/{}", w.free_slots, w.slots),
            w.trust.agreements,
            w.trust.disagreements,
            w.trust.missed,
            w.trust_lower_bound
        );
    }
    out
}
