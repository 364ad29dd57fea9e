//! Provenance: from a job back through the mandate that authorized it to the decision,
//! its proposal, the ballots and the standing their members held, and the rule that
//! counted them; from a decision forward to the jobs it authorized; and a scope's
//! statement, each entry that moved or held its account. Read from the journal through
//! its index, touching only the entries a trace names, so a trace costs the same on the
//! millionth job as on the first.

use std::collections::BTreeMap;

use icn_governance::{DecisionRecord, Event, describe_effect};
use icn_protocol::governance::{Ballot, Credits, Effect, Proposal, ScopeId};
use icn_protocol::views::{
    Authority, AuthorizedJob, BallotTrace, JobTrace, Line, Page, Person, ProposalTrace, Statement,
    StatementLine, Trace,
};
use icn_protocol::wire::{ExecutionReport, JobState, JobView, Outcome, Submission};
use icn_protocol::{Envelope, JobId, PublicKey};

use crate::chain::Entry;
use crate::index::{IndexKey, IndexRow};
use crate::record::Record;

/// Entries a job's trace reads at most: its submission, placements, reports, verdicts.
pub const JOB_ENTRIES_MAX: usize = 1_024;

/// Share decisions about one scope a trace reads at a time, to find the one in force.
const SHARE_DECISIONS_PAGE: usize = 256;

/// Where provenance is read from: entries by number, and the index filed as they were
/// applied.
pub trait Source {
    fn entry(&self, seq: u64) -> Result<Entry, String>;

    /// Rows filed under `key` after entry `after`, at most `limit`, in entry order.
    fn indexed(&self, key: &IndexKey, after: Option<u64>, limit: usize) -> Result<Vec<IndexRow>, String>;

    /// The sum of the changes filed under a scope before entry `before`: its position then.
    fn position_before(&self, scope: &ScopeId, before: u64) -> Result<i64, String>;
}

pub struct Provenance<'a, S: Source> {
    source: &'a S,
    /// Members' names by key, as the commons knows them now.
    names: &'a BTreeMap<PublicKey, String>,
    /// When set, output digests in lines are shown blinded with this key
    /// ([`blinded_digest`]): for a member who may not read what the jobs made.
    blinding: Option<[u8; 32]>,
}

/// What a member who may not read a job's output is shown for its digest: a keyed hash of
/// the job and the digest. Equal outputs of one job give equal stand-ins, so agreement
/// and disagreement still show; without the key, a guess of the output cannot be
/// checked against it (a plain digest of a short or guessable output could be).
pub fn blinded_digest(
    key: &[u8; 32],
    job: &JobId,
    digest: &icn_protocol::ContentId,
) -> icn_protocol::ContentId {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(&job.0.0);
    hasher.update(&digest.0);
    icn_protocol::ContentId(*hasher.finalize().as_bytes())
}

impl<'a, S: Source> Provenance<'a, S> {
    pub fn new(source: &'a S, names: &'a BTreeMap<PublicKey, String>) -> Self {
        Provenance { source, names, blinding: None }
    }

    /// Lines show output digests blinded with `key` (see [`blinded_digest`]).
    pub fn blinded(self, key: Option<[u8; 32]>) -> Self {
        Provenance { blinding: key, ..self }
    }

    fn person(&self, key: &PublicKey) -> Person {
        Person { key: *key, name: self.names.get(key).cloned() }
    }

    fn name(&self, key: &PublicKey) -> String {
        self.names.get(key).cloned().unwrap_or_else(|| key.short())
    }

    fn read(&self, seq: u64) -> Result<(Entry, Record), String> {
        let entry = self.source.entry(seq)?;
        let record = entry.decode_record().map_err(|bad| bad.to_string())?;
        Ok((entry, record))
    }

    /// Entry `seq` in words, with its hash and link; the seal is the caller's to add.
    pub fn entry(&self, seq: u64) -> Result<icn_protocol::views::EntryView, String> {
        let (entry, record) = self.read(seq)?;
        Ok(icn_protocol::views::EntryView {
            line: self.line(&entry, &record),
            prev_hash: icn_protocol::ContentId(entry.prev_hash),
            hash: icn_protocol::ContentId(entry.hash),
            seal: None,
        })
    }

    fn line(&self, entry: &Entry, record: &Record) -> Line {
        Line {
            seq: entry.seq,
            time_ms: entry.time_ms,
            cause: entry.cause,
            signer: self.person(&entry.signer),
            text: self.describe(record),
        }
    }

    /// A record in words, with members' names where the commons knows them.
    fn describe(&self, record: &Record) -> String {
        let mut named = record.describe();
        for (key, name) in self.names {
            named = named.replace(&key.short(), name);
        }
        if let Some(key) = &self.blinding {
            let shown = match record {
                Record::ReportReceived { report } => {
                    report.open_trusted::<ExecutionReport>().ok().map(|r| (r.task.job, r.output_digest))
                }
                Record::JobCompleted { job, output_digest, .. } => Some((*job, *output_digest)),
                _ => None,
            };
            if let Some((job, digest)) = shown {
                let stand_in = format!("{} (blinded)", blinded_digest(key, &job, &digest).short());
                named = named.replace(&digest.short(), &stand_in);
            }
        }
        named
    }

    /// The submission entry of `job`: its signed envelope and authorization.
    fn submitted(&self, job: &JobId) -> Result<(u64, Envelope, icn_governance::Authorization), String> {
        let first = self.source.indexed(&IndexKey::Job(*job), None, 1)?;
        let seq = first.first().ok_or_else(|| format!("job {job} is not in this journal"))?.seq;
        match self.read(seq)? {
            (_, Record::JobSubmitted { submission, authorization }) => Ok((seq, submission, authorization)),
            _ => Err(format!("entry {seq}, the first about job {job}, is not its submission")),
        }
    }

    /// Every entry about `job`, in order: its submission and what followed, filed under
    /// its submission's sequence number (or, in journals from before that, under its id).
    fn job_rows(&self, job: &JobId) -> Result<Vec<IndexRow>, String> {
        let mut rows = self.source.indexed(&IndexKey::Job(*job), None, JOB_ENTRIES_MAX)?;
        if let Some(submitted) = rows.first().map(|r| r.seq) {
            rows.extend(self.source.indexed(&IndexKey::JobEntries(submitted), None, JOB_ENTRIES_MAX)?);
        }
        rows.sort_by_key(|r| r.seq);
        rows.dedup_by_key(|r| r.seq);
        rows.truncate(JOB_ENTRIES_MAX);
        Ok(rows)
    }

    pub fn job(&self, job: &JobId) -> Result<Trace, String> {
        let (_, envelope, authorization) = self.submitted(job)?;
        let submission: Submission = envelope.open_trusted().map_err(|e| e.to_string())?;
        let mut lines = vec![];
        let mut money = vec![];
        let mut first_placed = None;
        let (mut settled, mut cancelled_at) = (false, None);
        for row in self.job_rows(job)? {
            let (entry, record) = self.read(row.seq)?;
            let line = self.line(&entry, &record);
            if matches!(record, Record::JobCancelled { .. }) {
                cancelled_at = Some(line.seq);
            }
            match &record {
                Record::TaskPlaced { .. } if first_placed.is_none() => first_placed = Some(line.seq),
                Record::JobSubmitted { .. } if authorization.hold.0 > 0 => money.push(format!(
                    "#{}: reserved up to {} of {}'s credit",
                    line.seq, authorization.hold, submission.scope
                )),
                Record::JobCompleted { payees, .. } => {
                    money.push(format!(
                        "#{} (caused by entry #{}, which accepted the result): {} paid {}; the rest of the hold was released",
                        line.seq,
                        line.cause.unwrap_or_default(),
                        submission.scope,
                        crate::record::paid_list(payees)
                    ))
                }
                Record::JobFailedPaid { payees, .. } => {
                    money.push(format!(
                        "#{} (caused by entry #{}, which accepted the failure): the job failed by its own doing, \
                         so it pays for what it used: {} paid {}; the rest of the hold was released",
                        line.seq,
                        line.cause.unwrap_or_default(),
                        submission.scope,
                        crate::record::paid_list(payees)
                    ))
                }
                Record::JobCancelled { request } if authorization.hold.0 > 0 => money.push(format!(
                    "#{}: cancelled by {}; runs still going were told to stop",
                    line.seq,
                    self.person(&request.signer)
                )),
                Record::CancelSettled { fuel, payees, .. } if payees.is_empty() => {
                    settled = true;
                    money.push(format!(
                        "#{}: the stopped runs reported no usage ({fuel}), so nobody paid and the reservation was \
                         voided",
                        line.seq
                    ))
                }
                Record::CancelSettled { fuel, payees, .. } => {
                    settled = true;
                    money.push(format!(
                        "#{}: the runs the cancel stopped used {fuel} before they stopped, which is what ran: {} \
                         paid {}; the rest of the hold was released",
                        line.seq,
                        submission.scope,
                        crate::record::paid_list(payees)
                    ))
                }
                Record::JobFailed { .. } if authorization.hold.0 > 0 => money.push(format!(
                    "#{}: no worker could run the job to an accepted result, so the reservation was voided; \
                     nobody paid",
                    line.seq
                )),
                _ => {}
            }
            lines.push(line);
        }
        if let Some(seq) = cancelled_at.filter(|_| !settled && authorization.hold.0 > 0) {
            money.push(format!("#{seq}: nothing was running, so the reservation was voided and nobody paid"));
        }
        let class = submission.options.priority.as_deref().map_or(String::new(), |class| {
            format!("; inside {}, it waited in priority class {class}", submission.scope)
        });
        let order = first_placed
            .map(|placed| self.order(&submission.scope, placed).map(|order| format!("{order}{class}")))
            .transpose()?;
        Ok(Trace {
            job: Some(JobTrace {
                job: *job,
                scope: submission.scope,
                submitter: self.person(&envelope.signer),
                hold: authorization.hold,
                order,
                entries: lines,
                money,
            }),
            authority: self.authority(authorization.decision)?,
            authorized_jobs: vec![],
        })
    }

    /// What ordered a job of `scope` first placed at entry `placed`: the scope's
    /// fair-share weight then, and the decision that set it.
    fn order(&self, scope: &ScopeId, placed: u64) -> Result<String, String> {
        let rule = "when slots are scarce, the scope that used least against its share goes first";
        // The last share decision before the placement, read a page at a time.
        let key = IndexKey::Share(scope.clone());
        let (mut latest, mut after) = (None, None);
        loop {
            let rows = self.source.indexed(&key, after, SHARE_DECISIONS_PAGE)?;
            let before: Vec<u64> = rows.iter().map(|row| row.seq).filter(|seq| *seq < placed).collect();
            latest = before.last().copied().or(latest);
            if rows.len() < SHARE_DECISIONS_PAGE || before.len() < rows.len() {
                break;
            }
            after = latest;
        }
        let Some(decided) = latest else {
            return Ok(format!("{scope}'s fair share had weight 1, as no decision had set another; {rule}"));
        };
        let (decision, _) = self.read(decided)?;
        let opened = decision.cause.ok_or_else(|| format!("decision #{} names no proposal", decided))?;
        let (_, proposal) = self.read(opened)?;
        let Record::Governance(Event::ProposalOpened { proposal: envelope, .. }) = proposal else {
            return Err(format!("entry {opened}, the cause of decision #{}, is not a proposal", decided));
        };
        let proposal: Proposal = envelope.open_trusted().map_err(|e| e.to_string())?;
        let Effect::Share { weight, .. } = proposal.effect else {
            return Err(format!("decision #{} did not set a share", decided));
        };
        Ok(format!(
            "{scope}'s fair share had weight {weight} among the scopes of {}, set by decision #{}; {rule}",
            proposal.scope, decided
        ))
    }

    /// A job's view as its journal entries tell it: for a job the core no longer holds
    /// in memory (it ended and was forgotten). `None` when the journal has no such job.
    pub fn job_view(&self, job: &JobId) -> Result<Option<JobView>, String> {
        let rows = self.job_rows(job)?;
        if rows.is_empty() {
            return Ok(None);
        }
        // The first of a job's entries is its submission, which names its scope and signer.
        let Record::JobSubmitted { submission: submitted, .. } = self.read(rows[0].seq)?.1 else {
            return Err(format!("entry {}, the first about job {job}, is not its submission", rows[0].seq));
        };
        let submission = submitted.open_trusted::<Submission>().map_err(|e| e.to_string())?;
        let mut view = JobView {
            job: *job,
            scope: submission.scope,
            submitter: submitted.signer,
            state: JobState::Queued,
            attempts: 0,
            result: None,
            failure: None,
            waiting: None,
        };
        let mut reports: Vec<(PublicKey, ExecutionReport)> = vec![];
        for row in &rows[1..] {
            match self.read(row.seq)?.1 {
                Record::TaskPlaced { attempt, .. } => view.attempts = attempt,
                Record::ReportReceived { report } => {
                    let decoded = report.open_trusted::<ExecutionReport>().map_err(|e| e.to_string())?;
                    // A failure of the worker's own is retried, not judged: as the core keeps them.
                    if !matches!(&decoded.outcome, Outcome::Failed { kind, .. } if !kind.is_final()) {
                        reports.push((report.signer, decoded));
                    }
                }
                Record::DisputeOpened { .. } => view.state = JobState::Disputed,
                Record::JobCompleted { worker, .. } => {
                    view.state = JobState::Completed;
                    view.result = reports.iter().find(|(w, _)| *w == worker).cloned();
                }
                Record::JobFailed { reason, .. } => {
                    view.state = JobState::Failed;
                    view.failure = Some(reason);
                    view.result = reports.last().cloned();
                }
                Record::JobCancelled { request } => {
                    view.state = JobState::Cancelled;
                    view.failure = Some(format!("cancelled by {}", self.name(&request.signer)));
                    view.result = reports.last().cloned();
                }
                Record::JobFailedPaid { reason, worker, .. } => {
                    view.state = JobState::Failed;
                    view.failure = Some(reason);
                    view.result = reports.iter().find(|(w, _)| *w == worker).cloned();
                }
                _ => {}
            }
        }
        Ok(Some(view))
    }

    /// A page of the entries that moved or held `scope`'s account, with the decision
    /// behind each and the position after it.
    pub fn statement(&self, scope: &ScopeId, page: &Page) -> Result<Statement, String> {
        let limit = page.limit();
        let mut rows = self.source.indexed(&IndexKey::Scope(scope.clone()), page.after, limit + 1)?;
        let next = (rows.len() > limit).then(|| rows[limit - 1].seq);
        rows.truncate(limit);
        let mut position = match rows.first() {
            Some(first) => self.source.position_before(scope, first.seq)?,
            None => 0,
        };
        let mut lines = Vec::with_capacity(rows.len());
        for row in rows {
            let (entry, record) = self.read(row.seq)?;
            let (text, decision) = self.statement_text(scope, &record)?;
            position += row.change;
            lines.push(StatementLine {
                seq: row.seq,
                time_ms: entry.time_ms,
                change: Credits(row.change),
                position: Credits(position),
                text,
                decision,
            });
        }
        Ok(Statement { scope: scope.clone(), lines, next })
    }

    /// What an entry filed under `scope` did to its account, in words, and the decision
    /// behind it.
    fn statement_text(&self, scope: &ScopeId, record: &Record) -> Result<(String, Option<u64>), String> {
        Ok(match record {
            Record::JobSubmitted { submission, authorization } => (
                format!("held up to {} for job {}", authorization.hold, submission.id().short()),
                Some(authorization.decision),
            ),
            Record::JobCompleted { job, payees, .. }
            | Record::JobFailedPaid { job, payees, .. }
            | Record::CancelSettled { job, payees, .. } => {
                let (_, envelope, authorization) = self.submitted(job)?;
                let payer = envelope.open_trusted::<Submission>().map_err(|e| e.to_string())?.scope;
                let others: Vec<String> = payees
                    .iter()
                    .filter(|(p, _)| *p != payer)
                    .map(|(p, c)| format!("{} to {p}", c.0))
                    .collect();
                let result = match record {
                    Record::JobCompleted { .. } => "an accepted result",
                    Record::CancelSettled { .. } => "what ran until a cancel stopped it",
                    _ => "a run that failed by the job's own doing",
                };
                let what = if payer != *scope {
                    format!("earned from {payer} for {result}")
                } else if others.is_empty() {
                    "paid its own cooperative".to_string()
                } else {
                    format!("paid {} for {result}", others.join(", "))
                };
                (format!("job {}: {what}", job.0.short()), Some(authorization.decision))
            }
            Record::JobCancelled { .. } => {
                let job = record.job().ok_or("a cancel names its job")?;
                let (_, _, authorization) = self.submitted(&job)?;
                (
                    format!("job {}: cancelled; its hold was released", job.0.short()),
                    Some(authorization.decision),
                )
            }
            Record::JobFailed { job, .. } => {
                let (_, _, authorization) = self.submitted(job)?;
                (
                    format!("job {}: failed; its hold was released", job.0.short()),
                    Some(authorization.decision),
                )
            }
            Record::Cleared { clearing, .. } => {
                let touches = |o: &&icn_ledger::Obligation| o.debtor == *scope || o.creditor == *scope;
                let owed = |list: &[icn_ledger::Obligation]| -> String {
                    let mine: Vec<String> = list
                        .iter()
                        .filter(touches)
                        .map(|o| format!("{} owes {} {}", o.debtor, o.creditor, o.amount.0))
                        .collect();
                    if mine.is_empty() { "nothing".into() } else { mine.join(", ") }
                };
                (format!("clearing: {} became {}", owed(&clearing.before), owed(&clearing.after)), None)
            }
            other => (self.describe(other), None),
        })
    }

    /// A decision and a page of the jobs it authorized.
    pub fn decision(&self, decision: u64, page: &Page) -> Result<Trace, String> {
        let authority = self.authority(decision)?;
        let mut authorized_jobs = vec![];
        for row in self.source.indexed(&IndexKey::Decision(decision), page.after, page.limit())? {
            if let (_, Record::JobSubmitted { submission, authorization }) = self.read(row.seq)? {
                authorized_jobs.push(AuthorizedJob {
                    seq: row.seq,
                    job: JobId(submission.id()),
                    submitter: self.person(&submission.signer),
                    hold: authorization.hold,
                });
            }
        }
        Ok(Trace { job: None, authority, authorized_jobs })
    }

    fn authority(&self, seq: u64) -> Result<Authority, String> {
        let (entry, record) = self.read(seq)?;
        match record {
            Record::Governance(Event::Genesis(genesis)) => {
                let mandates: Vec<String> = genesis
                    .mandates
                    .iter()
                    .map(|m| describe_effect(&m.scope, &Effect::Mandate(m.clone()), |k| self.name(k)))
                    .collect();
                let scope = genesis.mandates.first().map(|m| m.scope.clone()).unwrap_or_else(|| {
                    genesis.scopes.iter().find(|s| s.parent.is_none()).expect("validated").id.clone()
                });
                Ok(Authority {
                    decision: seq,
                    founding: true,
                    time_ms: entry.time_ms,
                    scope,
                    effect: format!("founding mandates of the genesis: {}", mandates.join("; ")),
                    proposal: None,
                })
            }
            Record::Governance(Event::DecisionMade(decided)) => {
                self.decided(seq, entry.time_ms, entry.cause, &decided)
            }
            _ => Err(format!("entry {seq} is not a decision")),
        }
    }

    fn decided(
        &self,
        seq: u64,
        time_ms: u64,
        cause: Option<u64>,
        decided: &DecisionRecord,
    ) -> Result<Authority, String> {
        let proposal_seq = cause.ok_or_else(|| format!("decision {seq} names no proposal entry"))?;
        let (_, opened) = self.read(proposal_seq)?;
        let Record::Governance(Event::ProposalOpened { proposal: envelope, closes_ms, .. }) = opened else {
            return Err(format!("entry {proposal_seq}, the cause of decision {seq}, is not a proposal"));
        };
        let proposal: Proposal = envelope.open_trusted().map_err(|e| e.to_string())?;
        let mut ballots = vec![];
        for row in self.source.indexed(&IndexKey::Proposal(decided.proposal), None, JOB_ENTRIES_MAX)? {
            let (entry, record) = self.read(row.seq)?;
            let Record::Governance(Event::BallotCast { ballot, standing }) = record else { continue };
            let cast = ballot.open_trusted::<Ballot>().map_err(|e| e.to_string())?;
            ballots.push(BallotTrace {
                seq: row.seq,
                time_ms: entry.time_ms,
                voter: self.person(&ballot.signer),
                choice: cast.choice,
                standing,
                counted: decided.ballots.contains(&row.seq),
                reason: cast.reason,
            });
        }
        Ok(Authority {
            decision: seq,
            founding: false,
            time_ms,
            scope: proposal.scope.clone(),
            effect: describe_effect(&proposal.scope, &proposal.effect, |k| self.name(k)),
            proposal: Some(ProposalTrace {
                seq: proposal_seq,
                id: decided.proposal,
                title: proposal.title,
                proposer: self.person(&envelope.signer),
                closes_ms,
                rule: decided.rule,
                tally: decided.tally,
                accepted: decided.accepted,
                reason: decided.reason.clone(),
                ballots_digest: decided.ballots_digest,
                ballots,
            }),
        })
    }
}
