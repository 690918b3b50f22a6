//! The object type the watchers decode into: the raw JSON (our derive code decodes the
//! fields it reads from it, so a bad field costs that object only) plus the metadata the
//! watcher itself needs.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ApiResource, DynamicResourceScope};
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

#[derive(Clone, Debug)]
pub struct KubeObject {
    pub metadata: ObjectMeta,
    /// The object's JSON as received. Kept as text, not as a `serde_json::Value`: the
    /// derive code decodes it straight into its structs (building a `Value` first cost
    /// more than that decode itself).
    pub raw: Box<RawValue>,
    /// Set when `metadata` could not be decoded (the object is then reported, not used).
    pub metadata_error: Option<String>,
}

impl<'de> Deserialize<'de> for KubeObject {
    /// Needs serde_json's own deserializer (as kube-rs uses for lists and for watch
    /// lines, whose `type` comes before the `object` as the API server writes them).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        if !raw.get().starts_with('{') {
            return Err(serde::de::Error::custom(
                "a Kubernetes object must be a JSON object",
            ));
        }
        let (metadata, metadata_error) = match read_metadata(raw.get()) {
            Head::Found(meta) => (meta.into(), None),
            // Keep what the watcher needs to carry on; the object itself is rejected by
            // the tracker with this message.
            Head::Bad(e) => (fallback_meta(raw.get()), Some(format!("metadata: {e}"))),
            Head::Missing => (ObjectMeta::default(), Some("metadata: missing".to_string())),
        };
        Ok(KubeObject {
            metadata,
            raw,
            metadata_error,
        })
    }
}

/// What an object's `metadata` field held.
enum Head {
    Found(WatchedMeta),
    Bad(String),
    Missing,
}

/// Reads `metadata` and stops there: the API server writes it before `spec` and
/// `status`, so the rest of the object (most of it) is not scanned again here; the
/// tracker's decode reads it once. `json` is a whole object already (a `RawValue`).
fn read_metadata(json: &str) -> Head {
    let mut head = Head::Missing;
    let mut de = serde_json::Deserializer::from_str(json);
    // The visitor ends the scan with an error once it has the metadata (serde has no
    // other way to leave a map early); what it found is in `head` either way.
    let _ = serde::Deserializer::deserialize_map(&mut de, HeadVisitor(&mut head));
    head
}

struct HeadVisitor<'h>(&'h mut Head);

impl<'de> Visitor<'de> for HeadVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(FieldName(is_metadata)) = map.next_key()? {
            if !is_metadata {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let (head, end) = match map.next_value::<Option<WatchedMeta>>() {
                Ok(Some(meta)) => (Head::Found(meta), serde::de::Error::custom("metadata read")),
                Ok(None) => (Head::Missing, serde::de::Error::custom("metadata read")),
                Err(e) => (Head::Bad(e.to_string()), e),
            };
            *self.0 = head;
            return Err(end);
        }
        Ok(())
    }
}

/// A map key: whether it is `metadata` (compared, not kept).
struct FieldName(bool);

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IsMetadata;
        impl Visitor<'_> for IsMetadata {
            type Value = FieldName;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name")
            }

            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<FieldName, E> {
                Ok(FieldName(key == "metadata"))
            }
        }
        d.deserialize_identifier(IsMetadata)
    }
}

/// The metadata fields the watcher and the tracker read. The rest is skipped unread:
/// decoding all of `ObjectMeta` cost more than the fields we use (annotations, owner
/// references, and `managedFields`, which can outweigh the object itself).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatchedMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
}

impl From<WatchedMeta> for ObjectMeta {
    fn from(m: WatchedMeta) -> ObjectMeta {
        ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            labels: m.labels,
            ..ObjectMeta::default()
        }
    }
}

impl KubeObject {
    /// The object's JSON bytes.
    pub fn json(&self) -> &[u8] {
        self.raw.get().as_bytes()
    }
}

/// What the watcher needs from a bad `metadata`, read from the whole object's JSON.
fn fallback_meta(object: &str) -> ObjectMeta {
    let v: serde_json::Value = serde_json::from_str(object).unwrap_or_default();
    let text = |k: &str| {
        v["metadata"]
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    ObjectMeta {
        name: text("name"),
        namespace: text("namespace"),
        resource_version: text("resourceVersion"),
        ..ObjectMeta::default()
    }
}

impl kube::Resource for KubeObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The two KubeVirt kinds virtsync watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Vm,
    Vmi,
}

impl Kind {
    pub fn api_resource(self) -> ApiResource {
        let (kind, plural) = match self {
            Kind::Vm => ("VirtualMachine", "virtualmachines"),
            Kind::Vmi => ("VirtualMachineInstance", "virtualmachineinstances"),
        };
        ApiResource {
            group: "kubevirt.io".into(),
            version: "v1".into(),
            api_version: "kubevirt.io/v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Vm => "vm",
            Kind::Vmi => "vmi",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_metadata_is_carried_as_an_error_not_a_decode_failure() {
        let obj: KubeObject = serde_json::from_str(
            r#"{"metadata":{"name":"a","namespace":"n","resourceVersion":"5","labels":7}}"#,
        )
        .unwrap();
        assert!(obj.metadata_error.as_deref().unwrap().contains("metadata"));
        assert_eq!(obj.metadata.resource_version.as_deref(), Some("5"));
        assert!(serde_json::from_str::<KubeObject>("[1]").is_err());
    }

    #[test]
    fn metadata_is_found_wherever_it_is_and_a_missing_one_is_named() {
        let late: KubeObject = serde_json::from_str(
            r#"{"spec":{"running":true},"status":{"phase":"Running"},"metadata":{"name":"a","namespace":"n"}}"#,
        )
        .unwrap();
        assert_eq!(late.metadata_error, None);
        assert_eq!(late.metadata.name.as_deref(), Some("a"));
        for json in [r#"{"spec":{}}"#, r#"{"metadata":null,"spec":{}}"#, "{}"] {
            let obj: KubeObject = serde_json::from_str(json).unwrap();
            assert_eq!(
                obj.metadata_error.as_deref(),
                Some("metadata: missing"),
                "{json}"
            );
            assert_eq!(obj.raw.get(), json);
        }
        let bad: KubeObject = serde_json::from_str(
            r#"{"kind":"VirtualMachine","metadata":{"name":"vm-1","namespace":"ns","uid":5},"spec":{}}"#,
        )
        .unwrap();
        let error = bad.metadata_error.as_deref().unwrap();
        assert!(error.starts_with("metadata: invalid type"), "{error}");
        assert_eq!(
            (
                bad.metadata.name.as_deref(),
                bad.metadata.namespace.as_deref()
            ),
            (Some("vm-1"), Some("ns")),
            "what the watcher needs is read from the bad metadata"
        );
    }

    #[test]
    fn the_metadata_the_watcher_reads_is_kept_and_the_rest_skipped() {
        let obj: KubeObject = serde_json::from_str(
            r#"{"metadata":{"name":"a","namespace":"n","uid":"u-1","resourceVersion":"5",
                "labels":{"kubevirt.io/nodeName":"node-a"},"annotations":{"x":"y"},
                "managedFields":[{"manager":"virt-handler","fieldsV1":{"f:status":{}}}]},
                "status":{"phase":"Running"}}"#,
        )
        .unwrap();
        assert_eq!(obj.metadata_error, None);
        let m = &obj.metadata;
        assert_eq!(
            (m.name.as_deref(), m.namespace.as_deref(), m.uid.as_deref()),
            (Some("a"), Some("n"), Some("u-1"))
        );
        assert_eq!(m.resource_version.as_deref(), Some("5"));
        let labels = m.labels.as_ref().unwrap();
        assert_eq!(labels["kubevirt.io/nodeName"], "node-a");
        assert_eq!((&m.annotations, &m.managed_fields), (&None, &None));
        assert!(
            obj.raw.get().contains("\"managedFields\""),
            "the raw object is whole"
        );
    }
}
