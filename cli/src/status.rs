//! How `icn status`, `submit --wait`, `logs` and `cancel` speak of a job: one sentence for
//! its state, and the process's exit code.

use icn_protocol::wire::{JobState, JobView, Outcome};

/// A job's exit status for `submit --wait` and `status`: the module's own exit code when
/// it completed, [`EXIT_FAILED`] when it failed or was cancelled, [`EXIT_DISPUTED`] in
/// dispute, and 0 while it waits or runs.
pub fn exit_status(view: &JobView) -> u8 {
    match (&view.state, &view.result) {
        (JobState::Completed, Some((_, report))) => match report.outcome {
            // An exit code outside 1..=255 still says "not zero".
            Outcome::Exited { code } => u8::try_from(code).unwrap_or(1),
            Outcome::Failed { .. } => EXIT_FAILED,
        },
        (JobState::Completed, None) => 0,
        (JobState::Failed | JobState::Cancelled, _) => EXIT_FAILED,
        (JobState::Disputed, _) => EXIT_DISPUTED,
        (JobState::Queued | JobState::Running { .. }, _) => 0,
    }
}

/// A job that failed (a trap, its fuel, time, memory or output limit) or was cancelled
/// (70 is the conventional "internal software error"; the module's own codes pass
/// through as they are).
pub const EXIT_FAILED: u8 = 70;

/// `--wait` on a job in dispute: its result waits for a decision of the commons (75 is
/// the conventional "temporary failure, try again later").
pub const EXIT_DISPUTED: u8 = 75;

/// Where a run's stderr can be read, when it wrote any.
fn stderr_note(view: &JobView) -> String {
    match &view.result {
        Some((_, report)) if !report.stderr.is_empty() => {
            format!("; {} bytes of stderr (`icn logs {}`)", report.stderr.len(), view.job.0.short())
        }
        _ => String::new(),
    }
}

/// What `icn logs` prints: the stderr of the job's accepted (or last) run, or why there
/// is none.
pub fn logs(view: &JobView) -> Result<&[u8], String> {
    match &view.result {
        Some((_, report)) if !report.stderr.is_empty() => Ok(&report.stderr),
        Some(_) => Err(format!("job {}: its module wrote nothing to stderr", view.job.0.short())),
        None => Err(format!("{}; no run has reported yet", describe(view))),
    }
}

/// `icn submit --dry-run`: what the job would do, in words.
pub fn plan(plan: &icn_protocol::wire::PlanView) -> String {
    let mut out = format!(
        "dry run, nothing submitted: the job would hold {} of {}'s mandate (decision #{}), leaving {} to spend\n",
        crate::governance::credits(plan.hold),
        plan.scope,
        plan.decision,
        crate::governance::credits(plan.available_after)
    );
    match &plan.waiting {
        Some(waiting) => out.push_str(&format!("it would wait: {waiting}\n")),
        None => {
            let replicas = crate::governance::count(u64::from(plan.replicas), "replica", "replicas");
            out.push_str(&format!("it could start now ({replicas}):\n"));
            for p in &plan.placements {
                out.push_str(&format!(
                    "  on worker {} of {} (score {:.3})\n",
                    p.worker.short(),
                    p.owner,
                    p.score
                ));
            }
        }
    }
    if plan.queued_ahead > 0 {
        out.push_str(&format!(
            "{} of {} wait in its queue already and are served first\n",
            crate::governance::count(u64::from(plan.queued_ahead), "job", "jobs"),
            plan.scope
        ));
    }
    out
}

pub fn describe(view: &JobView) -> String {
    let id = view.job.0.short();
    match (&view.state, &view.result) {
        (JobState::Queued, _) => match &view.waiting {
            Some(waiting) if waiting.is_stuck() => format!(
                "job {id}: queued; it cannot be placed with the workers connected now: {waiting}. \
                 It waits until such a worker connects"
            ),
            Some(waiting) => format!("job {id}: queued: {waiting}"),
            None => format!("job {id}: queued, waiting for a free worker"),
        },
        (JobState::Running { worker, attempt }, _) => {
            format!("job {id}: running on worker {} (attempt {attempt})", worker.short())
        }
        (JobState::Completed, Some((worker, report))) => format!(
            "job {id}: completed on worker {}: {}, {} output bytes, {}{}",
            worker.short(),
            icn_core::record::describe_outcome(&report.outcome),
            report.output_bytes,
            report.used(),
            stderr_note(view)
        ),
        (JobState::Cancelled, _) => format!(
            "job {id}: {}; it pays for what ran before it stopped, if anything did, and the rest of its hold is \
             released (`icn trace {id}` shows which)",
            view.failure.clone().unwrap_or_else(|| "cancelled".into())
        ),
        (JobState::Failed, _) => {
            format!(
                "job {id}: failed: {}{}",
                view.failure.clone().unwrap_or_else(|| "no reason recorded".into()),
                stderr_note(view)
            )
        }
        (JobState::Completed, None) => format!("job {id}: completed"),
        (JobState::Disputed, _) => format!(
            "job {id}: in dispute: its replicas disagree and more could not settle it; a decision of the commons \
             will (`icn decisions`, then `icn status {id}` once it is taken)"
        ),
    }
}

#[cfg(test)]
mod snapshots {
    use icn_protocol::governance::ScopeId;
    use icn_protocol::wire::{ExecutionReport, FailureKind, IdKind, JobState, JobView, Outcome, Waiting};
    use icn_protocol::{ContentId, Fuel, JobId, PublicKey, TaskId};

    fn view(state: JobState, outcome: Option<Outcome>, stderr: &[u8], failure: Option<&str>) -> JobView {
        let job = JobId(ContentId::of(b"job"));
        let report = outcome.map(|outcome| {
            let report = ExecutionReport {
                task: TaskId { job, index: 0 },
                attempt: 1,
                outcome,
                output_digest: ContentId::of(b"out"),
                output_bytes: 3,
                stderr: stderr.to_vec(),
                fuel: Fuel(1_234_567),
                usage: Default::default(),
            };
            (PublicKey([9; 32]), report)
        });
        JobView {
            job,
            scope: "fed-north".parse().unwrap(),
            submitter: PublicKey([7; 32]),
            state,
            attempts: 1,
            result: report,
            failure: failure.map(str::to_string),
            waiting: None,
        }
    }

    /// Every state a job can be in as `icn status` says it, with the exit code it gives
    /// (the module's own code when it completed, 70 failed or cancelled, 75 in dispute)
    /// and what `icn logs` prints.
    #[test]
    fn each_state_in_words_and_its_exit_code() {
        let fed: ScopeId = "fed-north".parse().unwrap();
        let mut stuck = view(JobState::Queued, None, b"", None);
        stuck.waiting = Some(Waiting::NoExecutor { executor: icn_protocol::wire::ExecutorKind::Container });
        let mut busy = view(JobState::Queued, None, b"", None);
        busy.waiting = Some(Waiting::SlotsBusy { slots: 4, ahead: 2, scope: fed });
        let failed = |kind, detail: &str| Some(Outcome::Failed { kind, detail: detail.into() });
        let views = [
            ("queued, no worker can take it", stuck),
            ("queued behind others", busy),
            ("running", view(JobState::Running { worker: PublicKey([9; 32]), attempt: 2 }, None, b"", None)),
            ("completed", view(JobState::Completed, Some(Outcome::Exited { code: 0 }), b"", None)),
            (
                "completed, exit 3, with stderr",
                view(JobState::Completed, Some(Outcome::Exited { code: 3 }), b"no such file\n", None),
            ),
            (
                "failed by its own doing",
                view(
                    JobState::Failed,
                    failed(FailureKind::OutOfFuel, "all 1000000 fuel used"),
                    b"",
                    Some("it ran out of fuel (all 1000000 fuel used)"),
                ),
            ),
            (
                "failed, no worker could run it",
                view(JobState::Failed, None, b"", Some("replicas were lost 5 times, the limit")),
            ),
            ("cancelled", view(JobState::Cancelled, None, b"", Some("cancelled by ana"))),
            ("disputed", view(JobState::Disputed, None, b"", None)),
        ];
        let lines: Vec<String> = views
            .iter()
            .map(|(what, view)| {
                let logs = match super::logs(view) {
                    Ok(stderr) => format!("stderr {:?}", String::from_utf8_lossy(stderr)),
                    Err(why) => why,
                };
                format!(
                    "{what}: exit {}\n  {}\n  logs: {logs}",
                    super::exit_status(view),
                    super::describe(view)
                )
            })
            .collect();
        insta::assert_snapshot!(lines.join("\n"));
    }

    /// What a prefix that matches nothing, one id, or several says.
    #[test]
    fn a_prefix_names_one_id_or_says_which_ones_match() {
        // Ids that start alike, as the coordinator's completions do.
        let alike = |i: u8| format!("a1b2c3{}", &ContentId::of(&[i]).to_string()[6..]);
        let ids: Vec<String> = (0..3u8).map(alike).collect();
        let one = crate::client::pick(IdKind::Job, &ids[0][..6], &ids[..1]).unwrap();
        assert_eq!(one, ids[0]);
        let none = crate::client::pick(IdKind::Proposal, "abcdef", &[]).unwrap_err().to_string();
        let many = crate::client::pick(IdKind::Job, "a1b2c3", &ids).unwrap_err().to_string();
        let full: Vec<String> = (0..icn_protocol::wire::COMPLETIONS_MAX as u8).map(alike).collect();
        let most = crate::client::pick(IdKind::Key, "a1b2c3", &full).unwrap_err().to_string();
        insta::assert_snapshot!(format!("{none}\n{many}\n{most}"));
    }
}
