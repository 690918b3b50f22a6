//! Socket API requests (method, path, query, body) → a route or an error reply: never a
//! panic; an error is a 4xx with a JSON message.
#![no_main]
use libfuzzer_sys::{Corpus, fuzz_target};
use virtsync::api::route;

fuzz_target!(|data: &[u8]| -> Corpus {
    // Line 1: method; line 2: path with an optional ?query; the rest: the body.
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Corpus::Reject;
    };
    let body = parts.next().unwrap_or_default();
    let Ok(method) = http::Method::from_bytes(method) else {
        return Corpus::Reject;
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return Corpus::Reject;
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if let Err((status, body)) = route(&method, path, query, body) {
        assert!(status.is_client_error(), "{status}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    Corpus::Keep
});
