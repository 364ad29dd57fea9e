//! What members see: typed views of jobs, governance, the ledger and workers, and the
//! traces that tie them together. Every adapter of the member API (QUIC, HTTP) carries
//! these; clients render them. Lists that grow with the commons come in pages.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::governance::{
    Choice, Credits, Effect, Mandate, PlacementPolicy, PriceSchedule, Rule, ScopeId, ScopeKind, Standing,
    Tally, Trust,
};
use crate::identity::PublicKey;
use crate::ids::{ContentId, JobId};

/// Items one page holds at most, and by default.
pub const PAGE_ITEMS_MAX: u32 = 500;
pub const PAGE_ITEMS_DEFAULT: u32 = 100;

/// Which page of a list: the items after the cursor `after` (a position the previous
/// page gave as `next`), at most `limit` of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page {
    pub after: Option<u64>,
    pub limit: Option<u32>,
}

impl Page {
    pub fn first(limit: u32) -> Page {
        Page { after: None, limit: Some(limit) }
    }

    /// The number of items to give, within [`PAGE_ITEMS_MAX`].
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(PAGE_ITEMS_DEFAULT).clamp(1, PAGE_ITEMS_MAX) as usize
    }
}

/// One page of a list, and the cursor of the next page when there is more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next: Option<u64>,
}

impl<T> Paged<T> {
    /// Pages `items` (in cursor order, each with its cursor): those after `page.after`,
    /// at most `page.limit()`, and the cursor to ask for the rest with.
    pub fn of(items: impl IntoIterator<Item = (u64, T)>, page: &Page) -> Paged<T> {
        let limit = page.limit();
        let mut out = Vec::new();
        let mut last = None;
        for (cursor, item) in
            items.into_iter().filter(|(cursor, _)| page.after.is_none_or(|after| *cursor > after))
        {
            if out.len() == limit {
                return Paged { items: out, next: last };
            }
            last = Some(cursor);
            out.push(item);
        }
        Paged { items: out, next: None }
    }
}

/// A member, or any key, with the name the commons knows them by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Person {
    pub key: PublicKey,
    pub name: Option<String>,
}

impl fmt::Display for Person {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name} ({})", self.key.short()),
            None => write!(f, "{}", self.key.short()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberView {
    pub person: Person,
    /// The standing held, by scope.
    /// Pairs of a scope and the standing held there.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<Value>>))]
    pub standing: Vec<(ScopeId, Vec<Standing>)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MandateView {
    /// The entry that granted it: a decision, or the genesis.
    pub decision: u64,
    pub mandate: Mandate,
    pub granted_ms: u64,
    pub expires_ms: u64,
    pub held: Credits,
    pub spent: Credits,
    pub left: Credits,
    pub jobs: u64,
}

/// A scope in a list: where it sits and how many hold standing in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScopeSummary {
    pub id: ScopeId,
    pub kind: ScopeKind,
    pub parent: Option<ScopeId>,
    pub members: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScopeView {
    pub id: ScopeId,
    pub kind: ScopeKind,
    pub parent: Option<ScopeId>,
    pub rule: Rule,
    /// The prices in force: the scope's own or its nearest ancestor's.
    pub prices: PriceSchedule,
    /// The placement policy in force, if any scope on its line decided one.
    pub policy: Option<PlacementPolicy>,
    pub mandate: Option<MandateView>,
    pub account: Option<AccountView>,
    /// Members with standing here, a page of them.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub members: Paged<(Person, Vec<Standing>)>,
    /// Admitted workers this scope owns.
    pub workers: Vec<PublicKey>,
    /// Its fair-share weight among its siblings, and the decision that set it (none: 1).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Value>))]
    pub share: (u32, Option<u64>),
    /// The priority classes its jobs are divided into, and the decision that set them.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Value>>))]
    pub classes: Option<(Vec<crate::governance::PriorityClass>, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProposalView {
    pub id: ContentId,
    /// Its journal entry.
    pub seq: u64,
    pub scope: ScopeId,
    pub title: String,
    pub effect: Effect,
    /// The effect in plain words.
    pub effect_text: String,
    pub proposer: Person,
    pub opened_ms: u64,
    pub closes_ms: u64,
    pub rule: Rule,
    /// The ballots that stand now (each member's last).
    pub tally: Tally,
    /// Each voter's standing ballot.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<Value>>))]
    pub ballots: Vec<(Person, Choice)>,
    /// The reasons voters gave with their standing ballots.
    pub reasons: Vec<Reason>,
    /// The decision entry once voting closed.
    pub decision: Option<u64>,
}

/// Why a voter voted as they did, in their words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reason {
    pub voter: Person,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecisionView {
    pub seq: u64,
    pub proposal: ContentId,
    pub proposal_seq: u64,
    pub scope: ScopeId,
    pub title: String,
    pub effect: Effect,
    pub effect_text: String,
    pub proposer: Person,
    pub decided_ms: u64,
    pub accepted: bool,
    pub tally: Tally,
    pub rule: Rule,
    /// The count in words: quorum and approval, met or not.
    pub reason: String,
    /// Set when accepted but the effect could not apply at close; nothing changed.
    pub effect_refused: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountView {
    pub scope: ScopeId,
    pub position: i64,
    pub reserved: i64,
    pub limit: i64,
    pub available: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObligationView {
    pub debtor: ScopeId,
    pub creditor: ScopeId,
    pub amount: Credits,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PositionsView {
    pub accounts: Vec<AccountView>,
    pub obligations: Vec<ObligationView>,
}

impl PositionsView {
    pub fn account(&self, scope: &ScopeId) -> Option<&AccountView> {
        self.accounts.iter().find(|a| a.scope == *scope)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClearingView {
    pub federation: ScopeId,
    pub before: Vec<ObligationView>,
    pub after: Vec<ObligationView>,
}

/// A worker as `icn workers` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerView {
    pub key: PublicKey,
    /// None once a decision removed it.
    pub owner: Option<ScopeId>,
    pub connected: bool,
    pub slots: u32,
    pub free_slots: u32,
    pub trust: Trust,
    pub trust_lower_bound: f64,
    pub quarantined: bool,
    /// Its owner is taking it out of service: it finishes what it runs and gets no new task.
    #[serde(default)]
    pub draining: bool,
}

/// One journal entry in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Line {
    pub seq: u64,
    pub time_ms: u64,
    pub cause: Option<u64>,
    pub signer: Person,
    pub text: String,
}

/// One journal entry as a member can check it: what it says, who signed it, its hash
/// and the hash it links to, and the coordinator's seal that vouches for it (the seal of
/// the last entry of its batch, which the hash chain ties back to this one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntryView {
    pub line: Line,
    pub prev_hash: ContentId,
    pub hash: ContentId,
    pub seal: Option<crate::Seal>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobTrace {
    pub job: JobId,
    pub scope: ScopeId,
    pub submitter: Person,
    pub hold: Credits,
    pub entries: Vec<Line>,
    /// What moved in the ledger for this job, in words, each naming its entry.
    pub money: Vec<String>,
    /// What ordered the job in the queue: its scope's fair-share weight and the decision
    /// that set it, as of its first placement.
    pub order: Option<String>,
}

/// How the shared queue stands: the slots of the workers out of quarantine, and every
/// scope with jobs waiting or running, in the order fair share serves them now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueView {
    pub slots: u64,
    pub free_slots: u64,
    /// Recent usage halves every this long.
    pub half_life_ms: u64,
    pub scopes: Vec<ScopeQueue>,
}

/// One scope in the queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScopeQueue {
    pub scope: ScopeId,
    /// Its weight among the scopes beside it; 1 unless a decision set another.
    pub weight: u32,
    /// The decision of the parent scope that set the weight.
    pub decision: Option<u64>,
    /// Its share of the slots among the scopes active now, from 0 to 1.
    pub share: f64,
    /// Slot time it used recently, decayed, in milliseconds.
    pub recent_ms: u64,
    pub running: u64,
    pub waiting: u64,
    /// Its priority classes with jobs waiting, when it decided any.
    pub classes: Vec<ClassQueue>,
}

/// One priority class of a scope in the queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassQueue {
    pub name: String,
    pub weight: u32,
    /// Slot time its jobs used recently, decayed, in milliseconds.
    pub recent_ms: u64,
    pub waiting: u64,
}

/// One entry of a scope's account statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatementLine {
    pub seq: u64,
    pub time_ms: u64,
    /// How the posted position moved (0 for holds, releases and clearing).
    pub change: Credits,
    /// The position after this entry.
    pub position: Credits,
    pub text: String,
    /// The decision that authorized what moved, if any.
    pub decision: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Statement {
    pub scope: ScopeId,
    pub lines: Vec<StatementLine>,
    /// The cursor of the next page, when there are more lines.
    pub next: Option<u64>,
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "statement of {}", self.scope)?;
        for line in &self.lines {
            let decision = line.decision.map_or(String::new(), |d| format!(" (under decision #{d})"));
            writeln!(
                f,
                "  #{:<6} {} {:>+10} -> {:>10}  {}{decision}",
                line.seq,
                when(line.time_ms),
                line.change.0,
                line.position.0,
                line.text
            )?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BallotTrace {
    pub seq: u64,
    pub time_ms: u64,
    pub voter: Person,
    pub choice: Choice,
    /// The standing the voter held in the scope as the ballot was cast.
    pub standing: Vec<Standing>,
    /// Whether this ballot was counted (a later one from the same voter replaces it).
    pub counted: bool,
    /// Why, in the voter's words, when they said.
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProposalTrace {
    pub seq: u64,
    pub id: ContentId,
    pub title: String,
    pub proposer: Person,
    pub closes_ms: u64,
    pub rule: Rule,
    pub tally: Tally,
    pub accepted: bool,
    pub reason: String,
    pub ballots_digest: ContentId,
    pub ballots: Vec<BallotTrace>,
}

/// The entry that gave authority: a decision, or the genesis for founding mandates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Authority {
    pub decision: u64,
    pub founding: bool,
    pub time_ms: u64,
    pub scope: ScopeId,
    pub effect: String,
    pub proposal: Option<ProposalTrace>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthorizedJob {
    pub seq: u64,
    pub job: JobId,
    pub submitter: Person,
    pub hold: Credits,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trace {
    pub job: Option<JobTrace>,
    pub authority: Authority,
    /// For a decision's trace: jobs submitted under it, a page of them.
    pub authorized_jobs: Vec<AuthorizedJob>,
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(job) = &self.job {
            writeln!(f, "job {}", job.job)?;
            writeln!(
                f,
                "  submitted by {} for scope {}, holding up to {} of its mandate",
                job.submitter, job.scope, job.hold
            )?;
            writeln!(f, "  what happened, entry by entry (each names the entry that caused it):")?;
            for line in &job.entries {
                let cause = line.cause.map_or("-".to_string(), |c| format!("#{c}"));
                writeln!(
                    f,
                    "    #{:<5} cause {:<6} signed by {}: {}",
                    line.seq, cause, line.signer, line.text
                )?;
            }
            if let Some(order) = &job.order {
                writeln!(f, "  its place in the queue: {order}")?;
            }
            writeln!(f)?;
        }
        let a = &self.authority;
        if a.founding {
            writeln!(f, "authorized by the genesis, entry #{}: {}", a.decision, a.effect)?;
        } else {
            writeln!(
                f,
                "authorized by decision #{} of scope {} at {}: {}",
                a.decision,
                a.scope,
                when(a.time_ms),
                a.effect
            )?;
        }
        if let Some(p) = &a.proposal {
            writeln!(
                f,
                "  proposal #{} {:?} by {}, voting open until {}",
                p.seq,
                p.title,
                p.proposer,
                when(p.closes_ms)
            )?;
            writeln!(
                f,
                "  counted under the rule of {}: quorum {} of the {} members with vote standing, approval {} of yes-or-no ballots",
                a.scope, p.rule.quorum, p.tally.electorate, p.rule.approval
            )?;
            for b in &p.ballots {
                let standing: Vec<String> = b.standing.iter().map(ToString::to_string).collect();
                writeln!(
                    f,
                    "    ballot #{:<5} {} {} voted {}, holding {} standing in {}{}",
                    b.seq,
                    when(b.time_ms),
                    b.voter,
                    b.choice,
                    standing.join(", "),
                    a.scope,
                    if b.counted { "" } else { " (replaced by a later ballot)" }
                )?;
                if let Some(reason) = &b.reason {
                    writeln!(f, "      because: {reason}")?;
                }
            }
            writeln!(f, "  {}", p.reason)?;
            writeln!(f, "  ballots digest {}", p.ballots_digest)?;
        }
        if let Some(job) = &self.job
            && !job.money.is_empty()
        {
            writeln!(f, "what it cost:")?;
            for line in &job.money {
                writeln!(f, "  {line}")?;
            }
        }
        if self.job.is_none() {
            writeln!(f, "jobs authorized: {}", self.authorized_jobs.len())?;
            for job in &self.authorized_jobs {
                writeln!(
                    f,
                    "  #{:<5} job {} by {}, holding up to {}",
                    job.seq,
                    job.job.0.short(),
                    job.submitter,
                    job.hold
                )?;
            }
        }
        Ok(())
    }
}

/// A journal time (ms since the Unix epoch) as UTC, to the second. RFC 3339 ends with
/// the year 9999; a later time, which only a broken or hostile peer sends, is written as
/// its milliseconds (humantime's `Display` fails on it, and `to_string` then panicked).
pub fn when(time_ms: u64) -> String {
    use std::fmt::Write;
    let time = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(time_ms));
    let mut text = String::new();
    match time.map(|time| write!(text, "{}", humantime::format_rfc3339_seconds(time))) {
        Some(Ok(())) => text,
        _ => format!("{time_ms} ms after the Unix epoch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_their_cursor_and_end_without_one() {
        let items = || (10..25u64).map(|cursor| (cursor, cursor * 2));
        let first = Paged::of(items(), &Page::first(6));
        assert_eq!(first.items, vec![20, 22, 24, 26, 28, 30]);
        assert_eq!(first.next, Some(15));
        let second = Paged::of(items(), &Page { after: first.next, limit: Some(6) });
        assert_eq!(second.items, vec![32, 34, 36, 38, 40, 42]);
        let third = Paged::of(items(), &Page { after: second.next, limit: Some(6) });
        assert_eq!((third.items, third.next), (vec![44, 46, 48], None));
        // Exactly a page left: no cursor, as nothing follows.
        let exact = Paged::of(items(), &Page { after: Some(18), limit: Some(6) });
        assert_eq!((exact.items.len(), exact.next), (6, None));
    }

    /// Found by the fuzz targets `json` and `answer`: a statement line or a trace with a
    /// time past the year 9999 panicked when shown (`icn statement`, `icn trace`, the
    /// member page), since humantime refuses to write it.
    #[test]
    fn a_time_past_the_year_9999_is_shown_not_a_panic() {
        assert_eq!(when(253_402_300_799_000), "9999-12-31T23:59:59Z");
        assert_eq!(when(253_402_300_800_000), "253402300800000 ms after the Unix epoch");
        assert_eq!(when(u64::MAX), format!("{} ms after the Unix epoch", u64::MAX));
        let statement = Statement {
            scope: "fed-north".parse().unwrap(),
            lines: vec![StatementLine {
                seq: 9,
                time_ms: 253_402_300_800_000,
                change: Credits(-13),
                position: Credits(-13),
                text: "x".into(),
                decision: None,
            }],
            next: None,
        };
        assert!(statement.to_string().contains("253402300800000 ms after the Unix epoch"));
    }

    #[test]
    fn a_page_holds_at_least_one_and_at_most_the_maximum() {
        assert_eq!(Page { after: None, limit: Some(0) }.limit(), 1);
        assert_eq!(Page { after: None, limit: Some(u32::MAX) }.limit(), PAGE_ITEMS_MAX as usize);
        assert_eq!(Page::default().limit(), PAGE_ITEMS_DEFAULT as usize);
    }
}
