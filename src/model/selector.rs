//! Kubernetes label selectors (`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`,
//! `!k`, comma = and), evaluated locally: an object found by a confirming GET is still
//! ours only if it matches the selector its watch uses. Pure, so that the configuration
//! can check `kubernetes.label_selector` without depending on the Kubernetes source.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(Selector { requirements })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }
}

/// Splits at commas that are not inside `( … )`.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, ch) in text.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    let bad = || format!("invalid label selector requirement {part:?}");
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(
            check_key(key.trim()).ok_or_else(bad)?,
        ));
    }
    for (op, negated) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((k, v)) = part.split_once(op) {
            let k = check_key(k.trim()).ok_or_else(bad)?;
            let v = v.trim().to_string();
            if v.contains([' ', '(', ')', '=', '!']) {
                return Err(bad());
            }
            return Ok(if negated {
                Requirement::NotEquals(k, v)
            } else {
                Requirement::Equals(k, v)
            });
        }
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words[..] {
        let rest = rest.trim();
        let (negated, list) = if let Some(l) = rest.strip_prefix("notin") {
            (true, l)
        } else if let Some(l) = rest.strip_prefix("in") {
            (false, l)
        } else {
            return Err(bad());
        };
        let inner = list
            .trim()
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(bad)?;
        let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
        let key = check_key(key).ok_or_else(bad)?;
        return Ok(if negated {
            Requirement::NotIn(key, values)
        } else {
            Requirement::In(key, values)
        });
    }
    Ok(Requirement::Exists(check_key(part).ok_or_else(bad)?))
}

fn check_key(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    ok.then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_like_the_apiserver() {
        let l = labels(&[("kubevirt.io/nodeName", "node-a"), ("tier", "web")]);
        let cases = [
            ("", true),
            ("kubevirt.io/nodeName=node-a", true),
            ("kubevirt.io/nodeName==node-a", true),
            ("kubevirt.io/nodeName=node-b", false),
            ("kubevirt.io/nodeName!=node-b", true),
            ("tier in (web, db)", true),
            ("tier in (db)", false),
            ("tier notin (db)", true),
            ("missing notin (db)", true),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("kubevirt.io/nodeName=node-a,tier in (web)", true),
            ("kubevirt.io/nodeName=node-a,tier=db", false),
        ];
        for (text, want) in cases {
            let s = Selector::parse(text).unwrap();
            assert_eq!(s.matches(&l), want, "{text}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in ["a in b", "=x", "a b c", "a in (x", "a=(b)"] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }
}
