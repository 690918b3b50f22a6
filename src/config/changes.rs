//! Which keys differ between two configurations (SIGHUP says which need a restart).
//! Read from the sections' `Debug` form, so a new field is covered without a list to
//! keep in step; a field is named as its key when the two are spelled alike (they are,
//! but for values parsed into another shape, which are named by their field).

use super::Config;

impl Config {
    /// The keys (`postgres.batch_size`, `node_name`) whose values differ.
    pub fn changed_keys(&self, other: &Config) -> Vec<String> {
        let mut changed = Vec::new();
        let mut scalar = |name: &str, same: bool| {
            if !same {
                changed.push(name.to_owned());
            }
        };
        scalar("node_name", self.node_name == other.node_name);
        scalar("role", self.role == other.role);
        scalar("owns", self.owns == other.owns);
        let sections = [
            (
                "kubernetes",
                debug(&self.kubernetes),
                debug(&other.kubernetes),
            ),
            ("libvirt", debug(&self.libvirt), debug(&other.libvirt)),
            ("postgres", debug(&self.postgres), debug(&other.postgres)),
            ("cache", debug(&self.cache), debug(&other.cache)),
            ("api", debug(&self.api), debug(&other.api)),
            ("metrics", debug(&self.metrics), debug(&other.metrics)),
            (
                "capabilities",
                debug(&self.capabilities),
                debug(&other.capabilities),
            ),
            ("log", debug(&self.log), debug(&other.log)),
        ];
        for (section, a, b) in sections {
            changed.extend(
                differing_fields(&a, &b)
                    .into_iter()
                    .map(|f| format!("{section}.{f}")),
            );
        }
        changed
    }
}

fn debug(v: &impl std::fmt::Debug) -> String {
    format!("{v:#?}")
}

/// The top-level fields of a struct's pretty `Debug` text, each with its value's text.
fn fields(text: &str) -> Vec<(&str, String)> {
    let mut out: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        let field = line
            .strip_prefix("    ")
            .filter(|rest| !rest.starts_with(' '))
            .and_then(|rest| rest.split_once(": "))
            .filter(|(name, _)| {
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            });
        match (field, out.last_mut()) {
            (Some((name, value)), _) => out.push((name, value.to_owned())),
            (None, Some((_, value))) => {
                value.push('\n');
                value.push_str(line);
            }
            (None, None) => {}
        }
    }
    out
}

/// Fields whose values differ (or that only one side has), in the order of `a`.
fn differing_fields(a: &str, b: &str) -> Vec<String> {
    let (fa, fb) = (fields(a), fields(b));
    let mut out: Vec<String> = fa
        .iter()
        .filter(|(name, value)| fb.iter().find(|(n, _)| n == name).map(|(_, v)| v) != Some(value))
        .map(|(name, _)| (*name).to_owned())
        .collect();
    if out.is_empty() && fa.is_empty() && a != b {
        // Not a struct with fields (an enum or a tuple): the whole section.
        out.push("*".to_owned());
    }
    out.extend(
        fb.iter()
            .filter(|(name, _)| !fa.iter().any(|(n, _)| n == name))
            .map(|(name, _)| (*name).to_owned()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_nested_values() {
        // Read through Debug only.
        #[allow(dead_code)]
        #[derive(Debug)]
        struct Inner {
            a: Option<Vec<u8>>,
        }
        #[allow(dead_code)]
        #[derive(Debug)]
        struct S {
            url: Option<String>,
            batch_size: u32,
            inner: Inner,
        }
        let one = debug(&S {
            url: Some("x".into()),
            batch_size: 1,
            inner: Inner {
                a: Some(vec![1, 2]),
            },
        });
        let two = debug(&S {
            url: Some("x".into()),
            batch_size: 2,
            inner: Inner {
                a: Some(vec![1, 3]),
            },
        });
        let names: Vec<&str> = fields(&one).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["url", "batch_size", "inner"]);
        assert_eq!(differing_fields(&one, &two), ["batch_size", "inner"]);
        assert!(differing_fields(&one, &one).is_empty());
    }
}
