//! The schema agrees with the code that parses and checks the keys: each default is the
//! built-in value, the comments name the bounds that `build` enforces and the default.

use super::*;
use crate::config::render::entry;
use crate::config::schema::{self, Check, Kind, Preset};
use crate::config::values::format_size;

/// `key` set to its default, alone in a file.
fn default_alone(spec: &schema::KeySpec) -> String {
    let body = entry(spec, None);
    match spec.key.split_once('.') {
        Some((section, _)) if !matches!(spec.default, Preset::Table(_)) => {
            format!("[{section}]\n{body}")
        }
        _ => body,
    }
}

#[test]
fn each_default_alone_gives_the_built_in_value() {
    let env = env_with(&[]);
    let defaults = Config::defaults(&env);
    let mut checked = 0;
    for spec in schema::keys() {
        if matches!(spec.default, Preset::Unset { .. }) {
            continue;
        }
        let text = default_alone(spec);
        match Config::parse(&text, &env, &[]) {
            Ok(c) => assert_eq!(c, defaults, "{}: the schema's default\n{text}", spec.key),
            Err(e) => panic!(
                "{}: the schema's default does not parse: {e}\n{text}",
                spec.key
            ),
        }
        checked += 1;
    }
    assert!(checked > 20, "only {checked} defaults checked");
}

/// Keys without a fixed default are exactly the optional strings (and the shipped
/// file shows them commented out).
#[test]
fn only_optional_strings_have_no_default() {
    for spec in schema::keys() {
        assert_eq!(
            matches!(spec.default, Preset::Unset { .. }),
            spec.kind == Kind::OptStr,
            "{}",
            spec.key
        );
        assert_eq!(
            matches!(spec.default, Preset::Table(_)),
            spec.kind == Kind::ArchLists,
            "{}",
            spec.key
        );
    }
}

#[test]
fn keys_are_unique_and_in_their_section() {
    let mut seen = Vec::new();
    for section in schema::SCHEMA {
        assert!(!section.keys.is_empty(), "[{}] has no keys", section.name);
        for spec in section.keys {
            let expected = match section.name {
                "" => spec.name().to_owned(),
                name => format!("{name}.{}", spec.name()),
            };
            assert_eq!(spec.key, expected, "in section {:?}", section.name);
            assert!(!seen.contains(&spec.key), "{} is listed twice", spec.key);
            seen.push(spec.key);
        }
    }
}

/// What an operator reads above a key: a "Default:" and an "Accepted:" part, the
/// default's own value, and the bounds `build` checks.
#[test]
fn comments_name_the_default_and_the_bounds() {
    // Defaults the comment describes in words.
    const IN_WORDS: &[&str] = &["owns", "libvirt.socket_template"];
    for spec in schema::keys() {
        let doc = spec.doc.join(" ");
        let (Some(d), Some(a)) = (doc.find("Default:"), doc.find("Accepted:")) else {
            panic!(
                "{}: the comment needs \"Default:\" and \"Accepted:\"",
                spec.key
            );
        };
        let default_text = &doc[d..if a > d { a } else { doc.len() }];
        if let Preset::Toml(literal) = spec.default
            && !IN_WORDS.contains(&spec.key)
        {
            assert!(
                default_text.contains(literal),
                "{}: {default_text:?} does not show the default {literal}",
                spec.key
            );
        }
        let accepted = &doc[a..];
        let mut named = Vec::new();
        match spec.check {
            Check::None => {}
            Check::Duration { min, max } => {
                if min == Duration::from_nanos(1) {
                    named.push("greater than 0s".to_owned());
                } else if !min.is_zero() {
                    named.push(format_duration(min));
                }
                named.extend(max.map(format_duration));
            }
            Check::Int { min, max } => named.push(format!("{min} to {max}")),
            Check::SizeAtLeast(min) => named.push(format!("at least {}", format_size(min))),
        }
        for bound in named {
            assert!(
                accepted.contains(&bound),
                "{}: {accepted:?} does not say {bound:?}",
                spec.key
            );
        }
    }
}

/// `build` takes the bounds of durations and sizes from the schema: a key of those
/// kinds without them would accept any value.
#[test]
fn durations_and_sizes_have_bounds() {
    for spec in schema::keys() {
        let ok = match spec.kind {
            Kind::Duration => matches!(spec.check, Check::Duration { .. }),
            Kind::Size => matches!(spec.check, Check::SizeAtLeast(_)),
            _ => true,
        };
        assert!(ok, "{}: no bounds for a {:?}", spec.key, spec.kind);
    }
}

/// The bounds in the schema are the ones enforced.
#[test]
fn the_schema_bounds_are_enforced() {
    for spec in schema::keys() {
        let (section, name) = spec.key.split_once('.').unwrap_or(("", spec.key));
        let too_small = match spec.check {
            Check::Duration { min, .. } if !min.is_zero() => {
                format!("{:?}", format_duration(min - Duration::from_nanos(1)))
            }
            Check::Duration { .. } | Check::None => continue,
            Check::Int { min, .. } => (min - 1).to_string(),
            Check::SizeAtLeast(min) => (min - 1).to_string(),
        };
        let text = match section {
            "" => format!("{name} = {too_small}\n"),
            _ => format!("[{section}]\n{name} = {too_small}\n"),
        };
        let err = parse(&text, &[], &[]).expect_err(&text);
        assert_eq!(err.key, spec.key, "{text}");
        assert!(err.problem.contains("must be"), "{text}: {}", err.problem);
    }
}

/// The field names serde's derive gives `T` (a struct), read without any input.
fn field_names<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{Error as _, Visitor, value::Error};

    struct Fields<'a>(&'a std::cell::Cell<&'static [&'static str]>);

    impl<'de> serde::Deserializer<'de> for Fields<'_> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Error> {
            self.0.set(fields);
            Err(Error::custom("fields read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let cell = std::cell::Cell::new(&[][..]);
    let _ = T::deserialize(Fields(&cell));
    cell.get()
}

/// A key the raw structs lack could not be deserialized; a field no key names could
/// never be set (unknown keys are refused before serde sees them).
#[test]
fn raw_structs_have_a_field_for_every_key_and_no_other() {
    use crate::config::raw::*;
    let top = field_names::<RawConfig>();
    let mut fields: Vec<String> = top
        .iter()
        .filter(|name| !schema::is_section(name))
        .map(|name| (*name).to_owned())
        .collect();
    let sections: Vec<&str> = top
        .iter()
        .copied()
        .filter(|name| schema::is_section(name))
        .collect();
    assert_eq!(sections, schema::sections().collect::<Vec<_>>());
    for (section, names) in [
        ("kubernetes", field_names::<RawKubernetes>()),
        ("libvirt", field_names::<RawLibvirt>()),
        ("postgres", field_names::<RawPostgres>()),
        ("cache", field_names::<RawCache>()),
        ("api", field_names::<RawApi>()),
        ("metrics", field_names::<RawMetrics>()),
        ("capabilities", field_names::<RawCapabilities>()),
        ("log", field_names::<RawLog>()),
    ] {
        assert!(!names.is_empty(), "[{section}]: no fields read");
        fields.extend(names.iter().map(|name| format!("{section}.{name}")));
    }
    let keys: Vec<String> = schema::keys().map(|spec| spec.key.to_owned()).collect();
    assert_eq!(fields, keys, "the raw structs' fields, in schema order");
}
