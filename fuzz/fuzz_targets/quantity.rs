//! Kubernetes quantities: never a panic; a parsed quantity's canonical form parses back
//! to the same value (and the same canonical form).
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
    assert_eq!(again.canonical(), canonical, "{text:?}");
    Corpus::Keep
});
