//! Provenance: from a job back through the mandate that authorized it to the decision,
//! its proposal, the ballots and the standing their members held, and the rule that
//! counted them; or from a decision forward to every job it authorized. Built from the
//! journal alone, so anyone holding the file can check it.

use std::fmt;

use icn_governance::{Event, Governance, Tally};
use icn_protocol::governance::{Ballot, Choice, Credits, Rule, ScopeId, Standing};
use icn_protocol::wire::Submission;
use icn_protocol::{ContentId, JobId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::chain::{BadEntry, Entry};
use crate::record::Record;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// One journal entry in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub seq: u64,
    pub time_ms: u64,
    pub cause: Option<u64>,
    pub signer: Person,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTrace {
    pub job: JobId,
    pub scope: ScopeId,
    pub submitter: Person,
    pub hold: Credits,
    pub entries: Vec<Line>,
    /// What moved in the ledger for this job, in words, each naming its entry.
    pub money: Vec<String>,
}

/// One entry of a scope's account statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct Statement {
    pub scope: ScopeId,
    pub lines: Vec<StatementLine>,
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
pub struct BallotTrace {
    pub seq: u64,
    pub time_ms: u64,
    pub voter: Person,
    pub choice: Choice,
    /// The standing the voter held in the scope as the ballot was cast.
    pub standing: Vec<Standing>,
    /// Whether this ballot was counted (a later one from the same voter replaces it).
    pub counted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct Authority {
    pub decision: u64,
    pub founding: bool,
    pub time_ms: u64,
    pub scope: ScopeId,
    pub effect: String,
    pub proposal: Option<ProposalTrace>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizedJob {
    pub seq: u64,
    pub job: JobId,
    pub submitter: Person,
    pub hold: Credits,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    pub job: Option<JobTrace>,
    pub authority: Authority,
    /// For a decision's trace: every job submitted under it.
    pub authorized_jobs: Vec<AuthorizedJob>,
}

/// The journal read once, with the governance it records, for tracing.
pub struct Provenance {
    entries: Vec<Entry>,
    records: Vec<Record>,
    governance: Governance,
}

impl Provenance {
    pub fn new(entries: Vec<Entry>) -> Result<Provenance, BadEntry> {
        let mut governance = Governance::default();
        let mut records = Vec::with_capacity(entries.len());
        for entry in &entries {
            let record = entry.decode_record()?;
            if let Record::Governance(event) = &record {
                governance.apply(entry.seq, entry.time_ms, event);
            }
            records.push(record);
        }
        Ok(Provenance { entries, records, governance })
    }

    fn person(&self, key: &PublicKey) -> Person {
        Person { key: *key, name: self.governance.member_name(key).map(str::to_string) }
    }

    fn line(&self, seq: u64) -> Line {
        let entry = &self.entries[seq as usize];
        let record = &self.records[seq as usize];
        Line {
            seq,
            time_ms: entry.time_ms,
            cause: entry.cause,
            signer: self.person(&entry.signer),
            text: self.describe(record),
        }
    }

    /// A record in words, with members' names where the journal knows them.
    fn describe(&self, record: &Record) -> String {
        let mut named = record.describe();
        for (key, name) in &self.governance.members {
            named = named.replace(&key.short(), name);
        }
        named
    }

    pub fn job(&self, job: &JobId) -> Result<Trace, String> {
        let mut lines = vec![];
        let mut submitted = None;
        for (seq, record) in self.records.iter().enumerate() {
            if record.job() == Some(*job) {
                if let Record::JobSubmitted { submission, authorization } = record {
                    submitted = Some((submission, *authorization));
                }
                lines.push(self.line(seq as u64));
            }
        }
        let Some((envelope, authorization)) = submitted else {
            return Err(format!("job {job} is not in this journal"));
        };
        let submission: Submission = envelope.open_trusted().map_err(|e| e.to_string())?;
        let mut money = vec![];
        for line in &lines {
            match &self.records[line.seq as usize] {
                Record::JobSubmitted { .. } if authorization.hold.0 > 0 => money.push(format!(
                    "#{}: reserved up to {} of {}'s credit",
                    line.seq, authorization.hold, submission.scope
                )),
                Record::JobCompleted { payees, .. } => {
                    let paid: Vec<String> = payees.iter().map(|(p, c)| format!("{c} to {p}")).collect();
                    money.push(format!(
                        "#{} (caused by entry #{}, which accepted the result): {} paid {}; the rest of the hold was released",
                        line.seq,
                        line.cause.unwrap_or_default(),
                        submission.scope,
                        if paid.is_empty() { "nothing".to_string() } else { paid.join(", ") }
                    ))
                }
                Record::JobFailed { .. } if authorization.hold.0 > 0 => {
                    money.push(format!("#{}: the reservation was voided; nobody paid", line.seq))
                }
                _ => {}
            }
        }
        Ok(Trace {
            job: Some(JobTrace {
                job: *job,
                scope: submission.scope,
                submitter: self.person(&envelope.signer),
                hold: authorization.hold,
                entries: lines,
                money,
            }),
            authority: self.authority(authorization.decision)?,
            authorized_jobs: vec![],
        })
    }

    /// Every entry that moved or held `scope`'s account, with the decision behind it.
    pub fn statement(&self, scope: &ScopeId) -> Result<Statement, String> {
        if !self.governance.scopes.contains_key(scope) {
            return Err(format!("scope {scope} does not exist"));
        }
        let mut jobs: std::collections::HashMap<JobId, (ScopeId, icn_governance::Authorization)> =
            std::collections::HashMap::new();
        let mut position = 0i64;
        let mut lines = vec![];
        for (seq, record) in self.records.iter().enumerate() {
            let (change, text, decision) = match record {
                Record::JobSubmitted { submission, authorization } => {
                    let Ok(s) = submission.open_trusted::<Submission>() else { continue };
                    let job = JobId(submission.id());
                    jobs.insert(job, (s.scope.clone(), *authorization));
                    if s.scope != *scope || authorization.hold.0 == 0 {
                        continue;
                    }
                    (
                        0,
                        format!("held up to {} for job {}", authorization.hold, job.0.short()),
                        Some(authorization.decision),
                    )
                }
                Record::JobCompleted { job, payees, .. } => {
                    let Some((payer, authorization)) = jobs.get(job) else { continue };
                    let paid_out: i64 = payees.iter().filter(|(p, _)| p != payer).map(|(_, c)| c.0).sum();
                    let earned: i64 = payees.iter().filter(|(p, _)| p == scope).map(|(_, c)| c.0).sum();
                    let others: Vec<String> = payees
                        .iter()
                        .filter(|(p, _)| p != payer)
                        .map(|(p, c)| format!("{} to {p}", c.0))
                        .collect();
                    let text = |other: &str| format!("job {}: {other}", job.0.short());
                    if payer == scope {
                        // Paying its own cooperative moves nothing.
                        let change = -paid_out;
                        let what = if others.is_empty() {
                            "paid its own cooperative".to_string()
                        } else {
                            format!("paid {} for the accepted result", others.join(", "))
                        };
                        (change, text(&what), Some(authorization.decision))
                    } else if earned > 0 {
                        (
                            earned,
                            text(&format!("earned from {payer} for an accepted result")),
                            Some(authorization.decision),
                        )
                    } else {
                        continue;
                    }
                }
                Record::JobFailed { job, .. } => match jobs.get(job) {
                    Some((payer, a)) if payer == scope && a.hold.0 > 0 => {
                        (0, format!("job {}: failed; its hold was released", job.0.short()), Some(a.decision))
                    }
                    _ => continue,
                },
                Record::Cleared { clearing, .. } => {
                    let touches = |o: &icn_ledger::Obligation| o.debtor == *scope || o.creditor == *scope;
                    if !clearing.before.iter().chain(&clearing.after).any(touches) {
                        continue;
                    }
                    let owed = |list: &[icn_ledger::Obligation]| -> String {
                        let mine: Vec<String> = list
                            .iter()
                            .filter(|o| touches(o))
                            .map(|o| format!("{} owes {} {}", o.debtor, o.creditor, o.amount.0))
                            .collect();
                        if mine.is_empty() { "nothing".into() } else { mine.join(", ") }
                    };
                    (
                        0,
                        format!("clearing: {} became {}", owed(&clearing.before), owed(&clearing.after)),
                        None,
                    )
                }
                _ => continue,
            };
            position += change;
            lines.push(StatementLine {
                seq: seq as u64,
                time_ms: self.entries[seq].time_ms,
                change: Credits(change),
                position: Credits(position),
                text,
                decision,
            });
        }
        Ok(Statement { scope: scope.clone(), lines })
    }

    pub fn decision(&self, decision: u64) -> Result<Trace, String> {
        let authority = self.authority(decision)?;
        let authorized_jobs = self
            .records
            .iter()
            .enumerate()
            .filter_map(|(seq, record)| match record {
                Record::JobSubmitted { submission, authorization } if authorization.decision == decision => {
                    Some(AuthorizedJob {
                        seq: seq as u64,
                        job: JobId(submission.id()),
                        submitter: self.person(&submission.signer),
                        hold: authorization.hold,
                    })
                }
                _ => None,
            })
            .collect();
        Ok(Trace { job: None, authority, authorized_jobs })
    }

    fn authority(&self, seq: u64) -> Result<Authority, String> {
        if self.governance.genesis == Some(seq) {
            let Some(Record::Governance(Event::Genesis(genesis))) = self.records.get(seq as usize) else {
                return Err(format!("entry {seq} is not the genesis"));
            };
            let mandates: Vec<String> = genesis
                .mandates
                .iter()
                .map(|m| {
                    let effect = icn_protocol::governance::Effect::Mandate(m.clone());
                    self.governance.describe_effect(&m.scope, &effect)
                })
                .collect();
            return Ok(Authority {
                decision: seq,
                founding: true,
                time_ms: self.entries[seq as usize].time_ms,
                scope: genesis.mandates.first().map(|m| m.scope.clone()).unwrap_or_else(|| {
                    genesis.scopes.iter().find(|s| s.parent.is_none()).expect("validated").id.clone()
                }),
                effect: format!("founding mandates of the genesis: {}", mandates.join("; ")),
                proposal: None,
            });
        }
        let decision =
            self.governance.decisions.get(&seq).ok_or_else(|| format!("entry {seq} is not a decision"))?;
        let record = &decision.record;
        let proposal = &decision.proposal;
        let mut ballots = vec![];
        for (index, other) in self.records.iter().enumerate() {
            let Record::Governance(Event::BallotCast { ballot, standing }) = other else { continue };
            let Ok(decoded) = ballot.open_trusted::<Ballot>() else { continue };
            if decoded.proposal != decision.proposal_id {
                continue;
            }
            ballots.push(BallotTrace {
                seq: index as u64,
                time_ms: self.entries[index].time_ms,
                voter: self.person(&ballot.signer),
                choice: decoded.choice,
                standing: standing.clone(),
                counted: record.ballots.contains(&(index as u64)),
            });
        }
        Ok(Authority {
            decision: seq,
            founding: false,
            time_ms: decision.decided_ms,
            scope: proposal.scope.clone(),
            effect: self.governance.describe_effect(&proposal.scope, &proposal.effect),
            proposal: Some(ProposalTrace {
                seq: decision.proposal_seq,
                id: decision.proposal_id,
                title: proposal.title.clone(),
                proposer: self.person(&decision.proposer),
                closes_ms: match self.records.get(decision.proposal_seq as usize) {
                    Some(Record::Governance(Event::ProposalOpened { closes_ms, .. })) => *closes_ms,
                    _ => decision.decided_ms,
                },
                rule: record.rule,
                tally: record.tally,
                accepted: record.accepted,
                reason: record.reason.clone(),
                ballots_digest: record.ballots_digest,
                ballots,
            }),
        })
    }
}

/// A journal time (ms since the Unix epoch) as UTC, to the second.
pub fn when(time_ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(time_ms);
    humantime::format_rfc3339_seconds(time).to_string()
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
