//! A `ClientRequest` as the coordinator reads one from a member's stream
//! (`icn_protocol::decode`), then what it checks of each: signed statements opened as
//! the kind the request names and validated, an id prefix turned into its bounds.
#![no_main]

use icn_protocol::wire::{ClientRequest, JobState, Submission};
use icn_protocol::{Kind, Signed, prefix_bounds};

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let Some((request, _)) = icn_fuzz::canonical::<ClientRequest>(bytes) else { return };
    assert!(!request.kind().is_empty());
    let expected = match &request {
        ClientRequest::Submit(envelope) | ClientRequest::Plan(envelope) => Some((envelope, Kind::Submission)),
        ClientRequest::Propose(envelope) => Some((envelope, Kind::Proposal)),
        ClientRequest::Vote(envelope) => Some((envelope, Kind::Ballot)),
        ClientRequest::Clear(envelope) => Some((envelope, Kind::ClearRequest)),
        ClientRequest::Cancel(envelope) => Some((envelope, Kind::Cancel)),
        _ => None,
    };
    if let Some((envelope, kind)) = expected {
        icn_fuzz::check_envelope(envelope);
        if kind == Kind::Submission && envelope.open_trusted::<Submission>().is_ok() {
            assert_eq!(envelope.kind, Submission::KIND);
        }
    }
    match &request {
        ClientRequest::Complete { prefix, .. } => {
            if let Ok((low, high)) = prefix_bounds(prefix) {
                assert!(low <= high, "bounds of {prefix:?} are reversed");
                let digits = prefix.trim().to_ascii_lowercase();
                assert!(hex_of(&low).starts_with(&digits) && hex_of(&high).starts_with(&digits));
            }
        }
        ClientRequest::Jobs(query, page) => {
            let _ = query.state.as_deref().map(|state| JobState::NAMES.contains(&state));
            assert!((1..=icn_protocol::views::PAGE_ITEMS_MAX as usize).contains(&page.limit()));
        }
        _ => {}
    }
});

fn hex_of(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
