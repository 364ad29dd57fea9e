//! Governance, ledger and worker views in plain words, for `icn decisions`, `icn members`,
//! `icn scope`, `icn ledger positions` and `icn workers`.

use std::fmt::Write;

use icn_protocol::governance::Standing;
use icn_protocol::views::{
    DecisionView, MemberView, PositionsView, ProposalView, ScopeSummary, ScopeView, WorkerView, when,
};

fn standing_list<'a>(standing: impl IntoIterator<Item = &'a Standing>) -> String {
    standing.into_iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn name(person: &icn_protocol::views::Person) -> &str {
    person.name.as_deref().unwrap_or("?")
}

pub fn decisions(decisions: &[DecisionView], open: &[ProposalView]) -> String {
    let mut out = String::new();
    if decisions.is_empty() && open.is_empty() {
        out.push_str("no proposals yet\n");
    }
    for d in decisions {
        let _ = writeln!(
            out,
            "#{:<6} {} {:<8} {:?} by {}: {}\n        {}",
            d.seq,
            d.scope,
            if d.accepted { "ACCEPTED" } else { "REJECTED" },
            d.title,
            name(&d.proposer),
            d.effect_text,
            d.reason
        );
    }
    for p in open {
        let _ = writeln!(
            out,
            "open    {} proposal {} {:?} by {}: {}\n        {} of {} have voted; voting closes {}",
            p.scope,
            p.id.short(),
            p.title,
            name(&p.proposer),
            p.effect_text,
            p.ballots.len(),
            p.tally.electorate,
            when(p.closes_ms)
        );
    }
    out
}

pub fn members(members: &[MemberView]) -> String {
    let mut out = String::new();
    for member in members {
        let _ = writeln!(out, "{} ({})", name(&member.person), member.person.key.short());
        for (scope, held) in &member.standing {
            let _ = writeln!(out, "    {scope}: {}", standing_list(held));
        }
    }
    out
}

/// `n` and the noun in the number it takes: "1 member", "2 members".
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn scopes(scopes: &[ScopeSummary]) -> String {
    let mut out = String::new();
    // Depth-first from the commons, so the tree reads top-down.
    fn walk(scopes: &[ScopeSummary], scope: &ScopeSummary, depth: usize, out: &mut String) {
        let _ = writeln!(
            out,
            "{}{} ({}, {} with standing)",
            "  ".repeat(depth),
            scope.id,
            scope.kind,
            count(scope.members, "member", "members")
        );
        for child in scopes.iter().filter(|c| c.parent.as_ref() == Some(&scope.id)) {
            walk(scopes, child, depth + 1, out);
        }
    }
    for root in scopes.iter().filter(|s| s.parent.is_none()) {
        walk(scopes, root, 0, &mut out);
    }
    out
}

pub fn scope(scope: &ScopeView, now_ms: u64) -> String {
    let mut out = String::new();
    let _ = match &scope.parent {
        Some(parent) => writeln!(out, "scope {}: a {} inside {parent}", scope.id, scope.kind),
        None => writeln!(out, "scope {}: the {}, at the top", scope.id, scope.kind),
    };
    let r = scope.rule;
    let _ = writeln!(
        out,
        "rule: quorum {} of members with vote standing, approval {} of yes-or-no ballots, voting open {} s",
        r.quorum,
        r.approval,
        r.voting_window_ms as f64 / 1000.0
    );
    let _ = writeln!(out, "prices: {} credits per million fuel", scope.prices.credits_per_mega_fuel);
    if let Some(policy) = scope.policy {
        let _ = writeln!(out, "placement: {} replicas, {} must agree", policy.replicas, policy.quorum);
    }
    match (scope.share, &scope.parent) {
        ((weight, Some(decision)), Some(parent)) => {
            let _ = writeln!(
                out,
                "fair share: weight {weight} among the scopes of {parent}, set by decision #{decision}"
            );
        }
        (_, Some(parent)) => {
            let _ =
                writeln!(out, "fair share: weight 1 among the scopes of {parent} (no decision set another)");
        }
        _ => {}
    }
    if let Some((classes, decision)) = &scope.classes {
        let list: Vec<String> = classes.iter().map(|c| format!("{} weight {}", c.name, c.weight)).collect();
        let _ = writeln!(
            out,
            "priority classes (decision #{decision}): {}; a job that names none is in class default",
            list.join(", ")
        );
    }
    match &scope.mandate {
        Some(m) => {
            let state = if now_ms >= m.expires_ms { "expired" } else { "in force" };
            let _ = writeln!(
                out,
                "mandate from entry #{} ({state}): budget {}, {} spent, {} held by running jobs, {} left; {} jobs",
                m.decision, m.mandate.budget, m.spent.0, m.held.0, m.left.0, m.jobs
            );
        }
        None => out.push_str("mandate: none\n"),
    }
    out.push_str("members:\n");
    for (person, held) in &scope.members.items {
        let _ = writeln!(out, "    {} ({}): {}", name(person), person.key.short(), standing_list(held));
    }
    if scope.members.next.is_some() {
        out.push_str("    … and more\n");
    }
    if !scope.workers.is_empty() {
        let workers: Vec<String> = scope.workers.iter().map(|key| key.short()).collect();
        let _ = writeln!(out, "workers: {}", workers.join(", "));
    }
    out
}

pub fn positions(positions: &PositionsView) -> String {
    let mut out = format!(
        "{:<16} {:>12} {:>12} {:>12} {:>12}\n",
        "scope", "position", "reserved", "credit line", "available"
    );
    for a in &positions.accounts {
        let _ = writeln!(
            out,
            "{:<16} {:>12} {:>12} {:>12} {:>12}",
            a.scope.as_str(),
            a.position,
            a.reserved,
            a.limit,
            a.available
        );
    }
    let sum: i64 = positions.accounts.iter().map(|a| a.position).sum();
    let _ = writeln!(out, "sum of positions: {sum}");
    if !positions.obligations.is_empty() {
        out.push_str("owed:\n");
        for o in &positions.obligations {
            let _ = writeln!(out, "  {} owes {} {}", o.debtor, o.creditor, o.amount);
        }
    }
    out
}

pub fn workers(workers: &[WorkerView]) -> String {
    let mut out = format!(
        "{:<10} {:<12} {:<10} {:>6} {:>7} {:>6} {:>8} {:>6}  state\n",
        "worker", "owner", "connected", "slots", "agreed", "wrong", "missed", "trust"
    );
    for w in workers {
        let owner = w.owner.as_ref().map_or("(removed)".to_string(), ToString::to_string);
        let state = match (w.quarantined, w.draining) {
            (true, _) => "quarantined until a decision readmits it",
            (false, true) => "draining: no new tasks; it stops once what it runs has ended",
            (false, false) => "",
        };
        let line = format!(
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
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// `icn jobs`: one line a job, newest first, with a 12-digit id any command accepts.
pub fn jobs(jobs: &[icn_protocol::wire::JobSummary], now_ms: u64) -> String {
    let mut out = format!(
        "{:<12}  {:<9}  {:<12}  {:<16}  {:>8}  detail\n",
        "job", "state", "scope", "submitter", "age"
    );
    for j in jobs {
        let detail = match (&j.waiting, &j.failure) {
            (Some(waiting), _) => waiting.to_string(),
            (None, Some(failure)) => failure.clone(),
            (None, None) => String::new(),
        };
        let submitter = j.submitter.name.clone().unwrap_or_else(|| j.submitter.key.short());
        let line = format!(
            "{:<12}  {:<9}  {:<12}  {:<16}  {:>8}  {detail}",
            &j.job.to_string()[..12],
            j.state.name(),
            j.scope.to_string(),
            submitter,
            age(now_ms.saturating_sub(j.submitted_ms))
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// `icn queue`: one line a scope, in the order fair share serves them now.
pub fn queue(queue: &icn_protocol::views::QueueView) -> String {
    let mut out = format!(
        "{} slots, {} free; recent use halves every {}\n",
        queue.slots,
        queue.free_slots,
        age(queue.half_life_ms)
    );
    if queue.scopes.is_empty() {
        out.push_str("nothing waits or runs\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<16} {:>6}  {:<14} {:>6} {:>12} {:>8} {:>8}",
        "scope", "weight", "set by", "share", "recent use", "running", "waiting"
    );
    for s in &queue.scopes {
        let _ = writeln!(
            out,
            "{:<16} {:>6}  {:<14} {:>5.1}% {:>12} {:>8} {:>8}",
            s.scope.to_string(),
            s.weight,
            s.decision.map_or("default".to_string(), |d| format!("decision #{d}")),
            s.share * 100.0,
            format!("{:.1} slot-s", s.recent_ms as f64 / 1000.0),
            s.running,
            s.waiting
        );
        for c in &s.classes {
            let _ = writeln!(
                out,
                "  class {:<10} {:>6}  {:<14} {:>6} {:>12} {:>8} {:>8}",
                c.name,
                c.weight,
                "",
                "",
                format!("{:.1} slot-s", c.recent_ms as f64 / 1000.0),
                "",
                c.waiting
            );
        }
    }
    match queue.scopes.first().filter(|s| s.waiting > 0) {
        Some(next) => {
            let _ = writeln!(
                out,
                "next: {}, whose recent use is the lowest against its share; weights are set by decisions \
                 of the parent scope (icn propose ... share --for SCOPE --weight N)",
                next.scope
            );
        }
        None => out.push_str("nothing waits\n"),
    }
    out
}

/// Open proposals and past decisions, as `icn decisions --json` prints them.
#[derive(serde::Serialize)]
pub struct Decisions {
    pub open: Vec<icn_protocol::views::ProposalView>,
    pub decided: Vec<icn_protocol::views::DecisionView>,
}

/// A duration in the largest unit that keeps it readable: 42s, 7m, 3h, 2d.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..86_400 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A whole number with its thousands set apart: 1,000,000,000 and -12,345.
/// An amount of credits in words: "1 credit", "12,500 credits".
pub fn credits(c: icn_protocol::governance::Credits) -> String {
    let unit = if c.0.unsigned_abs() == 1 { "credit" } else { "credits" };
    format!("{} {unit}", thousands(c.0))
}

pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Parses a duration as `--since` takes it: a number and a unit (s, m, h or d).
pub fn parse_duration_ms(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let number: u64 = number.parse().map_err(|_| {
        anyhow::anyhow!("{text:?} is not a duration; write a number and a unit, such as 30m, 2h or 1d")
    })?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => anyhow::bail!("{text:?} has no unit the duration takes; use s, m, h or d (for example 2h)"),
    };
    Ok(number.saturating_mul(unit_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_and_bad_ones_say_how_to_write_them() {
        assert_eq!(parse_duration_ms("30m").unwrap(), 1_800_000);
        assert_eq!(parse_duration_ms("2h").unwrap(), 7_200_000);
        assert_eq!(parse_duration_ms("1d").unwrap(), 86_400_000);
        let grouped: Vec<String> = [0, 999, 1_000, -12_345, 1_000_000_000, i64::MIN].map(thousands).into();
        assert_eq!(grouped, ["0", "999", "1,000", "-12,345", "1,000,000,000", "-9,223,372,036,854,775,808"]);
        assert_eq!(parse_duration_ms("45s").unwrap(), 45_000);
        let no_unit = parse_duration_ms("90").unwrap_err().to_string();
        assert!(no_unit.contains("use s, m, h or d"), "{no_unit}");
        let no_number = parse_duration_ms("soon").unwrap_err().to_string();
        assert!(no_number.contains("\"soon\" is not a duration"), "{no_number}");
        assert_eq!(
            (age(59_999), age(60_000), age(7_200_000), age(172_800_000)),
            ("59s".into(), "1m".into(), "2h".into(), "2d".into())
        );
    }
}

#[cfg(test)]
mod snapshots {
    use icn_protocol::governance::ScopeId;
    use icn_protocol::views::Person;
    use icn_protocol::wire::{ExecutorKind, JobState, JobSummary, Waiting};
    use icn_protocol::{ContentId, JobId, PublicKey};

    /// `icn queue` as members read it: two federations sharing scarce slots 3 to 1 by a
    /// decision, and a scope with nothing waiting.
    #[test]
    fn the_queue_table() {
        use icn_protocol::views::{ClassQueue, QueueView, ScopeQueue};
        let line = |scope: &str, weight, decision, share, recent_ms, running, waiting| ScopeQueue {
            scope: scope.parse().unwrap(),
            weight,
            decision,
            share,
            recent_ms,
            running,
            waiting,
            classes: vec![],
        };
        let queue = QueueView {
            slots: 12,
            free_slots: 0,
            half_life_ms: 3_600_000,
            scopes: vec![
                ScopeQueue {
                    classes: vec![
                        ClassQueue { name: "urgent".into(), weight: 3, recent_ms: 61_000, waiting: 20 },
                        ClassQueue { name: "batch".into(), weight: 1, recent_ms: 20_250, waiting: 100 },
                    ],
                    ..line("fed-north", 3, Some(42), 0.6, 81_250, 8, 120)
                },
                line("fed-south", 1, None, 0.2, 26_000, 3, 40),
                line("fed-east", 1, None, 0.2, 9_500, 1, 0),
            ],
        };
        insta::assert_snapshot!(super::queue(&queue));
        let idle = QueueView { slots: 12, free_slots: 12, half_life_ms: 600_000, scopes: vec![] };
        insta::assert_snapshot!(super::queue(&idle));
    }

    /// `icn jobs` as members read it, and every reason a job can wait, in words.
    #[test]
    fn the_jobs_table_and_the_waiting_sentences() {
        let now_ms = 10 * 86_400_000;
        let fed: ScopeId = "fed-north".parse().unwrap();
        let ana = Person { key: PublicKey([7; 32]), name: Some("ana".into()) };
        let summary = |seed: &[u8], state, ago_ms, waiting, failure: Option<&str>| JobSummary {
            job: JobId(ContentId::of(seed)),
            scope: fed.clone(),
            submitter: ana.clone(),
            submitted_ms: now_ms - ago_ms,
            state,
            waiting,
            failure: failure.map(str::to_string),
        };
        let jobs = [
            summary(
                b"big",
                JobState::Queued,
                42_000,
                Some(Waiting::NoMemory { asked_bytes: 1 << 29, largest_bytes: 1 << 28 }),
                None,
            ),
            summary(
                b"busy",
                JobState::Queued,
                7 * 60_000,
                Some(Waiting::SlotsBusy { slots: 12, ahead: 3, scope: fed.clone() }),
                None,
            ),
            summary(b"cancelled", JobState::Cancelled, 3 * 3_600_000, None, Some("cancelled by ana")),
            summary(b"done", JobState::Completed, 2 * 86_400_000, None, None),
        ];
        insta::assert_snapshot!(super::jobs(&jobs, now_ms));
        let sentences = [
            Waiting::NoExecutor { executor: ExecutorKind::Container },
            Waiting::NoMemory { asked_bytes: 1 << 30, largest_bytes: 1 << 28 },
            Waiting::TooFewCooperatives { replicas: 2, cooperatives: 1 },
            Waiting::TooFewCooperatives { replicas: 3, cooperatives: 2 },
            Waiting::SlotsBusy { slots: 12, ahead: 3, scope: fed },
        ];
        insta::assert_snapshot!(sentences.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
    }
}
