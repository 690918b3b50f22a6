//! Hostile XML: each case a clear error, fast, no panic.

use std::time::{Duration, Instant};

use crate::derive::caps::xml::{MAX_DEPTH, MAX_DOCUMENT_BYTES, parse, parse_bytes};
use crate::derive::caps::*;

const BILLION_LAUGHS: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol9 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<capabilities><host><uuid>&lol9;</uuid></host></capabilities>"#;

fn nested(depth: usize) -> String {
    format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth))
}

fn over_cap() -> String {
    // A well-formed document exactly one byte over the cap.
    let open = "<capabilities>";
    let close = "</capabilities>";
    let fill = MAX_DOCUMENT_BYTES + 1 - open.len() - close.len();
    format!("{open}{}{close}", " ".repeat(fill))
}

#[test]
fn hostile_inputs_are_clear_errors() {
    let cap = over_cap();
    assert_eq!(cap.len(), MAX_DOCUMENT_BYTES + 1);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "billion laughs",
            BILLION_LAUGHS.into(),
            "DTD/entity declarations are not accepted",
        ),
        (
            "external entity",
            br#"<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>"#.to_vec(),
            "DTD/entity declarations are not accepted",
        ),
        (
            "undeclared entity",
            b"<d>&x;</d>".to_vec(),
            "undefined entity &x;",
        ),
        (
            "one byte over the cap",
            cap.into_bytes(),
            "document is 4194305 bytes, over the 4194304-byte limit",
        ),
        (
            "depth 65",
            nested(MAX_DEPTH + 1).into_bytes(),
            "nesting deeper than 64",
        ),
        (
            "depth 10000",
            nested(10_000).into_bytes(),
            "nesting deeper than 64",
        ),
        (
            "depth 65 empty leaf",
            format!("{}<b/>{}", "<a>".repeat(64), "</a>".repeat(64)).into_bytes(),
            "nesting deeper than 64",
        ),
        (
            "unclosed",
            b"<capabilities><host>".to_vec(),
            "malformed XML at byte",
        ),
        (
            "mismatched end",
            b"<a><b></a></b>".to_vec(),
            "malformed XML at byte",
        ),
        (
            "garbage",
            b"not xml at all".to_vec(),
            "malformed XML at byte",
        ),
        ("two roots", b"<a/><b/>".to_vec(), "a second root element"),
        ("empty", Vec::new(), "empty document"),
        ("whitespace only", b"  \n ".to_vec(), "empty document"),
        (
            "non-UTF-8",
            b"<a>\xff\xfe</a>".to_vec(),
            "document is not UTF-8: invalid byte at 3",
        ),
    ];
    for (name, input, want) in cases {
        let start = Instant::now();
        let err = parse_bytes(&input).expect_err(name).to_string();
        assert!(err.contains(want), "{name}: {err}");
        assert!(start.elapsed() < Duration::from_secs(2), "{name} too slow");
        // The document parsers report the same error.
        if let Ok(text) = std::str::from_utf8(&input) {
            let e = parse_capabilities(text).expect_err(name).to_string();
            assert!(e.contains(want), "{name}: {e}");
            assert_eq!(hypervisor_type(text), HypervisorType::Unknown, "{name}");
        }
    }
}

#[test]
fn a_malformed_document_keeps_the_xml_readers_error_as_its_cause() {
    use std::error::Error;
    let err = parse("<a><b></a></b>").expect_err("mismatched end");
    let XmlError::Malformed { position, problem } = &err else {
        panic!("not a malformed-XML error: {err:?}");
    };
    assert!(matches!(problem, Malformed::Xml(_)), "{problem:?}");
    assert!(*position > 0, "the position of the bad end tag");
    let cause = err.source().expect("the cause is kept");
    assert_eq!(cause.to_string(), problem.to_string());
    assert!(err.to_string().ends_with(&cause.to_string()), "{err}");
    // This reader's own rules are causes of their own.
    let two = parse("<a/><b/>").expect_err("two roots");
    assert!(
        matches!(
            two,
            XmlError::Malformed {
                problem: Malformed::SecondRoot,
                position: 4
            }
        ),
        "{two:?}"
    );
}

#[test]
fn depth_64_and_predefined_entities_are_accepted() {
    let root = parse(&nested(MAX_DEPTH)).unwrap();
    assert_eq!(root.name, "a");
    let root = parse("<a t='&lt;&amp;&quot;'>&apos;x&#65;&#x42;<![CDATA[<c>]]></a>").unwrap();
    assert_eq!(root.attr("t"), Some("<&\""));
    assert_eq!(root.text, "'xAB<c>");
}

#[test]
fn wrong_root_and_bad_values() {
    let e = parse_capabilities("<domainCapabilities/>").unwrap_err();
    assert_eq!(
        e.to_string(),
        "root element is <domainCapabilities>, expected <capabilities>"
    );
    let e = parse_domain_capabilities(
        "<domainCapabilities><features><sev supported='yes'><cbitpos>x</cbitpos></sev></features></domainCapabilities>",
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "sev cbitpos: \"x\" is not a valid value");
    let e = parse_capabilities(
        "<capabilities><host><cpu><pages unit='parsecs' size='4'/></cpu></host></capabilities>",
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("page size unit"), "{e}");
}
