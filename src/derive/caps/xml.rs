//! A bounded XML reader over quick-xml. quick-xml expands no entities but has
//! no size or depth limits of its own, so this reader adds them while it builds a small
//! element tree:
//!
//! - documents over [`MAX_DOCUMENT_BYTES`] are refused before any parsing;
//! - nesting deeper than [`MAX_DEPTH`] elements is refused as soon as it is seen;
//! - any `<!DOCTYPE` (and with it every DTD / `<!ENTITY` trick) is refused;
//! - only the five predefined entities (`&amp;` `&lt;` `&gt;` `&apos;` `&quot;`) and
//!   character references are decoded; any other `&name;` is an error;
//! - the input must be UTF-8 with exactly one root element and matching end tags.

use std::borrow::Cow;

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

/// Largest document accepted: 4 MiB (real capability documents are ~10–70 KiB).
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;
/// Deepest element nesting accepted (the root is depth 1; libvirt documents reach ~8).
pub const MAX_DEPTH: usize = 64;

/// Why a document was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum XmlError {
    #[error("document is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("nesting deeper than {limit} at byte {position}")]
    TooDeep { limit: usize, position: u64 },
    #[error("DTD/entity declarations are not accepted (<!DOCTYPE at byte {position})")]
    Dtd { position: u64 },
    #[error("undefined entity &{name}; at byte {position} (only the predefined five are decoded)")]
    UnknownEntity { name: String, position: u64 },
    #[error("document is not UTF-8: invalid byte at {position}")]
    NotUtf8 { position: usize },
    #[error("empty document: no root element")]
    Empty,
    #[error("malformed XML at byte {position}: {problem}")]
    Malformed {
        position: u64,
        #[source]
        problem: Malformed,
    },
}

/// What was wrong with a malformed document: quick-xml's own error, or a rule of this
/// reader.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Malformed {
    #[error(transparent)]
    Xml(#[from] quick_xml::Error),
    #[error("a second root element")]
    SecondRoot,
    #[error("end tag without a start tag")]
    EndWithoutStart,
    #[error("unexpected end of document: <{0}> not closed")]
    Unclosed(String),
    #[error("text outside the root element")]
    TextOutsideRoot,
}

/// One element: its name, attributes in document order, child elements and the
/// concatenation of its own text (entities decoded, not trimmed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child element called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All child elements called `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element reached by following `path` (first match at each step).
    pub fn path(&self, path: &[&str]) -> Option<&Element> {
        path.iter().try_fold(self, |e, name| e.child(name))
    }

    /// The trimmed text, `None` when empty.
    pub fn text_trimmed(&self) -> Option<&str> {
        let t = self.text.trim();
        (!t.is_empty()).then_some(t)
    }

    /// The trimmed text of the child `name`, `None` when absent or empty.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).and_then(Element::text_trimmed)
    }

    /// `supported='yes'` → true, `'no'` → false, anything else → `None`.
    pub fn supported(&self) -> Option<bool> {
        yes_no(self.attr("supported")?)
    }
}

/// `yes`/`no` (also `on`/`off`) as a bool.
pub fn yes_no(v: &str) -> Option<bool> {
    match v.trim() {
        "yes" | "on" => Some(true),
        "no" | "off" => Some(false),
        _ => None,
    }
}

/// Parses bytes: size cap first, then UTF-8, then the bounded tree.
pub fn parse_bytes(input: &[u8]) -> Result<Element, XmlError> {
    check_size(input.len())?;
    let text = std::str::from_utf8(input).map_err(|e| XmlError::NotUtf8 {
        position: e.valid_up_to(),
    })?;
    parse_bounded(text)
}

/// Parses a document with the bounds of this module.
pub fn parse(input: &str) -> Result<Element, XmlError> {
    check_size(input.len())?;
    parse_bounded(input)
}

fn check_size(size: usize) -> Result<(), XmlError> {
    if size > MAX_DOCUMENT_BYTES {
        return Err(XmlError::TooLarge {
            size,
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    Ok(())
}

fn malformed(position: u64, problem: impl Into<Malformed>) -> XmlError {
    XmlError::Malformed {
        position,
        problem: problem.into(),
    }
}

fn start(e: &BytesStart<'_>, position: u64) -> Result<Element, XmlError> {
    let name = e.name().as_ref().to_string();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| malformed(position, quick_xml::Error::from(err)))?;
        let key = a.key.as_ref().to_string();
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| malformed(position, err))?;
        attrs.push((key, value.into_owned()));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

fn predefined(name: &str) -> Option<&'static str> {
    Some(match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "apos" => "'",
        "quot" => "\"",
        _ => return None,
    })
}

fn parse_bounded(input: &str) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(input);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| malformed(reader.error_position(), e))?;
        match event {
            Event::DocType(_) => return Err(XmlError::Dtd { position }),
            Event::Start(_) | Event::Empty(_) if root.is_some() && stack.is_empty() => {
                return Err(malformed(position, Malformed::SecondRoot));
            }
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep {
                        limit: MAX_DEPTH,
                        position,
                    });
                }
                stack.push(start(&e, position)?);
            }
            Event::Empty(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep {
                        limit: MAX_DEPTH,
                        position,
                    });
                }
                let el = start(&e, position)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let Some(el) = stack.pop() else {
                    return Err(malformed(position, Malformed::EndWithoutStart));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => add_text(&mut stack, &t.xml10_content(), position)?,
            Event::CData(c) => add_text(&mut stack, &c, position)?,
            Event::GeneralRef(r) => {
                let resolved: Cow<'_, str> = if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(ch)) => Cow::Owned(ch.to_string()),
                        Ok(None) => Cow::Borrowed(""),
                        Err(e) => return Err(malformed(position, e)),
                    }
                } else {
                    let name = r.xml10_content();
                    match predefined(&name) {
                        Some(v) => Cow::Borrowed(v),
                        None => {
                            return Err(XmlError::UnknownEntity {
                                name: name.into_owned(),
                                position,
                            });
                        }
                    }
                };
                add_text(&mut stack, &resolved, position)?;
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(malformed(
            reader.buffer_position(),
            Malformed::Unclosed(open.name.clone()),
        ));
    }
    root.ok_or(XmlError::Empty)
}

fn add_text(stack: &mut [Element], text: &str, position: u64) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(el) => {
            el.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(malformed(position, Malformed::TextOutsideRoot)),
    }
}
