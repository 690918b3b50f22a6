//! Configuration TOML: never a panic; a valid configuration parses the same twice, and
//! an error names a key.
#![no_main]
use libfuzzer_sys::{Corpus, fuzz_target};
use virtsync::config::{Config, Env};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    let env = Env {
        hostname: "fuzz-host".into(),
        vars: Vec::new(),
    };
    match Config::parse(text, &env, &[]) {
        Ok(cfg) => {
            assert_eq!(Config::parse(text, &env, &[]).ok().as_ref(), Some(&cfg));
            Corpus::Keep
        }
        Err(e) => {
            assert!(!e.key.is_empty() && !e.problem.is_empty(), "{e:?}");
            Corpus::Reject
        }
    }
});
