//! Small readers for numbers, units and libvirt `<enum>` lists.

use std::str::FromStr;

use super::ParseError;
use super::xml::Element;

/// Bytes per unit, libvirt's unit names (`virScaleInteger`); none → `default`.
pub fn unit_bytes(unit: Option<&str>, default: u64) -> Option<u64> {
    let Some(unit) = unit else {
        return Some(default);
    };
    Some(match unit {
        "b" | "B" | "byte" | "bytes" => 1,
        "KB" => 1_000,
        "k" | "K" | "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "m" | "M" | "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "g" | "G" | "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "t" | "T" | "TiB" => 1 << 40,
        _ => return None,
    })
}

/// A number read from `value`; `what` names it in the error.
pub fn number<T: FromStr>(value: &str, what: &str) -> Result<T, ParseError> {
    value.trim().parse::<T>().map_err(|_| ParseError::Value {
        what: what.to_string(),
        value: value.chars().take(64).collect(),
    })
}

/// The attribute `attr` of `el` as a number, `None` when absent.
pub fn attr_num<T: FromStr>(el: &Element, attr: &str, what: &str) -> Result<Option<T>, ParseError> {
    el.attr(attr).map(|v| number(v, what)).transpose()
}

/// The text of child `name` as a number, `None` when absent or empty.
pub fn child_num<T: FromStr>(
    el: &Element,
    name: &str,
    what: &str,
) -> Result<Option<T>, ParseError> {
    el.child_text(name).map(|v| number(v, what)).transpose()
}

/// A sized value (`<memory unit='KiB'>16175540</memory>` or `size`+`unit` attributes)
/// converted to KiB, rounding down; `default_unit_bytes` applies without a `unit`.
pub fn to_kib(
    value: &str,
    unit: Option<&str>,
    default_unit_bytes: u64,
    what: &str,
) -> Result<u64, ParseError> {
    Ok(to_bytes(value, unit, default_unit_bytes, what)? / 1024)
}

/// A sized value converted to bytes.
pub fn to_bytes(
    value: &str,
    unit: Option<&str>,
    default_unit_bytes: u64,
    what: &str,
) -> Result<u64, ParseError> {
    let n: u64 = number(value, what)?;
    let scale = unit_bytes(unit, default_unit_bytes).ok_or_else(|| ParseError::Value {
        what: format!("{what} unit"),
        value: unit.unwrap_or_default().chars().take(64).collect(),
    })?;
    n.checked_mul(scale).ok_or_else(|| ParseError::Value {
        what: what.to_string(),
        value: format!("{n} {}", unit.unwrap_or_default()),
    })
}

/// The `<value>`s of `<enum name='NAME'>` directly under `el`.
pub fn enum_values(el: Option<&Element>, name: &str) -> Vec<String> {
    el.and_then(|e| {
        e.children_named("enum")
            .find(|x| x.attr("name") == Some(name))
    })
    .map(|e| {
        e.children_named("value")
            .filter_map(Element::text_trimmed)
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

/// The root element must be `expected`.
pub fn expect_root(root: &Element, expected: &'static str) -> Result<(), ParseError> {
    if root.name == expected {
        Ok(())
    } else {
        Err(ParseError::Root {
            expected,
            found: root.name.chars().take(64).collect(),
        })
    }
}

/// The ids of a NUMA cell's `<cpu id>` children (libvirt lists cell CPUs one by one, so
/// no `0-3,^2` list syntax is parsed).
pub fn cpu_ids(cpus: Option<&Element>) -> Result<Vec<u32>, ParseError> {
    let Some(cpus) = cpus else {
        return Ok(Vec::new());
    };
    cpus.children_named("cpu")
        .filter_map(|c| c.attr("id"))
        .map(|id| number(id, "cell cpu id"))
        .collect()
}
