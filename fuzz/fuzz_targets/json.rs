//! The JSON of the member HTTP API that lives in `icn-protocol`, through
//! `serde_json::from_slice` as the coordinator and the `icn` client read it: the fields
//! of a signed envelope in JSON (the coordinator's `EnvelopeJson` itself lives in
//! `icn-coordinator`; its protocol field types are read here in the same shape), and the
//! views the client reads from the coordinator's answers. Whatever parses writes back to
//! JSON that parses as the same value (views with an `f64` only parse again: serde_json
//! without `float_roundtrip` may move a float by one ulp), and views with words show.
//!
//! Input: one byte choosing the type, then the JSON.
#![no_main]

use std::fmt::Debug;

use icn_protocol::views::{
    ClearingView, DecisionView, EntryView, MemberView, Paged, PositionsView, ProposalView, QueueView,
    ScopeSummary, ScopeView, Statement, Trace, WorkerView,
};
use icn_protocol::wire::{ApiError, JobSummary, JobView, LiveStderr, PlanView, VersionView};
use icn_protocol::{Kind, PublicKey, Signature};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The shape of the coordinator's `EnvelopeJson`, field for field.
#[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
struct EnvelopeFields {
    #[serde(default)]
    version: Option<u16>,
    kind: Kind,
    signer: PublicKey,
    seq: u64,
    payload: String,
    signature: Signature,
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else { return };
    match which % 18 {
        0 => drop(round_trip::<EnvelopeFields>(json)),
        1 => {
            if let Some(view) = round_trip::<JobView>(json)
                && let Some(waiting) = &view.waiting
            {
                assert!(!waiting.to_string().is_empty());
            }
        }
        2 => drop(round_trip::<ApiError>(json)),
        3 => drop(round_trip::<Paged<JobSummary>>(json)),
        4 => drop(round_trip::<ProposalView>(json)),
        5 => drop(round_trip::<DecisionView>(json)),
        6 => drop(round_trip::<ScopeView>(json)),
        7 => drop(round_trip::<PositionsView>(json)),
        8 => {
            if let Some(statement) = round_trip::<Statement>(json) {
                assert!(statement.to_string().starts_with("statement of "));
            }
        }
        9 => {
            if let Some(trace) = round_trip::<Trace>(json) {
                assert!(!trace.to_string().is_empty());
            }
        }
        10 => parses_again::<Paged<WorkerView>>(json),
        11 => parses_again::<QueueView>(json),
        12 => drop(round_trip::<EntryView>(json)),
        13 => parses_again::<PlanView>(json),
        14 => drop(round_trip::<LiveStderr>(json)),
        15 => drop(round_trip::<VersionView>(json)),
        16 => drop(round_trip::<Paged<MemberView>>(json)),
        _ => {
            drop(round_trip::<Vec<ScopeSummary>>(json));
            drop(round_trip::<ClearingView>(json));
        }
    }
});

/// Parses `json` as `T`; when it parses, it writes JSON that parses as the same value.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(json: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(json).ok()?;
    let written = serde_json::to_vec(&value).expect("a parsed value writes as JSON");
    let again: T = serde_json::from_slice(&written).unwrap_or_else(|e| {
        panic!("{value:?} wrote {:?}, which does not parse: {e}", String::from_utf8_lossy(&written))
    });
    assert_eq!(again, value);
    Some(value)
}

/// Parses `json` as `T`; when it parses, the JSON it writes parses too.
fn parses_again<T: Serialize + DeserializeOwned + Debug>(json: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(json) else { return };
    let written = serde_json::to_vec(&value).expect("a parsed value writes as JSON");
    if let Err(e) = serde_json::from_slice::<T>(&written) {
        panic!("{value:?} wrote {:?}, which does not parse: {e}", String::from_utf8_lossy(&written));
    }
}
