//! An `Answer` (a `ClientResponse` and the coordinator's latest seal) as a member's
//! client reads one (`icn_protocol::decode`), then what the client does with it: keeps
//! the seal, and shows the views in words (their `Display`), which must not fail on
//! any value a coordinator can send.
#![no_main]

use icn_protocol::wire::{Answer, ClientResponse, JobState};

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let Some((answer, _)) = icn_fuzz::canonical::<Answer>(bytes) else { return };
    icn_fuzz::check_seal(&answer.seal);
    match answer.response {
        ClientResponse::Job(view) | ClientResponse::Cancelled(view) => {
            show_state(&view.state);
            if let Some(waiting) = &view.waiting {
                let _ = waiting.is_stuck();
                assert!(!waiting.to_string().is_empty());
            }
            if let Some((_, report)) = &view.result {
                icn_fuzz::check_report(report, &Default::default());
            }
        }
        ClientResponse::Jobs(page) => {
            for summary in &page.items {
                show_state(&summary.state);
                assert!(!summary.submitter.to_string().is_empty());
                if let Some(waiting) = &summary.waiting {
                    assert!(!waiting.to_string().is_empty());
                }
            }
        }
        ClientResponse::Trace(trace) => assert!(!trace.to_string().is_empty()),
        ClientResponse::Statement(statement) => assert!(!statement.to_string().is_empty()),
        ClientResponse::Plan(plan) => {
            if let Some(waiting) = &plan.waiting {
                assert!(!waiting.to_string().is_empty());
            }
        }
        ClientResponse::Error(error) => assert_eq!(error.to_string(), error.message),
        ClientResponse::LiveStderr(live) => show_state(&live.state),
        ClientResponse::Members(page) => {
            for member in &page.items {
                assert!(!member.person.to_string().is_empty());
            }
        }
        _ => {}
    }
});

fn show_state(state: &JobState) {
    assert!(JobState::NAMES.contains(&state.name()));
}
