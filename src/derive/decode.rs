//! Decoding KubeVirt objects from JSON into [`objects`](super::objects), with errors that
//! name the object and the path of the bad field.

use super::DecodeError;
use super::objects::{Vm, Vmi};

const VMI_KIND: &str = "VirtualMachineInstance";
const VM_KIND: &str = "VirtualMachine";

/// `namespace/name` as far as the raw object tells, for error messages.
fn object_id(v: &serde_json::Value) -> String {
    let meta = &v["metadata"];
    let part = |k: &str| meta[k].as_str().unwrap_or("?").to_string();
    format!("{}/{}", part("namespace"), part("name"))
}

trait Kinded {
    fn kind(&self) -> Option<&str>;
}

impl Kinded for Vmi {
    fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }
}

impl Kinded for Vm {
    fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }
}

/// An object whose `kind` names something else is refused (an absent `kind` is fine:
/// watch events carry typed objects).
fn check_kind<T: Kinded>(
    kind: &'static str,
    object: impl FnOnce() -> String,
    t: T,
) -> Result<T, DecodeError> {
    match t.kind() {
        Some(k) if k != kind => Err(DecodeError::Kind {
            expected: kind,
            found: k.to_string(),
            object: object(),
        }),
        _ => Ok(t),
    }
}

fn decode<T: serde::de::DeserializeOwned + Kinded>(
    kind: &'static str,
    v: &serde_json::Value,
) -> Result<T, DecodeError> {
    if !v.is_object() {
        return Err(DecodeError::NotObject { kind });
    }
    let t = serde_path_to_error::deserialize(v).map_err(|e| DecodeError::Field {
        kind,
        object: object_id(v),
        path: e.path().to_string(),
        source: e.into_inner(),
    })?;
    check_kind(kind, || object_id(v), t)
}

/// Decodes straight from the bytes; only on an error are they read again as a JSON value
/// to name the object.
fn decode_slice<T: serde::de::DeserializeOwned + Kinded>(
    kind: &'static str,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    let id = || {
        serde_json::from_slice::<serde_json::Value>(bytes)
            .map(|v| object_id(&v))
            .unwrap_or_else(|_| "?/?".to_string())
    };
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(DecodeError::NotObject { kind });
    }
    // Fast path without path tracking (about a third of the decode); an object that
    // fails is decoded again with it, to name the bad field.
    if let Ok(t) = serde_json::from_slice::<T>(bytes) {
        return check_kind(kind, id, t);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let t: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(t) => t,
        Err(e) if e.inner().is_data() => {
            return Err(DecodeError::Field {
                kind,
                object: id(),
                path: e.path().to_string(),
                source: e.into_inner(),
            });
        }
        Err(e) => {
            return Err(DecodeError::Json {
                kind,
                source: e.into_inner(),
            });
        }
    };
    de.end()
        .map_err(|source| DecodeError::Json { kind, source })?;
    check_kind(kind, id, t)
}

pub fn decode_vmi(v: &serde_json::Value) -> Result<Vmi, DecodeError> {
    decode(VMI_KIND, v)
}

pub fn decode_vm(v: &serde_json::Value) -> Result<Vm, DecodeError> {
    decode(VM_KIND, v)
}

pub fn decode_vmi_slice(bytes: &[u8]) -> Result<Vmi, DecodeError> {
    decode_slice(VMI_KIND, bytes)
}

pub fn decode_vm_slice(bytes: &[u8]) -> Result<Vm, DecodeError> {
    decode_slice(VM_KIND, bytes)
}
