//! Capabilities XML: never a panic; parsing twice gives the same document.
#![no_main]
use libfuzzer_sys::{Corpus, fuzz_target};
use virtsync::derive::caps::parse_capabilities;

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    match parse_capabilities(text) {
        Ok(doc) => {
            assert_eq!(parse_capabilities(text).ok().as_ref(), Some(&doc));
            Corpus::Keep
        }
        Err(_) => Corpus::Reject,
    }
});
