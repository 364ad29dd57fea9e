//! A `WorkerMessage` as the coordinator reads one from a worker's stream
//! (`icn_protocol::decode`), then what it checks of each: a report's signed envelope
//! opened and validated, its output against the digest and size the report names.
#![no_main]

use icn_protocol::ContentId;
use icn_protocol::wire::{ExecutionReport, Limits, WorkerMessage};

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let Some((message, _)) = icn_fuzz::canonical::<WorkerMessage>(bytes) else { return };
    match message {
        WorkerMessage::Report { report, output } => {
            icn_fuzz::check_envelope(&report);
            if let Ok(statement) = report.open_trusted::<ExecutionReport>() {
                icn_fuzz::check_report(&statement, &Limits::default());
                if statement.check_output(&output).is_ok() {
                    assert_eq!(statement.output_digest, ContentId::of(&output));
                    assert_eq!(statement.output_bytes, output.len() as u64);
                }
            }
        }
        WorkerMessage::Heartbeat { .. }
        | WorkerMessage::FetchModule(_)
        | WorkerMessage::Drain
        | WorkerMessage::Progress { .. } => {}
    }
});
