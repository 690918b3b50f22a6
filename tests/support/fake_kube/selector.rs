//! Label and field selectors with the apiserver's grammar.
//!
//! Label selectors: comma-separated requirements, all of which must hold:
//! `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k` (absent).
//! `!=` and `notin` also match objects without the label, as in Kubernetes.
//! Field selectors (CRD rules): only `metadata.name` and `metadata.namespace`, with
//! `=`, `==` or `!=`; anything else is rejected like the real apiserver does.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<Req>,
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        && k.matches('/').count() <= 1
        && !k.starts_with('/')
        && !k.ends_with('/')
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Split at commas that are not inside parentheses.
fn split_top(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')'".into());
                }
            }
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    out.push(&s[start..]);
    Ok(out)
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected '(' values ')', found {rest:?}"))?;
    let mut vals = Vec::new();
    for v in inner.split(',') {
        let v = v.trim();
        if !valid_value(v) {
            return Err(format!("invalid label value {v:?}"));
        }
        vals.push(v.to_string());
    }
    if vals.is_empty() || (vals.len() == 1 && vals[0].is_empty()) {
        return Err("for 'in', 'notin' operators, values set can't be empty".into());
    }
    Ok(vals)
}

fn parse_req(part: &str) -> Result<Req, String> {
    let p = part.trim();
    if p.is_empty() {
        return Err("empty requirement".into());
    }
    if let Some(k) = p.strip_prefix('!') {
        let k = k.trim();
        if !valid_key(k) {
            return Err(format!("invalid label key {k:?}"));
        }
        return Ok(Req::NotExists(k.into()));
    }
    // Operators made of symbols.
    for (op, neg) in [("==", false), ("!=", true), ("=", false)] {
        if let Some(i) = p.find(op) {
            let (k, v) = (p[..i].trim(), p[i + op.len()..].trim());
            if !valid_key(k) {
                return Err(format!("invalid label key {k:?}"));
            }
            if !valid_value(v) {
                return Err(format!("invalid label value {v:?}"));
            }
            return Ok(if neg {
                Req::NotEq(k.into(), v.into())
            } else {
                Req::Eq(k.into(), v.into())
            });
        }
    }
    // Word operators: `key in (...)`, `key notin (...)`.
    let mut it = p.splitn(2, char::is_whitespace);
    let k = it.next().unwrap_or_default();
    let rest = it.next().map(str::trim_start).unwrap_or_default();
    if !valid_key(k) {
        return Err(format!("invalid label key {k:?}"));
    }
    if rest.is_empty() {
        return Ok(Req::Exists(k.into()));
    }
    if let Some(r) = rest.strip_prefix("notin") {
        return Ok(Req::NotIn(k.into(), parse_set(r)?));
    }
    if let Some(r) = rest.strip_prefix("in") {
        return Ok(Req::In(k.into(), parse_set(r)?));
    }
    Err(format!("unknown operator in {p:?}"))
}

impl LabelSelector {
    /// Parse a selector; `Err` carries the message for a 400 Status.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        let reqs = split_top(s)?
            .into_iter()
            .map(parse_req)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("unable to parse requirement: {e}"))?;
        Ok(Self { reqs })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.reqs.iter().all(|r| match r {
            Req::Eq(k, v) => labels.get(k) == Some(v),
            Req::NotEq(k, v) => labels.get(k) != Some(v),
            Req::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Req::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Req::Exists(k) => labels.contains_key(k),
            Req::NotExists(k) => !labels.contains_key(k),
        })
    }
}

/// A parsed field selector (CRD rules: metadata.name and metadata.namespace only).
#[derive(Debug, Clone, Default)]
pub struct FieldSelector {
    reqs: Vec<(bool, bool, String)>, // (is_name, negated, value)
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        for part in s.split(',') {
            let part = part.trim();
            let (field, neg, value) = if let Some(i) = part.find("!=") {
                (&part[..i], true, &part[i + 2..])
            } else if let Some(i) = part.find("==") {
                (&part[..i], false, &part[i + 2..])
            } else if let Some(i) = part.find('=') {
                (&part[..i], false, &part[i + 1..])
            } else {
                return Err(format!("invalid selector: {part:?}; can't understand"));
            };
            let is_name = match field.trim() {
                "metadata.name" => true,
                "metadata.namespace" => false,
                other => return Err(format!("field label not supported: {other}")),
            };
            reqs.push((is_name, neg, value.trim().to_string()));
        }
        Ok(Self { reqs })
    }

    pub fn matches(&self, namespace: &str, name: &str) -> bool {
        self.reqs.iter().all(|(is_name, neg, v)| {
            let actual = if *is_name { name } else { namespace };
            (actual == v) != *neg
        })
    }
}
