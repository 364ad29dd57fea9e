//! Jobs: submit, follow, read, cancel and list them.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use icn_cli::args::{Connect, SubmitArgs};
use icn_cli::client::{Client, JobRequest};
use icn_protocol::wire::{ExecutorKind, JobState, JobView};
use icn_protocol::{ContentId, JobId};

use super::{show, stop_signal};

/// The most jobs one `icn submit --array N` makes.
pub const ARRAY_JOBS_MAX: u32 = 1_000;

/// `icn submit`: the job's id on its own line (one line per job of an array); with
/// --wait, its output once it ends.
pub async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let SubmitArgs {
        connect,
        module,
        scope,
        executor,
        input,
        args,
        fuel,
        memory_mib,
        timeout_ms,
        output_bytes,
        deadline,
        priority,
        wait,
        dry_run,
        array,
    } = args;
    if let Some(count) = array
        && !(1..=ARRAY_JOBS_MAX).contains(&count)
    {
        bail!("--array {count}: an array holds 1 to {ARRAY_JOBS_MAX} jobs");
    }
    // No scope named: the context's, if it has one.
    let scope = match scope {
        Some(scope) => Some(scope),
        None => connect.resolve().ok().and_then(|settings| settings.scope),
    };
    let given = icn_cli::spec::Given {
        scope,
        executor,
        input,
        args,
        limits: icn_cli::spec::SpecLimits { fuel, memory_mib, timeout_ms, output_bytes },
        deadline,
        priority,
        index: None,
    };
    let spec = match module.extension().is_some_and(|e| e == "toml") {
        true => Some(icn_cli::spec::JobSpec::read(&module)?),
        false => None,
    };
    let base = module.parent().unwrap_or(Path::new(".")).to_path_buf();
    let job_at = |index: Option<u32>| {
        let given = icn_cli::spec::Given { index, ..given.clone() };
        match &spec {
            Some(spec) => icn_cli::spec::job(Some((spec.clone(), &base)), None, given),
            None => icn_cli::spec::job(None, Some(module.clone()), given),
        }
    };
    let indices: Vec<Option<u32>> = match array {
        Some(count) => (0..count).map(Some).collect(),
        None => vec![None],
    };
    let first = job_at(indices[0])?;
    // A wasm job's program is its module, uploaded once; a container job's is the id of an
    // image the workers hold.
    let bytes = match first.executor {
        ExecutorKind::Wasm => Some(read_module(&first.module)?),
        ExecutorKind::Container => None,
    };
    let program = match &bytes {
        Some(bytes) => ContentId::of(bytes),
        None => {
            icn_worker::container::parse_image(&first.module.to_string_lossy()).map_err(anyhow::Error::msg)?
        }
    };
    // Every job is made and checked before the first is sent: a bad input of the tenth
    // stops the array before any job of it runs.
    let mut requests = Vec::with_capacity(indices.len());
    for index in indices {
        let job = job_at(index)?;
        let (input, limits) = (job.input, job.limits);
        icn_protocol::wire::check_input(&input)
            .with_context(|| index.map_or(String::new(), |i| format!("job {i} of the array")))?;
        let options = icn_protocol::wire::JobOptions {
            deadline_ms: job.deadline_ms.map(|ms| icn_coordinator::server::now_ms().saturating_add(ms)),
            priority: job.priority,
        };
        let mut request = JobRequest::new(job.scope, job.executor, program, &input, job.args, limits);
        request.submission.options = options;
        request.submission.validate()?;
        requests.push(request);
    }
    let client = connect.client().await?;
    if dry_run {
        let plan = client.plan(&requests[0]).await?;
        print!("{}", icn_cli::status::plan(&plan));
        return Ok(if plan.waiting.is_some() { ExitCode::from(75) } else { ExitCode::SUCCESS });
    }
    if let Some(bytes) = &bytes {
        client.ensure_module(bytes).await?;
    }
    let mut jobs = Vec::with_capacity(requests.len());
    for (index, request) in requests.iter().enumerate() {
        let job = client.submit(request).await;
        let job = match (job, array) {
            (Ok(job), _) => job,
            (Err(e), None) => return Err(e),
            (Err(e), Some(count)) => {
                bail!(
                    "job {index} of the array was refused, after {index} of {count} were submitted (their ids above): \
                     {e:#}"
                )
            }
        };
        // The id first, on its own line, so a script can read it before the output.
        println!("{job}");
        jobs.push(job);
    }
    if let Some(count) = array {
        eprintln!("submitted {count} jobs, {{index}} 0 to {}", count - 1);
    }
    match (wait, jobs.as_slice()) {
        (false, _) => Ok(ExitCode::SUCCESS),
        (true, [job]) => follow(&client, *job).await,
        (true, jobs) => follow_all(&client, jobs).await,
    }
}

/// `--wait` for an array: each job followed in index order, its state said on stderr and its
/// output written on stdout; exits 0 when every job completed with exit code 0, else as
/// the first job that did not (70 failed or cancelled, 75 in dispute, or its own code).
async fn follow_all(client: &Client, jobs: &[JobId]) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut first_bad: Option<u8> = None;
    for (index, job) in jobs.iter().enumerate() {
        let view = client.watch(*job, |_| {}).await?;
        eprintln!("{index}: {}", icn_cli::status::describe(&view));
        if view.state == JobState::Completed {
            std::io::stdout().write_all(&client.output(*job).await?)?;
        }
        let code = icn_cli::status::exit_status(&view);
        if first_bad.is_none() && code != 0 {
            first_bad = Some(code);
        }
    }
    Ok(ExitCode::from(first_bad.unwrap_or(0)))
}

/// `icn status`: the job in a sentence; with --wait, followed until it ends. Exits as the
/// job did.
pub async fn status(connect: Connect, job: &str, wait: bool, json: bool) -> anyhow::Result<ExitCode> {
    let client = connect.client().await?;
    let job = client.resolve_job(job).await?;
    if wait {
        return follow(&client, job).await;
    }
    let view = client.status(job).await?;
    show(json, &view, |view| format!("{}\n", icn_cli::status::describe(view)))?;
    Ok(exit_code(&view))
}

/// `icn result`: a completed job's output, checked against the digest its worker signed.
pub async fn result(
    connect: Connect,
    job: &str,
    out: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    let client = connect.client().await?;
    let job = client.resolve_job(job).await?;
    let view = client.status(job).await?;
    let (worker, report) = match (&view.state, &view.result) {
        (JobState::Completed, Some(result)) => result,
        _ => bail!("{}; only a completed job has an output", icn_cli::status::describe(&view)),
    };
    let bytes = client.output(job).await?;
    anyhow::ensure!(
        ContentId::of(&bytes) == report.output_digest,
        "the output the coordinator sent does not hash to {}, the digest worker {} signed",
        report.output_digest,
        worker.short()
    );
    match out {
        Some(path) => {
            let partial = path.with_extension("partial");
            std::fs::write(&partial, &bytes)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            std::fs::rename(&partial, &path).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} bytes to {}: output {} as worker {} reported it",
                bytes.len(),
                path.display(),
                report.output_digest.short(),
                worker.short()
            );
        }
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `icn logs`: what the job's module wrote to stderr.
pub async fn logs(connect: Connect, job: &str) -> anyhow::Result<ExitCode> {
    let client = connect.client().await?;
    let job = client.resolve_job(job).await?;
    // Asked first for what the job wrote so far: it is refused, by name, to a member who
    // may not read the job's stderr (the job's view only leaves it out).
    client.live_stderr(job, 0, 0).await?;
    let view = client.status(job).await?;
    match icn_cli::status::logs(&view) {
        Ok(stderr) => {
            // A job's stderr is the job's: on a terminal its control characters are shown,
            // not obeyed. Piped, the bytes go as they are.
            let mut sink = icn_cli::logs::Sink::stdout();
            sink.write(stderr)?;
            sink.finish()?;
        }
        Err(why) => eprintln!("{why}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `icn cancel`.
pub async fn cancel(connect: Connect, job: &str, json: bool) -> anyhow::Result<ExitCode> {
    let client = connect.client().await?;
    let job = client.resolve_job(job).await?;
    let view = client.cancel(job).await?;
    show(json, &view, |view| format!("{}\n", icn_cli::status::describe(view)))?;
    Ok(ExitCode::SUCCESS)
}

/// `icn jobs`: jobs the coordinator holds, newest first, filtered.
pub async fn jobs(
    connect: Connect,
    filter: icn_cli::args::JobsFilter,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let icn_cli::args::JobsFilter { scope, state, mine, since, limit } = filter;
    let now_ms = icn_coordinator::server::now_ms();
    let since_ms = since.map(|s| icn_cli::governance::parse_duration_ms(&s)).transpose()?;
    let client = connect.client().await?;
    let query = icn_protocol::wire::JobsQuery {
        scope,
        state,
        submitter: mine.then(|| client.member()),
        since_ms: since_ms.map(|ms| now_ms.saturating_sub(ms)),
    };
    show(json, &client.jobs(&query, limit).await?, |jobs| icn_cli::governance::jobs(jobs, now_ms))?;
    Ok(ExitCode::SUCCESS)
}

/// A module's bytes: a `.wasm` file as it is, a `.wat` file compiled; anything else is
/// refused, saying what a module is.
pub fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read module {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "wat") {
        return wat::parse_bytes(&bytes)
            .map(std::borrow::Cow::into_owned)
            .map_err(|e| anyhow::anyhow!("{} is not valid WAT: {e}", path.display()));
    }
    // Checked here, before anything is uploaded: a wrong file is named as such.
    anyhow::ensure!(
        bytes.starts_with(b"\0asm"),
        "{} is not a WebAssembly module (a .wasm file starts with the bytes \\0asm) nor WAT text (a .wat \
         file); give the module your compiler made, or its .wat source",
        path.display()
    );
    Ok(bytes)
}

/// `icn logs --follow`: the job's stderr on stdout as it comes, and how the job ended
/// on stderr. Ctrl-C stops following, not the job.
pub async fn follow_logs(client: &Client, job: JobId) -> anyhow::Result<ExitCode> {
    let stop = stop_signal()?;
    let mut sink = icn_cli::logs::Sink::stdout();
    let view = tokio::select! {
        view = icn_cli::logs::follow(client, job, &mut sink, |note| eprintln!("{note}")) => view?,
        signal = stop => {
            let id = job.0.short();
            eprintln!(
                "stopped following job {id} ({signal}); it goes on: `icn logs --follow {id}` follows it again, \
                 `icn cancel {id}` stops it"
            );
            return Ok(ExitCode::from(130));
        }
    };
    eprintln!("{}", icn_cli::status::describe(&view));
    Ok(ExitCode::SUCCESS)
}

/// `--wait`: the job followed with a spinner until it ends, then its output on stdout;
/// exits as the job did. Ctrl-C stops following, not the job.
pub async fn follow(client: &Client, job: JobId) -> anyhow::Result<ExitCode> {
    let progress = indicatif::ProgressBar::new_spinner();
    progress.enable_steady_tick(std::time::Duration::from_millis(100));
    let stop = stop_signal()?;
    let view = tokio::select! {
        view = client.watch(job, |view| progress.set_message(icn_cli::status::describe(view))) => view?,
        signal = stop => {
            progress.finish_and_clear();
            eprintln!(
                "stopped following job {} ({signal}); it goes on: `icn status {} --wait` follows it again, \
                 `icn cancel {}` stops it",
                job.0.short(),
                job.0.short(),
                job.0.short()
            );
            return Ok(ExitCode::from(130));
        }
    };
    progress.finish_and_clear();
    eprintln!("{}", icn_cli::status::describe(&view));
    if view.state == JobState::Completed {
        use std::io::Write;
        std::io::stdout().write_all(&client.output(job).await?)?;
    }
    Ok(exit_code(&view))
}

/// The process's exit code for a job's state (see [`icn_cli::status::exit_status`]).
pub fn exit_code(view: &JobView) -> ExitCode {
    ExitCode::from(icn_cli::status::exit_status(view))
}
