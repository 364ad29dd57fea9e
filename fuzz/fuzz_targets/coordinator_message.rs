//! What a worker reads from the coordinator (`icn_protocol::decode`): the answer to its
//! hello (`HelloReply`, a signed `Welcome`) when the first byte is odd, else a
//! `CoordinatorMessage` (an assignment with its input and seal, a module, a cancel).
#![no_main]

use icn_protocol::wire::{CoordinatorMessage, HelloReply, check_input};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    if selector % 2 == 1 {
        if let Some((HelloReply::Welcome(envelope), _)) = icn_fuzz::canonical::<HelloReply>(bytes) {
            icn_fuzz::check_envelope(&envelope);
        }
        return;
    }
    let Some((message, _)) = icn_fuzz::canonical::<CoordinatorMessage>(bytes) else { return };
    if let CoordinatorMessage::Assign { assignment, input, seal } = message {
        icn_fuzz::check_limits(&assignment.limits);
        if check_input(&input).is_ok() {
            assert!(input.len() <= icn_protocol::wire::INPUT_SIZE_BYTES_MAX);
        }
        icn_fuzz::check_seal(&seal);
    }
});
