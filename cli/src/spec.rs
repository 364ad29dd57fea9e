//! A job spec file: `icn submit job.toml` takes the same fields as `icn submit`'s flags,
//! so a job can be kept, reviewed and run again. Flags given on the command line win over
//! the file; paths in the file are relative to the file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use icn_protocol::Fuel;
use icn_protocol::governance::ScopeId;
use icn_protocol::wire::{ExecutorKind, Limits};
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The module: a .wasm file or a .wat text file.
    pub module: Option<PathBuf>,
    pub scope: Option<ScopeId>,
    pub executor: Option<ExecutorKind>,
    /// A file whose bytes are the job's stdin.
    pub input: Option<PathBuf>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub limits: SpecLimits,
    /// How long the job has to reach an accepted result, from submission: 30m, 2h, 1d.
    pub deadline: Option<String>,
    /// One of the priority classes its scope decided.
    pub priority: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpecLimits {
    pub fuel: Option<u64>,
    pub memory_mib: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub output_bytes: Option<u64>,
}

/// What `icn submit` was given on the command line, beside a spec file or instead of one.
#[derive(Clone, Debug, Default)]
pub struct Given {
    pub scope: Option<ScopeId>,
    pub executor: Option<ExecutorKind>,
    pub input: Option<PathBuf>,
    pub args: Vec<String>,
    pub limits: SpecLimits,
    pub deadline: Option<String>,
    pub priority: Option<String>,
    /// The job's index in an array (`icn submit --array N`): `{index}` in its arguments and
    /// in its input's path becomes this number.
    pub index: Option<u32>,
}

/// The placeholder an array's jobs each replace with their index.
pub const INDEX_PLACEHOLDER: &str = "{index}";

/// A job ready to submit: the module's path, the input's bytes and the rest.
#[derive(Debug, PartialEq)]
pub struct Job {
    pub module: PathBuf,
    pub scope: ScopeId,
    pub executor: ExecutorKind,
    pub input: Vec<u8>,
    pub args: Vec<String>,
    pub limits: Limits,
    /// How long it has to reach an accepted result, from submission.
    pub deadline_ms: Option<u64>,
    pub priority: Option<String>,
}

impl JobSpec {
    pub fn read(path: &Path) -> anyhow::Result<JobSpec> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the job spec {}", path.display()))?;
        toml::from_str(&text).with_context(|| {
            format!(
                "the job spec {} is not valid (its fields: module, scope, executor, input, args, deadline, priority, \
                 and limits with fuel, memory_mib, timeout_ms, output_bytes)",
                path.display()
            )
        })
    }
}

/// The job from a spec (paths relative to `base`) with the command line's values on top;
/// `module` is the module named on the command line when there is no spec.
pub fn job(spec: Option<(JobSpec, &Path)>, module: Option<PathBuf>, given: Given) -> anyhow::Result<Job> {
    let (spec, base) = match spec {
        Some((spec, base)) => (spec, base.to_path_buf()),
        None => (JobSpec::default(), PathBuf::new()),
    };
    let executor = given.executor.or(spec.executor).unwrap_or(ExecutorKind::Wasm);
    // A container job's program is an image id, not a path.
    let in_spec = |m: PathBuf| if executor == ExecutorKind::Container { m } else { base.join(m) };
    let module = module.or(spec.module.map(in_spec)).context(
        "name the module: `module = \"job.wat\"` in the spec, or a .wasm or .wat file (for a container job, the \
         image id)",
    )?;
    let scope = given.scope.or(spec.scope).context(
        "name the scope the job is for: `scope = \"fed-north\"` in the spec, or --scope (or ICN_SCOPE)",
    )?;
    let at_index = |text: &str| match given.index {
        Some(index) => text.replace(INDEX_PLACEHOLDER, &index.to_string()),
        None => text.to_string(),
    };
    let input_path = given
        .input
        .clone()
        .or(spec.input.map(|i| base.join(i)))
        .map(|path| PathBuf::from(at_index(&path.to_string_lossy())));
    let input = match input_path {
        Some(path) => {
            std::fs::read(&path).with_context(|| format!("cannot read the input {}", path.display()))?
        }
        None => Vec::new(),
    };
    let defaults = Limits::default();
    let pick = |flag: Option<u64>, file: Option<u64>, default: u64| flag.or(file).unwrap_or(default);
    let (g, s) = (&given.limits, &spec.limits);
    let limits = Limits {
        fuel: Fuel(pick(g.fuel, s.fuel, defaults.fuel.0)),
        memory_bytes: pick(g.memory_mib, s.memory_mib, defaults.memory_bytes / (1024 * 1024))
            .saturating_mul(1024 * 1024),
        timeout_ms: pick(g.timeout_ms, s.timeout_ms, defaults.timeout_ms),
        output_bytes: pick(g.output_bytes, s.output_bytes, defaults.output_bytes),
    };
    let args = if given.args.is_empty() { spec.args } else { given.args.clone() };
    let args = args.iter().map(|arg| at_index(arg)).collect();
    let deadline_ms = given
        .deadline
        .or(spec.deadline)
        .map(|d| crate::governance::parse_duration_ms(&d).context("the deadline"))
        .transpose()?;
    let priority = given.priority.or(spec.priority);
    Ok(Job { module, scope, executor, input, args, limits, deadline_ms, priority })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_gives_every_field_and_the_command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("numbers"), "19 23").unwrap();
        let spec: JobSpec = toml::from_str(
            "module = \"sum.wat\"\nscope = \"fed-north\"\ninput = \"numbers\"\nargs = [\"-v\"]\n\
             deadline = \"2h\"\npriority = \"urgent\"\n[limits]\nfuel = 5000000\ntimeout_ms = 2000\n",
        )
        .unwrap();
        let from_spec = job(Some((spec, dir.path())), None, Given::default()).unwrap();
        assert_eq!(from_spec.module, dir.path().join("sum.wat"));
        assert_eq!(from_spec.scope.as_str(), "fed-north");
        assert_eq!(from_spec.input, b"19 23");
        assert_eq!(from_spec.args, vec!["-v".to_string()]);
        assert_eq!((from_spec.limits.fuel, from_spec.limits.timeout_ms), (Fuel(5_000_000), 2_000));
        assert_eq!(from_spec.limits.output_bytes, Limits::default().output_bytes, "unset: the default");
        assert_eq!((from_spec.deadline_ms, from_spec.priority.as_deref()), (Some(7_200_000), Some("urgent")));

        let spec: JobSpec =
            toml::from_str("module = \"sum.wat\"\nscope = \"fed-north\"\n[limits]\nfuel = 5\n").unwrap();
        let given = Given {
            scope: Some("fed-south".parse().unwrap()),
            limits: SpecLimits { fuel: Some(7), ..SpecLimits::default() },
            ..Given::default()
        };
        let overridden = job(Some((spec, dir.path())), None, given).unwrap();
        assert_eq!((overridden.scope.as_str(), overridden.limits.fuel), ("fed-south", Fuel(7)));
    }

    #[test]
    fn a_bad_spec_names_the_field() {
        let unknown =
            toml::from_str::<JobSpec>("module = \"a.wat\"\nwhen = \"1h\"\n").unwrap_err().to_string();
        assert!(unknown.contains("unknown field `when`"), "{unknown}");
        let spec: JobSpec =
            toml::from_str("module = \"a.wat\"\nscope = \"fed-north\"\ndeadline = \"soon\"\n").unwrap();
        let bad = format!("{:#}", job(Some((spec, Path::new("."))), None, Given::default()).unwrap_err());
        assert!(bad.contains("the deadline") && bad.contains("\"soon\" is not a duration"), "{bad}");
        let wrong = toml::from_str::<JobSpec>("[limits]\nfuel = \"lots\"\n").unwrap_err().to_string();
        assert!(wrong.contains("fuel") && wrong.contains("invalid type"), "{wrong}");
        let no_scope = job(
            Some((JobSpec { module: Some("a.wat".into()), ..JobSpec::default() }, Path::new("."))),
            None,
            Given::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(no_scope.contains("name the scope the job is for"), "{no_scope}");
    }
}
