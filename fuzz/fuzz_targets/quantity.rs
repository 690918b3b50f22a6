//! Kubernetes quantities: never a panic; a parsed quantity's canonical form parses back
//! to the same value, and canonicalising that again is a fixed point. (The canonical form
//! itself may change once: apimachinery prints a binary quantity that is no whole
//! multiple of 1024 without a suffix, e.g. `312.5Ki` → `320000`, which then reads as
//! decimal → `320k`; the first fuzz run found this.)
#![no_main]
use libfuzzer_sys::{Corpus, fuzz_target};
use virtsync::derive::quantity;

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    let Ok(q) = quantity::parse(text) else {
        return Corpus::Reject;
    };
    let canonical = q.canonical();
    let again = quantity::parse(&canonical)
        .unwrap_or_else(|e| panic!("{text:?} → {canonical:?} does not parse: {e}"));
    assert_eq!(again.nanos(), q.nanos(), "{text:?} → {canonical:?} changed value");
    let second = again.canonical();
    let third = quantity::parse(&second).map(|q| q.canonical());
    assert_eq!(third.as_deref(), Ok(second.as_str()), "{text:?} → {canonical:?} → {second:?}");
    Corpus::Keep
});
