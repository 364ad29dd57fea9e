//! The ICN worker agent: connects to the coordinator over QUIC, proves its key, reports
//! its capacity, and runs the tasks it is given through its executors (the wasm sandbox, Docker containers).

pub mod agent;
pub mod container;
pub mod executor;
pub mod metrics;
pub mod wasm;

pub use agent::{Drain, Worker, WorkerConfig, run};
pub use container::{ContainerConfig, ContainerExecutor};
pub use executor::{Execution, Executor, Executors, LiveStderr};
pub use wasm::WasmExecutor;
