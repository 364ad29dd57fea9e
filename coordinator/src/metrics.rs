//! The coordinator's Prometheus metrics, served at `/metrics` on the address the config
//! names (`metrics_listen`). Counters and histograms are kept as things happen (requests
//! refused, journal appends); the state of the commons — jobs, queues, workers, proposals,
//! accounts — is read from the core at each scrape ([`icn_core::gauges::Gauges`]).
//! Names follow Prometheus conventions (base units, `_total`, `_seconds`); labels are
//! bounded: scopes, states, trust bands, request kinds and refusal codes, never job ids.

use std::net::SocketAddr;
use std::sync::Arc;

use icn_core::gauges::Gauges;
use icn_core::observe::Observation;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::api::MemberApi;

pub struct Metrics {
    registry: Registry,
    /// How long each batch's journal append (one transaction, one fsync) took.
    pub journal_append_seconds: Histogram,
    /// Entries each batch appended.
    pub journal_batch_entries: Histogram,
    /// Member requests refused, by request kind and refusal code.
    pub refused: IntCounterVec,
    submitted: IntCounterVec,
    ended: IntCounterVec,
    queue_wait: HistogramVec,
    placement_latency: HistogramVec,
    replicas_placed: IntCounterVec,
    job_replicas: Histogram,
    disagreements: prometheus::IntCounter,
    posted: IntCounterVec,
    jobs: IntGaugeVec,
    queued: IntGaugeVec,
    recent_usage: GaugeVec,
    workers: IntGaugeVec,
    slots: IntGauge,
    free_slots: IntGauge,
    proposals_open: IntGauge,
    disputes_open: IntGauge,
    positions: IntGaugeVec,
    reserved: IntGaugeVec,
    journal_entries: IntGauge,
    /// Request nonces the HTTP API remembers now (members' only, each within the clock
    /// window).
    pub http_nonces: IntGauge,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| Opts::new(name, help);
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("a valid histogram");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        let journal_append_seconds = histogram(
            "icn_journal_append_duration_seconds",
            "Time to append one batch of entries to the journal, fsync included.",
            prometheus::exponential_buckets(0.0005, 2.0, 14).expect("valid buckets"),
        );
        let journal_batch_entries = histogram(
            "icn_journal_batch_entries",
            "Entries appended to the journal in one batch (one transaction).",
            prometheus::exponential_buckets(1.0, 2.0, 13).expect("valid buckets"),
        );
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(opts(name, help), labels).expect("a valid counter");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        let refused = counter_vec(
            "icn_requests_refused_total",
            "Member requests refused, by request kind and refusal code.",
            &["request", "reason"],
        );
        let histogram_vec = |name: &str, help: &str, label: &str, buckets: Vec<f64>| {
            let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &[label])
                .expect("a valid histogram");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        let waits = || prometheus::exponential_buckets(0.001, 2.0, 20).expect("valid buckets");
        let submitted = counter_vec("icn_jobs_submitted_total", "Jobs admitted, by scope.", &["scope"]);
        let ended = counter_vec(
            "icn_jobs_ended_total",
            "Jobs that ended (completed, failed, cancelled) or went to dispute, by scope and state.",
            &["scope", "state"],
        );
        let queue_wait = histogram_vec(
            "icn_queue_wait_seconds",
            "Time from a job's admission to its first replica's placement, by scope.",
            "scope",
            waits(),
        );
        let placement_latency = histogram_vec(
            "icn_placement_latency_seconds",
            "Time from a replica being wanted (admitted, requeued, asked for) to its placement, by executor.",
            "executor",
            waits(),
        );
        let replicas_placed = counter_vec(
            "icn_replicas_placed_total",
            "Replicas placed on workers, by executor.",
            &["executor"],
        );
        let job_replicas = histogram(
            "icn_job_replicas",
            "Replicas a job placed before it ended.",
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0],
        );
        let disagreements = prometheus::IntCounter::new(
            "icn_disagreements_total",
            "Replica results that disagreed with the accepted result.",
        )
        .expect("a valid counter");
        registry.register(Box::new(disagreements.clone())).expect("registered once");
        let posted = counter_vec(
            "icn_ledger_posted_credits_total",
            "Credits paid from each scope to the cooperatives that ran its jobs.",
            &["scope"],
        );
        let int_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(opts(name, help), labels).expect("a valid gauge");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        let int = |name: &str, help: &str| {
            let metric = IntGauge::with_opts(opts(name, help)).expect("a valid gauge");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        let recent_usage = GaugeVec::new(
            opts(
                "icn_scope_recent_usage_seconds",
                "Slot time a scope's jobs held recently, decaying by half every share half-life.",
            ),
            &["scope"],
        )
        .expect("a valid gauge");
        registry.register(Box::new(recent_usage.clone())).expect("registered once");
        Arc::new(Metrics {
            journal_append_seconds,
            journal_batch_entries,
            refused,
            submitted,
            ended,
            queue_wait,
            placement_latency,
            replicas_placed,
            job_replicas,
            disagreements,
            posted,
            jobs: int_vec("icn_jobs", "Jobs the coordinator holds, by scope and state.", &["scope", "state"]),
            queued: int_vec("icn_queue_jobs", "Jobs waiting for a worker, by scope.", &["scope"]),
            recent_usage,
            workers: int_vec(
                "icn_workers_connected",
                "Connected workers by trust band (new, low, medium, high) or quarantined.",
                &["band"],
            ),
            slots: int("icn_slots", "Task slots of connected workers."),
            free_slots: int("icn_slots_free", "Task slots of connected workers free now."),
            proposals_open: int("icn_proposals_open", "Proposals open for voting."),
            http_nonces: int(
                "icn_http_nonces_remembered",
                "Signed HTTP requests' nonces remembered against replay (members' only, within the clock window).",
            ),
            disputes_open: int(
                "icn_disputes_open",
                "Jobs in dispute, waiting for a decision of the commons.",
            ),
            positions: int_vec(
                "icn_ledger_position_credits",
                "Each account's posted position in the mutual-credit ledger.",
                &["scope"],
            ),
            reserved: int_vec(
                "icn_ledger_reserved_credits",
                "Credits each account holds reserved for jobs not yet ended.",
                &["scope"],
            ),
            journal_entries: int("icn_journal_entries", "Entries in the journal."),
            registry,
        })
    }

    /// Counts what a batch's records did.
    pub fn observe(&self, observations: impl IntoIterator<Item = Observation>) {
        for observation in observations {
            match observation {
                Observation::Submitted { scope } => self.submitted.with_label_values(&[scope.as_str()]).inc(),
                Observation::Placed { scope, executor, waited_ms, queued_ms } => {
                    let executor = executor.to_string();
                    self.replicas_placed.with_label_values(&[executor.as_str()]).inc();
                    self.placement_latency
                        .with_label_values(&[executor.as_str()])
                        .observe(waited_ms as f64 / 1000.0);
                    if let Some(queued_ms) = queued_ms {
                        self.queue_wait
                            .with_label_values(&[scope.as_str()])
                            .observe(queued_ms as f64 / 1000.0);
                    }
                }
                Observation::Disagreed { dissenting } => self.disagreements.inc_by(u64::from(dissenting)),
                Observation::Ended { scope, state, replicas } => {
                    self.ended.with_label_values(&[scope.as_str(), state]).inc();
                    self.job_replicas.observe(f64::from(replicas));
                }
                Observation::Posted { scope, credits } => {
                    self.posted.with_label_values(&[scope.as_str()]).inc_by(credits.max(0) as u64);
                }
            }
        }
    }

    /// The text exposition of every metric, with the core's gauges as `gauges` says.
    pub fn render(&self, gauges: &Gauges) -> String {
        self.jobs.reset();
        for ((scope, state), count) in &gauges.jobs {
            self.jobs.with_label_values(&[scope.as_str(), state]).set(*count as i64);
        }
        self.queued.reset();
        for (scope, count) in &gauges.queued {
            self.queued.with_label_values(&[scope.as_str()]).set(*count as i64);
        }
        self.recent_usage.reset();
        for (scope, seconds) in &gauges.recent_usage_seconds {
            self.recent_usage.with_label_values(&[scope.as_str()]).set(*seconds);
        }
        for (band, count) in &gauges.workers {
            self.workers.with_label_values(&[band]).set(*count as i64);
        }
        self.slots.set(gauges.slots as i64);
        self.free_slots.set(gauges.free_slots as i64);
        self.proposals_open.set(gauges.proposals_open as i64);
        self.disputes_open.set(gauges.disputes_open as i64);
        for (scope, position) in &gauges.positions {
            self.positions.with_label_values(&[scope.as_str()]).set(*position);
        }
        for (scope, reserved) in &gauges.reserved {
            self.reserved.with_label_values(&[scope.as_str()]).set(*reserved);
        }
        self.journal_entries.set(gauges.journal_entries as i64);
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text).expect("encoding into memory");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

/// Serves `/metrics` on `listen` until the process ends; the address it bound.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    api: Arc<MemberApi>,
) -> anyhow::Result<SocketAddr> {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let scrape = move || {
        let (metrics, api) = (metrics.clone(), api.clone());
        async move {
            match api.read(|core| core.gauges()).await {
                Ok(gauges) => (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                    metrics.render(&gauges),
                )
                    .into_response(),
                Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.message).into_response(),
            }
        }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(scrape));
    Ok(icn_transport::http::serve(listen, app, "/metrics").await?.0)
}
