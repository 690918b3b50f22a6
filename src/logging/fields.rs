//! An event's message and fields, and the `<N>`-prefixed stderr line made of them.

use std::fmt::{self, Write as _};
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

use super::priority;

/// One field's value as text, and whether text output quotes it (a `&str` value, as
/// tracing-subscriber's `fmt` does; `%` and `?` values are shown as they format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FieldValue {
    pub(super) text: String,
    pub(super) quoted: bool,
}

/// An event's message and fields, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    pub(super) message: String,
    pub(super) fields: Vec<(String, FieldValue)>,
}

impl Fields {
    pub(super) fn of(event: &Event<'_>) -> Fields {
        let mut f = Fields::default();
        event.record(&mut f);
        f
    }

    /// A message of our own with string fields.
    pub(super) fn note(message: &str, fields: &[(&str, String)]) -> Fields {
        Fields {
            message: message.to_owned(),
            fields: fields
                .iter()
                .map(|(name, text)| {
                    let value = FieldValue {
                        text: text.clone(),
                        quoted: true,
                    };
                    ((*name).to_owned(), value)
                })
                .collect(),
        }
    }

    /// `message k=v k2="v 2"`: the text format's rendering without timestamp and level.
    pub(super) fn render(&self) -> String {
        let mut out = self.message.clone();
        for (name, value) in &self.fields {
            if !out.is_empty() {
                out.push(' ');
            }
            if value.quoted {
                let _ = write!(out, "{name}={:?}", value.text);
            } else {
                let _ = write!(out, "{name}={}", value.text);
            }
        }
        out
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned(), true);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"), false);
    }
}

impl Fields {
    fn put(&mut self, field: &Field, text: String, quoted: bool) {
        match field.name() {
            "message" => self.message = text,
            // The `log` crate's metadata, bridged as fields: used as metadata instead.
            name if name.starts_with("log.") => {}
            name => self
                .fields
                .push((name.to_owned(), FieldValue { text, quoted })),
        }
    }
}

/// One `<N>`-prefixed line (with its newline): `<4>virtsync::sink::postgres: delta parked
/// vm=tenant-a/web-1 error="..."`. No timestamp (journald stamps each line); line breaks
/// inside the message or a value are written as `\n` so that the event stays one line.
pub fn prefixed_line(level: &Level, target: &str, fields: &Fields) -> String {
    let text = fields.render().replace('\r', "\\r").replace('\n', "\\n");
    format!("<{}>{target}: {text}\n", priority(level))
}

/// Writes each event as a [`prefixed_line`] to its writer (stderr): the journal format
/// when the journal socket cannot be used.
pub struct PrefixLayer<W> {
    writer: W,
}

impl<W> PrefixLayer<W> {
    pub fn new(writer: W) -> Self {
        PrefixLayer { writer }
    }
}

impl<S, W> Layer<S> for PrefixLayer<W>
where
    S: Subscriber,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let line = prefixed_line(meta.level(), meta.target(), &Fields::of(event));
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}
