//! Domain-capabilities XML: never a panic; deterministic.
#![no_main]
use libfuzzer_sys::{Corpus, fuzz_target};
use virtsync::derive::caps::parse_domain_capabilities;

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    match parse_domain_capabilities(text) {
        Ok(doc) => {
            assert_eq!(parse_domain_capabilities(text).ok().as_ref(), Some(&doc));
            Corpus::Keep
        }
        Err(_) => Corpus::Reject,
    }
});
