//! Canonical JSON of [`HostCapabilities`] and its fingerprint, which decides whether the
//! capabilities changed.

use serde_json::Value;

use crate::derive::caps::model::HostCapabilities;

impl HostCapabilities {
    /// Compact JSON with the keys of every object sorted: the same capabilities give the
    /// same bytes whatever the struct order or serde_json features.
    pub fn to_canonical_json(&self) -> String {
        // serde_json's map is a BTreeMap (no `preserve_order` feature in this build; a
        // test checks): through a Value, every object's keys come out sorted.
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        serde_json::to_string(&value).unwrap_or_default()
    }

    /// [`fnv1a64`] of [`to_canonical_json`](Self::to_canonical_json), 16 hex digits:
    /// decides whether the capabilities changed.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.to_canonical_json())
    }
}

/// The fingerprint of a canonical JSON text (computing the JSON once for both).
pub fn fingerprint_of(canonical: &str) -> String {
    format!("{:016x}", fnv1a64(canonical.as_bytes()))
}

/// 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
