//! `icn bench`: jobs through a coordinator and local workers over QUIC, beside the same
//! module run in-process with wasmtime, measured in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use icn_protocol::wire::{JobState, Limits};
use icn_protocol::{ContentId, Fuel};
use icn_worker::WasmExecutor;
use tokio::sync::Semaphore;

pub mod container;
pub mod http;
pub mod memory;

use crate::demo::HELLO_WAT;
use crate::local::{LocalCommons, LocalOptions};

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub jobs: usize,
    pub workers: usize,
    pub slots: u32,
    pub in_flight: usize,
}

#[derive(Clone, Debug)]
pub struct BenchReport {
    pub options: BenchOptions,
    pub end_to_end_jobs_per_s: f64,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub in_process_runs_per_s: f64,
}

impl BenchReport {
    pub fn ratio(&self) -> f64 {
        self.end_to_end_jobs_per_s / self.in_process_runs_per_s
    }

    pub fn print(&self) {
        let o = &self.options;
        println!(
            "icn bench: {} trivial wasm jobs, {} workers x {} slots, {} in flight, journal fsync on every commit",
            o.jobs, o.workers, o.slots, o.in_flight
        );
        println!(
            "end to end (submit -> journal -> QUIC -> wasm -> report -> journal -> member): {:.0} jobs/s, latency p50 {:.2} ms, p99 {:.2} ms",
            self.end_to_end_jobs_per_s,
            ms(self.latency_p50),
            ms(self.latency_p99)
        );
        println!(
            "baseline, same module run in-process with wasmtime on one thread: {:.0} runs/s",
            self.in_process_runs_per_s
        );
        println!("ratio end-to-end / in-process: {:.4}", self.ratio());
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

pub async fn run(options: BenchOptions) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(
        options.jobs > 0 && options.workers > 0 && options.slots > 0 && options.in_flight > 0,
        "jobs, workers, slots and in-flight must all be at least 1"
    );
    let bytes = wat::parse_str(HELLO_WAT)?;
    let limits = Limits { fuel: Fuel(1_000_000), ..Limits::default() };

    // The executor drives WASI on a runtime of its own, so it runs off the async threads,
    // exactly as the worker runs it.
    let in_process_runs_per_s = {
        let bytes = bytes.clone();
        let jobs = options.jobs;
        tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
            let executor = WasmExecutor::new()?;
            let module = ContentId::of(&bytes);
            executor.load_module(module, &bytes).map_err(anyhow::Error::msg)?;
            let started = Instant::now();
            for _ in 0..jobs {
                let execution = executor.execute(&module, b"", &[], &limits);
                anyhow::ensure!(
                    execution.output == b"hello from the commons\n",
                    "baseline run failed: {execution:?}"
                );
            }
            Ok(jobs as f64 / started.elapsed().as_secs_f64())
        })
        .await??
    };

    let dir = tempfile::tempdir()?;
    let owners: Vec<String> = (0..options.workers).map(|i| format!("coop-{i}")).collect();
    let owners: Vec<&str> = owners.iter().map(String::as_str).collect();
    let local = LocalOptions {
        owners: &owners,
        slots: options.slots,
        limits: icn_coordinator::limits::RateLimits::unbounded(),
        ..LocalOptions::default()
    };
    let commons = LocalCommons::start(dir.path(), local).await?;
    let client = Arc::new(commons.client().await?);
    let module = client.ensure_module(&bytes).await?;
    let started = Instant::now();
    let mut latencies = drive(&client, module, options.jobs, options.in_flight, limits, |_| vec![]).await?;
    let elapsed = started.elapsed();
    drop(client);
    commons.stop().await?;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    Ok(BenchReport {
        end_to_end_jobs_per_s: options.jobs as f64 / elapsed.as_secs_f64(),
        latency_p50: at(0.50),
        latency_p99: at(0.99),
        in_process_runs_per_s,
        options,
    })
}

/// Runs `count` jobs of `module` through `client`, `in_flight` at a time, the i-th with
/// input `input(i)`; every one must complete. Their latencies, in order of submission.
async fn drive(
    client: &Arc<crate::client::Client>,
    module: ContentId,
    count: usize,
    in_flight: usize,
    limits: Limits,
    input: impl Fn(usize) -> Vec<u8>,
) -> anyhow::Result<Vec<Duration>> {
    let permits = Arc::new(Semaphore::new(in_flight));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let permit = permits.clone().acquire_owned().await?;
        let client = client.clone();
        let submission = crate::local::submission(module, &input(i), limits);
        tasks.push(tokio::spawn(async move {
            let begun = Instant::now();
            let job = client.submit(&submission).await?;
            let view = client.watch(job, |_| {}).await?;
            drop(permit);
            anyhow::ensure!(view.state == JobState::Completed, "job {job} ended {:?}", view.state);
            Ok::<Duration, anyhow::Error>(begun.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for task in tasks {
        latencies.push(task.await??);
    }
    Ok(latencies)
}

// ---- the ledger ----------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct LedgerBenchReport {
    pub postings: usize,
    pub batch: usize,
    pub pure_postings_per_s: f64,
    pub durable_postings_per_s: f64,
    /// The durable path without the journal's index rows.
    pub unindexed_postings_per_s: f64,
    pub sqlite_inserts_per_s: f64,
}

impl LedgerBenchReport {
    pub fn print(&self) {
        println!(
            "icn bench --ledger: {} postings (each a reserve then a post), {} per commit, fsync on every commit",
            self.postings, self.batch
        );
        println!(
            "pure ledger, one thread:                         {:>12.0} postings/s",
            self.pure_postings_per_s
        );
        println!(
            "durable: journal entries, group commit, applied:  {:>12.0} postings/s",
            self.durable_postings_per_s
        );
        println!(
            "durable, without the journal's index rows:       {:>12.0} postings/s",
            self.unindexed_postings_per_s
        );
        println!(
            "baseline, raw SQLite inserts of the same count and batch: {:>12.0} rows/s",
            self.sqlite_inserts_per_s
        );
        println!("ratio pure / raw SQLite:    {:.2}", self.pure_postings_per_s / self.sqlite_inserts_per_s);
        println!(
            "ratio durable / raw SQLite: {:.2}",
            self.durable_postings_per_s / self.sqlite_inserts_per_s
        );
        println!(
            "ratio durable without index / raw SQLite: {:.2}",
            self.unindexed_postings_per_s / self.sqlite_inserts_per_s
        );
    }
}

/// Postings through the pure ledger; through the journal (signed records, hash chain,
/// one sealed commit per batch) and the ledger; and, as the baseline, plain SQLite
/// inserts with the journal's settings and the same batch size.
pub fn ledger(postings: usize, batch: usize) -> anyhow::Result<LedgerBenchReport> {
    use icn_coordinator::journal::{Journal, open_connection};
    use icn_core::record::Record;
    use icn_core::store::JournalStore;
    use icn_core::{Entry, GENESIS_HASH, IndexKey, IndexRow};
    use icn_ledger::{Ledger, TransferId};
    use icn_protocol::governance::{Credits, ScopeId};

    anyhow::ensure!(postings > 0 && batch > 0, "postings and batch must be at least 1");
    let payer: ScopeId = "fed-north".parse()?;
    let payees: Vec<ScopeId> = (0..20).map(|i| format!("coop-{i}").parse()).collect::<Result<_, _>>()?;
    let fresh = || -> anyhow::Result<Ledger> {
        let mut ledger = Ledger::default();
        ledger.open(payer.clone());
        for payee in &payees {
            ledger.open(payee.clone());
        }
        ledger.set_limit(&payer, Credits(icn_ledger::AMOUNT_MAX))?;
        Ok(ledger)
    };
    let ids: Vec<TransferId> =
        (0..postings).map(|i| TransferId::derive("bench", &(i as u64).to_le_bytes())).collect();

    let mut pure = fresh()?;
    let started = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        pure.reserve(*id, &payer, Credits(100))?;
        pure.post(*id, &[(payees[i % payees.len()].clone(), Credits(37))])?;
    }
    let pure_postings_per_s = postings as f64 / started.elapsed().as_secs_f64();
    pure.check().map_err(anyhow::Error::msg)?;

    let dir = tempfile::tempdir()?;
    // The durable path as the coordinator writes it (with the index rows a completion
    // files), and without its index rows: what the index costs.
    let durable_run = |name: &str, indexed: bool| -> anyhow::Result<f64> {
        let key = icn_protocol::Keypair::generate();
        let mut journal = Journal::open(&dir.path().join(name), key.public())?;
        let mut durable = fresh()?;
        let (mut prev, mut seq) = (GENESIS_HASH, 0u64);
        let started = Instant::now();
        for (chunk_index, chunk) in ids.chunks(batch).enumerate() {
            let mut entries = Vec::with_capacity(chunk.len());
            let mut index = Vec::with_capacity(chunk.len() * 3);
            for (i, id) in chunk.iter().enumerate() {
                let payee = payees[(chunk_index * batch + i) % payees.len()].clone();
                let record = Record::JobCompleted {
                    job: icn_protocol::JobId(id.0),
                    output_digest: icn_protocol::ContentId::of(b""),
                    fuel: icn_protocol::Fuel(37_000_000),
                    worker: key.public(),
                    payees: vec![(payee.clone(), Credits(37))],
                };
                let entry = Entry::new(seq, prev, None, 0, key.public(), &record);
                if indexed {
                    // The rows the core files for a completion: the job, the payer, the payee.
                    index.push(IndexRow { key: IndexKey::Job(icn_protocol::JobId(id.0)), seq, change: 0 });
                    index.push(IndexRow { key: IndexKey::Scope(payer.clone()), seq, change: -37 });
                    index.push(IndexRow { key: IndexKey::Scope(payee.clone()), seq, change: 37 });
                }
                durable.reserve(*id, &payer, Credits(100))?;
                durable.post(*id, &[(payee, Credits(37))])?;
                prev = entry.hash;
                seq += 1;
                entries.push(entry);
            }
            entries.last_mut().expect("chunks are not empty").seal_with(&key);
            journal.append(&entries, &index, &[])?;
        }
        Ok(postings as f64 / started.elapsed().as_secs_f64())
    };
    let durable_postings_per_s = durable_run("journal.db", true)?;
    let unindexed_postings_per_s = durable_run("unindexed.db", false)?;

    let connection = open_connection(&dir.path().join("baseline.db"))?;
    connection.execute_batch(
        // Rows appended in key order, like the journal's: the cheapest honest insert.
        "CREATE TABLE postings (seq INTEGER PRIMARY KEY, id BLOB NOT NULL, payer TEXT NOT NULL, payee TEXT NOT NULL, amount INTEGER NOT NULL)",
    )?;
    let started = Instant::now();
    for (chunk_index, chunk) in ids.chunks(batch).enumerate() {
        let transaction = connection.unchecked_transaction()?;
        {
            let mut insert =
                transaction.prepare_cached("INSERT INTO postings VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for (i, id) in chunk.iter().enumerate() {
                let n = chunk_index * batch + i;
                let payee = payees[n % payees.len()].as_str();
                insert.execute(rusqlite::params![n as i64, id.0.0.as_slice(), payer.as_str(), payee, 37])?;
            }
        }
        transaction.commit()?;
    }
    let sqlite_inserts_per_s = postings as f64 / started.elapsed().as_secs_f64();
    Ok(LedgerBenchReport {
        postings,
        batch,
        pure_postings_per_s,
        durable_postings_per_s,
        unindexed_postings_per_s,
        sqlite_inserts_per_s,
    })
}

// ---- placement -------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct PlacementBenchReport {
    pub workers: usize,
    pub placements: usize,
    pub indexed_per_s: f64,
    pub naive_per_s: f64,
}

impl PlacementBenchReport {
    pub fn print(&self) {
        println!(
            "icn bench --placement: {} placements of 2 replicas among {} workers of {} cooperatives, one thread",
            self.placements,
            self.workers,
            self.workers / 10
        );
        println!("indexed pool:                 {:>12.0} placements/s", self.indexed_per_s);
        println!("baseline, scan and sort all:  {:>12.0} placements/s", self.naive_per_s);
        println!("ratio indexed / scan:         {:.1}", self.indexed_per_s / self.naive_per_s);
    }
}

/// Placements among `workers` registered workers (ten per cooperative, mixed trust,
/// some busy or quarantined): the indexed pool against scoring and sorting every worker.
/// Each placement takes its workers' slots and a later one gives them back, as tasks do.
pub fn placement(workers: usize, placements: usize) -> anyhow::Result<PlacementBenchReport> {
    use icn_placement::{Candidate, Pool, Request, Trust, Weights, naive_place};
    use icn_protocol::wire::ExecutorKind;

    anyhow::ensure!(workers >= 20 && placements > 0, "at least 20 workers and 1 placement");
    let weights = Weights::default();
    let mut pool = Pool::new(weights);
    let mut all = Vec::with_capacity(workers);
    for i in 0..workers {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let candidate = Candidate {
            key: icn_protocol::PublicKey(key),
            owner: format!("coop-{}", i / 10).parse()?,
            slots: 4,
            free_slots: (i % 5) as u32,
            memory_bytes: 1 << 30,
            executors: vec![ExecutorKind::Wasm],
            quarantined: i % 97 == 0,
            trust: Trust { agreements: (i % 50) as u64, disagreements: (i % 7 == 0) as u64, missed: 0 },
        };
        pool.insert(candidate.clone());
        all.push(candidate);
    }
    let request = Request::new(ExecutorKind::Wasm, 64 << 20, 2);
    let mut held = std::collections::VecDeque::new();
    let started = Instant::now();
    for _ in 0..placements {
        let chosen = pool.place(&request);
        anyhow::ensure!(chosen.len() == 2, "the pool ran out of free workers");
        for (key, _) in &chosen {
            pool.update(key, |c| c.free_slots -= 1);
            held.push_back(*key);
        }
        while held.len() > 1_000 {
            let key = held.pop_front().expect("non-empty");
            pool.update(&key, |c| c.free_slots += 1);
        }
    }
    let indexed_per_s = placements as f64 / started.elapsed().as_secs_f64();

    // The baseline sees the same workers; it does not change them, so it always finds some.
    let naive_runs = (placements / 100).max(10);
    let earned = |_: &icn_protocol::governance::ScopeId| 0;
    let started = Instant::now();
    for _ in 0..naive_runs {
        let chosen = naive_place(&all, &earned, &weights, &request);
        anyhow::ensure!(chosen.len() == 2, "no two free workers of distinct owners");
    }
    let naive_per_s = naive_runs as f64 / started.elapsed().as_secs_f64();
    Ok(PlacementBenchReport { workers, placements, indexed_per_s, naive_per_s })
}

/// The seeded simulation: trust-aware placement against fixed two-fold replication.
pub fn simulate(config: &icn_placement::sim::SimConfig) {
    use icn_placement::sim;
    println!(
        "icn bench --simulate: {} workers in {} cooperatives, {} independent Byzantine workers, {} colluding cooperative, {} tasks, seed {}",
        config.workers,
        config.cooperatives,
        config.byzantine,
        usize::from(config.colluding_cooperative),
        config.tasks,
        config.seed
    );
    for report in [sim::trust_aware(config), sim::fixed_two_fold(config)] {
        println!(
            "{:<15} accepted {:>5}  wrong {:>3} (byzantine {}, colluders {})  replicas/accepted {:.2}  replicas/task late {:.2}  disputes unresolved {}  quarantined: byzantine {} colluders {} honest {}  earnings max/min {:.2} gini {:.3}",
            report.strategy,
            report.accepted,
            report.wrong_accepted,
            report.wrong_from_byzantine,
            report.wrong_from_colluders,
            report.replicas_per_accepted,
            report.replicas_per_task_late,
            report.tasks - report.accepted,
            report.quarantined_byzantine,
            report.quarantined_colluders,
            report.quarantined_honest,
            report.earnings_max_over_min,
            report.earnings_gini
        );
    }
}
