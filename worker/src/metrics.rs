//! The worker's Prometheus metrics, at `/metrics` on `WorkerConfig::metrics_listen`:
//! slots and how many are busy, tasks by executor and how they ended, their duration and
//! fuel. Labels are bounded: executors and endings, never task ids.

use std::net::SocketAddr;
use std::sync::Arc;

use icn_protocol::wire::{ExecutorKind, FailureKind, Outcome};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// The agent's slots: how many are busy is read off them at each scrape.
    permits: Arc<tokio::sync::Semaphore>,
    slots: IntGauge,
    slots_busy: IntGauge,
    pub connected: IntGauge,
    tasks: IntCounterVec,
    duration: HistogramVec,
    fuel: HistogramVec,
}

impl Metrics {
    pub fn new(
        slots: u32,
        permits: Arc<tokio::sync::Semaphore>,
        executors: Vec<Box<dyn prometheus::core::Collector>>,
    ) -> Arc<Metrics> {
        let registry = Registry::new();
        for collector in executors {
            registry.register(collector).expect("an executor's metrics are registered once");
        }
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::with_opts(Opts::new(name, help)).expect("a valid gauge");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let opts = HistogramOpts::new(name, help).buckets(buckets);
            let metric = HistogramVec::new(opts, &["executor"]).expect("a valid histogram");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        let tasks = IntCounterVec::new(
            Opts::new("icn_worker_tasks_total", "Task attempts run, by executor and how they ended."),
            &["executor", "ending"],
        )
        .expect("a valid counter");
        registry.register(Box::new(tasks.clone())).expect("registered once");
        let metrics = Metrics {
            slots: gauge("icn_worker_slots", "Task slots this worker offers."),
            slots_busy: gauge("icn_worker_slots_busy", "Task slots running a task now."),
            connected: gauge("icn_worker_connected", "1 while admitted and connected to the coordinator."),
            tasks,
            duration: histogram(
                "icn_worker_task_duration_seconds",
                "Wall-clock time of each task attempt, by executor.",
                prometheus::exponential_buckets(0.001, 2.0, 18).expect("valid buckets"),
            ),
            fuel: histogram(
                "icn_worker_task_fuel",
                "Fuel (wasm instructions, roughly) each task attempt used, by executor.",
                prometheus::exponential_buckets(1_000.0, 10.0, 9).expect("valid buckets"),
            ),
            registry,
            permits,
        };
        metrics.slots.set(i64::from(slots));
        Arc::new(metrics)
    }

    /// A task attempt ended.
    pub fn ran(&self, executor: ExecutorKind, outcome: &Outcome, seconds: f64, fuel: u64) {
        let executor = executor.to_string();
        self.tasks.with_label_values(&[executor.as_str(), ending(outcome)]).inc();
        self.duration.with_label_values(&[executor.as_str()]).observe(seconds);
        self.fuel.with_label_values(&[executor.as_str()]).observe(fuel as f64);
    }

    pub fn render(&self) -> String {
        self.slots_busy.set(self.slots.get() - self.permits.available_permits() as i64);
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text).expect("encoding into memory");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

fn ending(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Exited { code: 0 } => "exited_zero",
        Outcome::Exited { .. } => "exited_nonzero",
        Outcome::Failed { kind, .. } => match kind {
            FailureKind::OutOfFuel => "out_of_fuel",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::Timeout => "timeout",
            FailureKind::Trap => "trap",
            FailureKind::OutputTooLarge => "output_too_large",
            FailureKind::InvalidModule => "invalid_module",
            FailureKind::WorkerError => "worker_error",
            FailureKind::Cancelled => "cancelled",
        },
    }
}

/// Serves `/metrics` on `listen` until the process ends; the address it bound.
pub async fn serve(listen: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<SocketAddr> {
    let scrape = move || {
        let metrics = metrics.clone();
        async move { ([(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], metrics.render()) }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(scrape));
    Ok(icn_transport::http::serve(listen, app, "/metrics").await?.0)
}
