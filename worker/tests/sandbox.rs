//! The wasm sandbox: limits hold, failures are named, runs are deterministic.

use icn_protocol::wire::{FailureKind, Limits, Outcome};
use icn_protocol::{ContentId, Fuel};
use icn_worker::{Execution, WasmExecutor};

fn run_with(executor: &WasmExecutor, wat: &str, input: &[u8], args: &[&str], limits: Limits) -> Execution {
    let bytes = wat::parse_str(wat).expect("test module is valid WAT");
    let module = ContentId::of(&bytes);
    executor.load_module(module, &bytes).unwrap();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    executor.execute(&module, input, &args, &limits)
}

fn run(wat: &str, input: &[u8]) -> Execution {
    run_with(&WasmExecutor::new().unwrap(), wat, input, &[], Limits::default())
}

fn failure(execution: &Execution) -> (FailureKind, String) {
    match &execution.outcome {
        Outcome::Failed { kind, detail } => (*kind, detail.clone()),
        other => panic!(
            "expected a failure, got {other:?} with output {:?}",
            String::from_utf8_lossy(&execution.output)
        ),
    }
}

const HELLO: &str = include_str!("../../examples/wat/hello.wat");
const UPPER: &str = include_str!("../../examples/wat/upper.wat");
const SUM: &str = include_str!("../../examples/wat/sum.wat");
const SPIN: &str = include_str!("../../examples/wat/spin.wat");

#[test]
fn example_modules_compute_their_outputs() {
    let hello = run(HELLO, b"");
    assert_eq!(hello.outcome, Outcome::Exited { code: 0 });
    assert_eq!(hello.output, b"hello from the commons\n");
    assert!(hello.fuel.0 > 0);
    assert_eq!(run(UPPER, b"Cooperate, commons!").output, b"COOPERATE, COMMONS!");
    assert_eq!(run(SUM, b"1 2 3\n40,\n1000").output, b"1046\n");
}

#[test]
fn fuel_is_the_same_on_every_run() {
    let executor = WasmExecutor::new().unwrap();
    let first = run_with(&executor, SUM, b"12 30 99", &[], Limits::default());
    let second = run_with(&WasmExecutor::new().unwrap(), SUM, b"12 30 99", &[], Limits::default());
    assert_eq!(first, second);
    let longer = run_with(&executor, SUM, b"12 30 99 1000 2000", &[], Limits::default());
    assert!(longer.fuel > first.fuel, "more input, more work: {:?} vs {:?}", longer.fuel, first.fuel);
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let limits = Limits { fuel: Fuel(1_000_000), ..Limits::default() };
    let execution = run_with(&WasmExecutor::new().unwrap(), SPIN, b"", &[], limits);
    let (kind, detail) = failure(&execution);
    assert_eq!(kind, FailureKind::OutOfFuel);
    assert!(detail.contains("1000000 fuel"), "{detail}");
    assert_eq!(execution.fuel, Fuel(1_000_000));
}

#[test]
fn infinite_loop_with_ample_fuel_hits_the_wall_clock() {
    let limits = Limits { fuel: Fuel(icn_protocol::wire::FUEL_MAX), timeout_ms: 200, ..Limits::default() };
    let execution = run_with(&WasmExecutor::new().unwrap(), SPIN, b"", &[], limits);
    let (kind, detail) = failure(&execution);
    assert_eq!(kind, FailureKind::Timeout);
    assert!(detail.contains("200 ms"), "{detail}");
}

#[test]
fn memory_bomb_is_stopped_at_the_cap() {
    let bomb = include_str!("../../examples/wat/bomb.wat");
    let limits = Limits { memory_bytes: 8 * 1024 * 1024, ..Limits::default() };
    let (kind, detail) = failure(&run_with(&WasmExecutor::new().unwrap(), bomb, b"", &[], limits));
    assert_eq!(kind, FailureKind::MemoryLimit);
    assert!(detail.contains("8388608"), "{detail}");

    let huge_initial = r#"(module (memory (export "memory") 2000) (func (export "_start")))"#;
    let (kind, _) = failure(&run_with(&WasmExecutor::new().unwrap(), huge_initial, b"", &[], limits));
    assert_eq!(kind, FailureKind::MemoryLimit);
}

#[test]
fn output_past_the_limit_fails_and_is_not_returned() {
    let flood = include_str!("../../examples/wat/flood.wat");
    let limits = Limits { output_bytes: 100_000, ..Limits::default() };
    let execution = run_with(&WasmExecutor::new().unwrap(), flood, b"", &[], limits);
    let (kind, detail) = failure(&execution);
    assert_eq!(kind, FailureKind::OutputTooLarge);
    assert!(detail.contains("100000"), "{detail}");
    assert!(execution.output.is_empty());
}

#[test]
fn a_module_that_floods_its_output_stops_at_the_same_fuel_every_time() {
    // flood.wat ignores every failed write: only the sandbox can stop it. It must stop
    // it at the write that passes the limit, not at the wall-clock timeout, so that two
    // honest workers report the same fuel and agree.
    let flood = include_str!("../../examples/wat/flood.wat");
    let limits = Limits { output_bytes: 100_000, timeout_ms: 2_000, ..Limits::default() };
    let executor = WasmExecutor::new().unwrap();
    let runs: Vec<Execution> = (0..3).map(|_| run_with(&executor, flood, b"", &[], limits)).collect();
    for execution in &runs {
        assert_eq!(failure(execution).0, FailureKind::OutputTooLarge);
        assert_eq!(
            execution.fuel,
            runs[0].fuel,
            "fuel differs between runs: {:?}",
            runs.iter().map(|r| r.fuel).collect::<Vec<_>>()
        );
    }
    assert!(runs[0].fuel.0 < 10_000, "it stopped at its second write, not later: {}", runs[0].fuel);
}

#[test]
fn trap_and_malformed_module_are_named() {
    let trap = r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#;
    let (kind, detail) = failure(&run(trap, b""));
    assert_eq!(kind, FailureKind::Trap);
    assert!(detail.contains("unreachable"), "{detail}");

    let executor = WasmExecutor::new().unwrap();
    let garbage = b"\0asm\x01\0\0\0this is not a module".to_vec();
    let module = ContentId::of(&garbage);
    executor.load_module(module, &garbage).unwrap();
    let execution = executor.execute(&module, b"", &[], &Limits::default());
    let (kind, detail) = failure(&execution);
    assert_eq!(kind, FailureKind::InvalidModule);
    assert!(detail.contains("not a valid WebAssembly module"), "{detail}");

    let wrong_bytes = executor.load_module(ContentId::of(b"other"), &garbage).unwrap_err();
    assert!(wrong_bytes.contains("hash to"), "{wrong_bytes}");
}

#[test]
fn imports_outside_the_sandbox_are_refused() {
    let sneaky = r#"(module
        (import "env" "open_socket" (func (result i32)))
        (memory (export "memory") 1)
        (func (export "_start")))"#;
    let (kind, detail) = failure(&run(sneaky, b""));
    assert_eq!(kind, FailureKind::InvalidModule);
    assert!(detail.contains("does not provide"), "{detail}");
}

#[test]
fn clocks_are_frozen_randomness_is_fixed_and_sleep_is_refused() {
    // Writes: the wall clock (8 bytes), 8 "random" bytes, and poll_oneoff's errno (4 bytes).
    let probe = r#"(module
        (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
        (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "_start")
          (i64.store (i32.const 104) (i64.const -1))
          (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 104)))
          (drop (call $random (i32.const 112) (i32.const 8)))
          (i32.store (i32.const 120) (call $poll (i32.const 200) (i32.const 300) (i32.const 1) (i32.const 400)))
          (i32.store (i32.const 0) (i32.const 104))
          (i32.store (i32.const 4) (i32.const 20))
          (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
    let first = run(probe, b"");
    assert_eq!(first.outcome, Outcome::Exited { code: 0 });
    assert_eq!(&first.output[0..8], &[0u8; 8], "the wall clock reads zero");
    assert_eq!(first.output, run(probe, b"").output, "the 'random' bytes are the same every run");
    assert_eq!(&first.output[16..20], &52i32.to_le_bytes(), "poll_oneoff answers ENOSYS");
}

#[test]
fn args_reach_the_module_and_exit_codes_are_reported() {
    // Exits with the number of arguments (argv[0] included).
    let argc = r#"(module
        (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start")
          (drop (call $sizes (i32.const 0) (i32.const 4)))
          (call $exit (i32.load (i32.const 0)))))"#;
    let execution = run_with(&WasmExecutor::new().unwrap(), argc, b"", &["a", "b"], Limits::default());
    assert_eq!(execution.outcome, Outcome::Exited { code: 3 });
}

#[test]
fn what_a_module_writes_to_stderr_is_handed_on_while_it_runs() {
    let announce = include_str!("../../examples/wat/announce.wat");
    let bytes = wat::parse_str(announce).unwrap();
    let module = ContentId::of(&bytes);
    let executor = std::sync::Arc::new(WasmExecutor::new().unwrap());
    executor.load_module(module, &bytes).unwrap();
    let (stop, live) = (icn_worker::executor::Stop::default(), icn_worker::LiveStderr::default());
    let limits = Limits { fuel: Fuel(icn_protocol::wire::FUEL_MAX), timeout_ms: 60_000, ..Limits::default() };
    let running = {
        let (executor, stop, live) = (executor.clone(), stop.clone(), live.clone());
        std::thread::spawn(move || executor.execute_until(&module, b"", &[], &limits, &stop, &live))
    };
    // The module never ends by itself: whatever is read here was handed on while it ran.
    let mut seen = Vec::new();
    while !seen.ends_with(b"\n") {
        assert!(!running.is_finished(), "the module ended: {:?}", String::from_utf8_lossy(&seen));
        if let Some((bytes, skipped)) = live.take() {
            assert_eq!(skipped, 0);
            seen.extend(bytes);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(seen, b"started: working on it\n");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let execution = running.join().unwrap();
    // The report keeps its tail as before, and nothing is handed on twice.
    assert_eq!(execution.stderr, b"started: working on it\n");
    assert_eq!(live.take(), None);
}
