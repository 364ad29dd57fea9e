//! The wasm executor: wasmtime with a deterministic, bounded sandbox.
//!
//! Deterministic: fuel metering (the usage measure, equal on every honest worker), NaN
//! canonicalization, deterministic relaxed SIMD, no threads; WASI preview 1 with args,
//! stdin, stdout and stderr only — no preopened directories, no environment, no
//! sockets; the clocks are frozen at zero and "random" bytes come from a fixed cycle,
//! so a module that asks for either still computes the same result everywhere.
//! `poll_oneoff` is replaced by one that answers ENOSYS, because the stock one would
//! sleep on the host's real clock, outside the reach of fuel and the wall timeout.
//!
//! Bounded: fuel, a linear-memory cap (a limiter that remembers it refused), a wall
//! clock timeout through epoch interruption, a capped stdout and stderr, a cap on the
//! wasm stack and on table growth, one instance and one memory per task.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use icn_protocol::wire::{FailureKind, Limits, Outcome, STDERR_SIZE_BYTES_MAX, TEXT_SIZE_BYTES_MAX, Usage};
use icn_protocol::{ContentId, Fuel};

use crate::executor::{LiveStderr, Stop};
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use wasmtime::{Caller, Config, Engine, InstancePre, Linker, Module, ResourceLimiter, Store, Trap};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, I32Exit, WasiCtxBuilder};

pub const EPOCH_TICK_MS: u64 = 5;
/// Module bytes whose compiled code is kept, at most (compiled code is a few times
/// larger than the module).
pub const MODULE_CACHE_BYTES_MAX: u64 = 64 * 1024 * 1024;
const MODULE_CACHE_ENTRIES_ESTIMATE: usize = 256;
const _: () = assert!(icn_protocol::wire::MODULE_SIZE_BYTES_MAX as u64 <= MODULE_CACHE_BYTES_MAX);
pub const WASM_STACK_BYTES_MAX: usize = 1024 * 1024;
pub const TABLE_ELEMENTS_MAX: usize = 100_000;
/// stderr is captured up to this size; only its tail travels in the report.
pub const STDERR_CAPTURE_BYTES_MAX: usize = 64 * 1024;
pub const RANDOM_BYTES_PER_CALL_MAX: u64 = 64 * 1024;
/// What stdout lets a module write in one step; a fixed number, so a module's writes
/// split the same way on every worker.
const STDOUT_WRITE_PERMIT_BYTES: usize = 64 * 1024;
const WASI_ERRNO_NOSYS: i32 = 52;

pub use crate::executor::Execution;

struct TaskState {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

/// Refuses memory growth past the task's cap, and remembers that it did so the outcome
/// can say "memory limit" rather than whatever trap the module hit next.
struct Limiter {
    memory_bytes_max: usize,
    memory_refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            self.memory_refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX)
    }

    fn instances(&self) -> usize {
        1
    }
    fn tables(&self) -> usize {
        4
    }
    fn memories(&self) -> usize {
        1
    }
}

struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A module's stdout, up to its task's output limit. The write that would pass the
/// limit traps, stopping the module there: at the same instruction on every worker, so
/// the fuel of a run that printed too much is as deterministic as any other's.
#[derive(Clone)]
struct LimitedOutput {
    buffer: Arc<Mutex<BytesMut>>,
    limit_bytes: usize,
    passed: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the module wrote past its output limit")]
struct OutputLimitPassed;

impl LimitedOutput {
    fn new(limit_bytes: usize) -> Self {
        LimitedOutput { buffer: Arc::default(), limit_bytes, passed: Arc::default() }
    }

    fn append(&self, bytes: &[u8]) -> Result<(), OutputLimitPassed> {
        let mut buffer = self.buffer.lock().expect("stdout lock");
        if buffer.len() + bytes.len() > self.limit_bytes {
            self.passed.store(true, Ordering::Relaxed);
            return Err(OutputLimitPassed);
        }
        buffer.extend_from_slice(bytes);
        Ok(())
    }

    fn contents(&self) -> Vec<u8> {
        self.buffer.lock().expect("stdout lock").to_vec()
    }

    fn passed(&self) -> bool {
        self.passed.load(Ordering::Relaxed)
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LimitedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes).map_err(|e| StreamError::Trap(e.into()))
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(STDOUT_WRITE_PERMIT_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LimitedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LimitedOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, bytes: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.append(bytes).map(|()| bytes.len()).map_err(std::io::Error::other))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for LimitedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LimitedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// A module's stderr: captured up to [`STDERR_CAPTURE_BYTES_MAX`] as a memory pipe does
/// (a write past it fails the same way on every worker), each byte taken also handed to
/// the live stream a member may follow.
#[derive(Clone)]
struct Stderr {
    captured: MemoryOutputPipe,
    live: LiveStderr,
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Stderr {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.captured.write(bytes.clone())?;
        self.live.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        self.captured.flush()
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        self.captured.check_write()
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Stderr {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Stderr {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.captured).poll_write(cx, bytes);
        if let Poll::Ready(Ok(count)) = &written {
            self.live.push(&bytes[..*count]);
        }
        written
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for Stderr {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Stderr {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

type Compiled = Result<InstancePre<TaskState>, String>;

/// A compiled module, weighed by the size of the module it came from (a failure weighs
/// a byte): the compiled code grows with it.
#[derive(Clone)]
struct Cached {
    compiled: Compiled,
    module_bytes: u64,
}

#[derive(Clone)]
struct ByModuleSize;

impl Weighter<ContentId, Cached> for ByModuleSize {
    fn weight(&self, _: &ContentId, cached: &Cached) -> u64 {
        cached.module_bytes.max(1)
    }
}

pub struct WasmExecutor {
    engine: Engine,
    linker: Linker<TaskState>,
    /// Compiled modules by content id. A module that failed to compile is remembered
    /// as such, so it is not fetched and compiled again.
    cache: Cache<ContentId, Cached, ByModuleSize>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for WasmExecutor {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl WasmExecutor {
    pub fn new() -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true)
            .max_wasm_stack(WASM_STACK_BYTES_MAX);
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("wasmtime engine: {e}"))?;
        let mut linker: Linker<TaskState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut TaskState| &mut state.wasi)
            .map_err(|e| anyhow::anyhow!("linking WASI: {e}"))?;
        linker.allow_shadowing(true);
        linker
            .func_wrap(
                "wasi_snapshot_preview1",
                "poll_oneoff",
                |_: Caller<'_, TaskState>, _: i32, _: i32, _: i32, _: i32| -> i32 { WASI_ERRNO_NOSYS },
            )
            .map_err(|e| anyhow::anyhow!("linking poll_oneoff: {e}"))?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.weak();
        let stop = ticker_stop.clone();
        std::thread::Builder::new().name("icn-epoch".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(EPOCH_TICK_MS));
                match ticker_engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })?;
        let cache = Cache::with_weighter(MODULE_CACHE_ENTRIES_ESTIMATE, MODULE_CACHE_BYTES_MAX, ByModuleSize);
        Ok(Self { engine, linker, cache, ticker_stop })
    }

    pub fn has_module(&self, module: &ContentId) -> bool {
        self.cache.contains_key(module)
    }

    /// Compiles `bytes` and caches the result under `module`, which must be their
    /// content id. A module that does not compile is cached as a failure.
    pub fn load_module(&self, module: ContentId, bytes: &[u8]) -> Result<(), String> {
        if ContentId::of(bytes) != module {
            return Err(format!(
                "the module bytes hash to {}, not to the requested {}",
                ContentId::of(bytes).short(),
                module.short()
            ));
        }
        let compiled = Module::new(&self.engine, bytes)
            .map_err(|e| format!("not a valid WebAssembly module: {}", first_line(&e.to_string())))
            .and_then(|m| {
                if m.get_export("_start").is_none() {
                    return Err("the module exports no `_start` function".to_string());
                }
                self.linker.instantiate_pre(&m).map_err(|e| {
                    format!(
                        "the module needs what the sandbox does not provide: {}",
                        first_line(&e.to_string())
                    )
                })
            });
        let module_bytes = if compiled.is_ok() { bytes.len() as u64 } else { 1 };
        self.cache.insert(module, Cached { compiled, module_bytes });
        Ok(())
    }

    /// Runs a cached module. Blocking: call it from a thread that may block.
    pub fn execute(&self, module: &ContentId, input: &[u8], args: &[String], limits: &Limits) -> Execution {
        self.execute_until(module, input, args, limits, &Stop::default(), &LiveStderr::default())
    }

    /// Runs a cached module until it ends or `stop` is set (checked every epoch tick,
    /// [`EPOCH_TICK_MS`]), handing what it writes to stderr to `live` as it writes it.
    /// Blocking.
    pub fn execute_until(
        &self,
        module: &ContentId,
        input: &[u8],
        args: &[String],
        limits: &Limits,
        stop: &Stop,
        live: &LiveStderr,
    ) -> Execution {
        let compiled = self.cache.get(module).map(|cached| cached.compiled);
        let pre = match compiled {
            Some(Ok(pre)) => pre,
            Some(Err(reason)) => return failed(FailureKind::InvalidModule, reason, Fuel(0)),
            None => {
                return failed(
                    FailureKind::WorkerError,
                    format!("module {} is not loaded", module.short()),
                    Fuel(0),
                );
            }
        };
        let stdout = LimitedOutput::new(usize::try_from(limits.output_bytes).unwrap_or(usize::MAX));
        let stderr = Stderr { captured: MemoryOutputPipe::new(STDERR_CAPTURE_BYTES_MAX), live: live.clone() };
        let mut argv = vec!["main".to_string()];
        argv.extend(args.iter().cloned());
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(input.to_vec()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(&argv)
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(wasmtime_wasi::Deterministic::new(vec![0x5a, 0xa5, 0x3c, 0xc3]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![0x5a, 0xa5, 0x3c, 0xc3]))
            .insecure_random_seed(0)
            .max_random_size(RANDOM_BYTES_PER_CALL_MAX)
            .build_p1();
        let memory_bytes_max = usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX);
        let state = TaskState { wasi, limiter: Limiter { memory_bytes_max, memory_refused: false } };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        if let Err(e) = store.set_fuel(limits.fuel.0) {
            return failed(FailureKind::WorkerError, format!("cannot set fuel: {e}"), Fuel(0));
        }
        // Each tick: over time, or told to stop, the module is interrupted.
        let mut ticks_left = limits.timeout_ms.div_ceil(EPOCH_TICK_MS) + 1;
        let stopping = stop.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            ticks_left -= 1;
            if ticks_left == 0 || stopping.load(Ordering::Relaxed) {
                return Err(Trap::Interrupt.into());
            }
            Ok(wasmtime::UpdateDeadline::Continue(1))
        });

        let result = pre.instantiate(&mut store).and_then(|instance| {
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call(&mut store, ())
        });
        // Wasmtime writes the fuel a module used back to the store at calls, not when a
        // trap or an interrupt unwinds it: a run that ends so counts what it used up to
        // its last call (bytecodealliance/wasmtime#13802).
        let fuel = Fuel(limits.fuel.0.saturating_sub(store.get_fuel().unwrap_or(0)));
        let memory_refused = store.data().limiter.memory_refused;
        drop(store);
        let output = stdout.contents();
        let stderr = tail(&stderr.captured.contents(), STDERR_SIZE_BYTES_MAX);
        let outcome = match result {
            _ if stdout.passed() => Outcome::Failed {
                kind: FailureKind::OutputTooLarge,
                detail: format!("the module wrote more than {} bytes of output", limits.output_bytes),
            },
            Ok(()) => Outcome::Exited { code: 0 },
            Err(e) if e.downcast_ref::<I32Exit>().is_some() => {
                Outcome::Exited { code: e.downcast_ref::<I32Exit>().map_or(0, |exit| exit.0) }
            }
            _ if memory_refused => Outcome::Failed {
                kind: FailureKind::MemoryLimit,
                detail: format!("the module tried to grow its memory past {} bytes", limits.memory_bytes),
            },
            Err(e) => classify_trap(&e, limits),
        };
        let output = if matches!(outcome, Outcome::Exited { .. }) { output } else { Vec::new() };
        Execution { outcome, output, stderr, fuel, usage: Usage::default() }
    }
}

fn classify_trap(error: &wasmtime::Error, limits: &Limits) -> Outcome {
    let (kind, detail) = match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            (FailureKind::OutOfFuel, format!("the module used all of its {}", limits.fuel))
        }
        Some(Trap::Interrupt) => (
            FailureKind::Timeout,
            format!("the module ran longer than its {} ms wall-clock limit", limits.timeout_ms),
        ),
        Some(trap) => (FailureKind::Trap, format!("the module trapped: {trap}")),
        None => {
            (FailureKind::Trap, format!("the module failed: {}", first_line(&error.root_cause().to_string())))
        }
    };
    Outcome::Failed { kind, detail }
}

fn failed(kind: FailureKind, detail: String, fuel: Fuel) -> Execution {
    Execution {
        outcome: Outcome::Failed { kind, detail },
        output: Vec::new(),
        stderr: Vec::new(),
        fuel,
        usage: Usage::default(),
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(TEXT_SIZE_BYTES_MAX / 4).collect()
}

fn tail(bytes: &[u8], max: usize) -> Vec<u8> {
    bytes[bytes.len().saturating_sub(max)..].to_vec()
}

impl crate::executor::Executor for WasmExecutor {
    fn kind(&self) -> icn_protocol::wire::ExecutorKind {
        icn_protocol::wire::ExecutorKind::Wasm
    }

    fn has_program(&self, program: &ContentId) -> bool {
        self.has_module(program)
    }

    fn load_program(&self, program: ContentId, bytes: &[u8]) -> Result<(), String> {
        self.load_module(program, bytes)
    }

    fn run(
        self: Arc<Self>,
        assignment: icn_protocol::wire::Assignment,
        input: Vec<u8>,
        stop: Stop,
        live: LiveStderr,
    ) -> crate::executor::Running {
        Box::pin(async move {
            let executor = self.clone();
            let ran = tokio::task::spawn_blocking(move || {
                executor.execute_until(
                    &assignment.module,
                    &input,
                    &assignment.args,
                    &assignment.limits,
                    &stop,
                    &live,
                )
            });
            ran.await.unwrap_or_else(|e| Execution::refused(format!("the wasm executor panicked: {e}")))
        })
    }
}
