//! Seals: a `SealPoint` from text (`SEQ:HASH`, as `icn journal verify --expect` takes
//! it) and a `Seal` from postcard (as every answer and assignment carries one); and the
//! other ids people type or headers and queries carry, each parsed with its `FromStr`:
//! content ids, keys, scope names, fractions, standing, choices, executors, id prefixes.
//! Whatever parses reads back from its `Display` as itself.
//!
//! Input: one byte of mode (even: text, odd: a postcard `Seal`), then the rest.
#![no_main]

use std::fmt::{Debug, Display};
use std::str::FromStr;

use icn_protocol::governance::{Choice, Fraction, ScopeId, Standing};
use icn_protocol::wire::ExecutorKind;
use icn_protocol::{ContentId, PublicKey, Seal, SealPoint, prefix_bounds};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else { return };
    if mode % 2 == 1 {
        if let Some(seal) = icn_fuzz::canonical_eq::<Seal>(bytes) {
            icn_fuzz::check_seal(&seal);
            let _ = seal.verify(&icn_fuzz::KEY.public());
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    if let Some(point) = reads_back::<SealPoint>(text) {
        let shown = point.to_string();
        let (seq, hash) = shown.split_once(':').expect("SEQ:HASH");
        assert!(seq.bytes().all(|b| b.is_ascii_digit()) && hash.len() == 64, "{shown}");
    }
    reads_back::<ContentId>(text);
    reads_back::<PublicKey>(text);
    if let Some(scope) = reads_back::<ScopeId>(text) {
        assert!(icn_protocol::governance::check_name("scope", scope.as_str()).is_ok());
    }
    if let Some(fraction) = reads_back::<Fraction>(text) {
        assert!(fraction.den > 0 && fraction.num <= fraction.den, "{fraction}");
        assert!(fraction.reached_by(1, 1) && fraction.least_of(1_000_000) <= 1_000_000);
    }
    reads_back::<Standing>(text);
    reads_back::<Choice>(text);
    reads_back::<ExecutorKind>(text);
    if let Ok((low, high)) = prefix_bounds(text) {
        assert!(low <= high, "the bounds of {text:?} are reversed");
    }
});

/// Parses `text` as `T`; when it parses, its `Display` parses as the same value.
fn reads_back<T: FromStr + Display + PartialEq + Debug>(text: &str) -> Option<T>
where
    T::Err: Debug,
{
    let value: T = text.parse().ok()?;
    let shown = value.to_string();
    let again: T = shown
        .parse()
        .unwrap_or_else(|e| panic!("{text:?} parsed, but its display {shown:?} does not: {e:?}"));
    assert_eq!(again, value, "{text:?} shown as {shown:?}");
    Some(value)
}
