//! Network blips between a worker and its coordinator: the worker's packets go through a
//! UDP relay the test can cut. A worker that loses its connection mid-task and comes
//! back resumes: its task is not requeued, it loses no trust, and its report, made while
//! it was cut off, is delivered on the new connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use icn_cli::local::{self, LocalCommons, LocalOptions};
use icn_coordinator::journal;
use icn_core::record::Record;
use icn_protocol::wire::Limits;
use icn_protocol::{Keypair, PublicKey};
use tokio::net::UdpSocket;

/// Relays datagrams between one client and `target`, dropping them all while `cut` is set.
async fn relay(target: SocketAddr, cut: Arc<AtomicBool>) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(target).await.unwrap();
    let addr = front.local_addr().unwrap();
    let client: Arc<tokio::sync::Mutex<Option<SocketAddr>>> = Arc::default();
    {
        let (front, back, cut, client) = (front.clone(), back.clone(), cut.clone(), client.clone());
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 65_536];
            while let Ok((n, from)) = front.recv_from(&mut buffer).await {
                *client.lock().await = Some(from);
                if !cut.load(Ordering::Relaxed) {
                    let _ = back.send(&buffer[..n]).await;
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 65_536];
        while let Ok(n) = back.recv(&mut buffer).await {
            let to = *client.lock().await;
            if let Some(to) = to.filter(|_| !cut.load(Ordering::Relaxed)) {
                let _ = front.send_to(&buffer[..n], to).await;
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_mid_task_resumes_and_its_report_arrives_on_the_new_connection() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(Keypair::generate());
    let extra: &'static [(PublicKey, &'static str)] = Box::leak(Box::new([(key.public(), "coop-r")]));
    // The worker may be silent for 8 s before it counts as lost; the cut lasts 4 s, longer
    // than the 3 s QUIC idle timeout, so both ends see the connection die.
    let options = LocalOptions {
        owners: &[],
        worker_timeout_ms: 8_000,
        extra_workers: extra,
        ..LocalOptions::default()
    };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    let relayed = relay(commons.coordinator.addr(), cut.clone()).await;
    let config = icn_worker::WorkerConfig {
        key: key.clone(),
        coordinator: relayed,
        coordinator_key: commons.coordinator.public_key(),
        slots: 1,
        memory_bytes: 256 << 20,
        metrics_listen: None,
        agent: "blip".into(),
    };
    let worker = tokio::spawn(icn_worker::run(config, Arc::new(icn_worker::WasmExecutor::new().unwrap())));
    commons.wait_for_workers(1).await.unwrap();

    let ana = commons.client().await.unwrap();
    let busy = include_str!("../../examples/wat/busy.wat");
    let module = ana.ensure_module(&wat::parse_str(busy).unwrap()).await.unwrap();
    let limits =
        Limits { fuel: icn_protocol::Fuel(100_000_000_000), timeout_ms: 60_000, ..Limits::default() };
    let job = ana.submit(&local::submission(module, &[b'x'; 150], limits)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !matches!(ana.status(job).await.unwrap().state, icn_protocol::wire::JobState::Running { .. }) {
        assert!(tokio::time::Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Time to fetch the module, then cut the worker off while the task runs (~1.5 s).
    tokio::time::sleep(Duration::from_millis(300)).await;
    cut.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    cut.store(false, Ordering::Relaxed);

    let view = tokio::time::timeout(Duration::from_secs(30), ana.watch(job, |_| {})).await.unwrap().unwrap();
    assert_eq!(ana.output(job).await.unwrap(), b"done\n", "{view:?}");
    let records: Vec<Record> =
        journal::read(&commons.journal).unwrap().iter().map(|e| e.decode_record().unwrap()).collect();
    let requeued = records.iter().filter(|r| matches!(r, Record::TaskRequeued { .. })).count();
    assert_eq!(requeued, 0, "the task stayed with its worker across the cut");
    assert_eq!(view.attempts, 1);
    let workers = ana.workers().await.unwrap();
    let me = workers.iter().find(|w| w.key == key.public()).unwrap();
    assert!(me.connected && me.trust.missed == 0, "{me:?}");
    worker.abort();
    commons.stop().await.unwrap();
}
