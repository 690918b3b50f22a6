//! `virtsync inspect vmi FILE [--vm FILE] [--name NAME]` and `virtsync inspect vm FILE
//! [--name NAME]`: offline derivation of `kubectl get -o json|yaml` objects through the
//! daemon's own code, for support engineers. Prints the observation (record + source
//! versions). A file may hold one object or a List (`kubectl get vmi -o yaml` without a
//! name prints `kind: List`; the API's `VirtualMachineInstanceList` works the same): the
//! one object of the right kind in it, or the one `--name` picks.
//!
//! `virtsync inspect capabilities --capabilities FILE [--domcapabilities FILE ...]
//! [--nodeinfo FILE] [--machine NAME] [--output json|table]`: the host capabilities the
//! daemon would derive from `virsh capabilities` / `domcapabilities` / `nodeinfo` output
//! (calls not given are reported as "not given to inspect", the host's sysfs files as
//! "not read: offline"); the table is `caps_table.rs`. Domain capabilities are per
//! machine: the documents of the guests' machine (`--machine`, matched by the document's
//! `<machine>` directly or through the capabilities' alias list, e.g. `q35` →
//! `pc-q35-7.2`) give the host-level values; the others are reported per machine.
//! `virtsync inspect domain FILE`: the hypervisor type of a domain XML (`kvm`,
//! `qemu-tcg`, `unknown`).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use crate::derive::caps::build::DomCapsAnswer;
use crate::derive::caps::{
    self, CapsDoc, DiscoveryInput, HypervisorType, build_capabilities, parse_domain_capabilities,
};
use crate::derive::{VmInput, VmiInput, decode_vm, decode_vmi, derive_vm, derive_vmi, observe};
use crate::model::Observation;
use crate::{Error, Result};

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(subcommand)]
    pub what: InspectWhat,
}

const PICK_HELP: &str = "A List (what `kubectl get vmi -o yaml` prints without a name) gives \
its one object of this kind; with several, --name picks one. With --name, items of other kinds \
are skipped (so `kubectl get vm,vmi -o yaml` output serves for both FILE and --vm); without it, \
an item of another kind is an error naming its index and kind.";

#[derive(Subcommand, Debug)]
pub enum InspectWhat {
    /// A VirtualMachineInstance (optionally with its VirtualMachine): the node-role record.
    #[command(after_help = PICK_HELP)]
    Vmi {
        /// The VMI, or a List holding it, as `kubectl get vmi -o json` or `-o yaml` prints it.
        file: PathBuf,
        /// Its VirtualMachine (adds the power status), or a List holding it: the VM of the
        /// VMI's namespace and name is taken from a List.
        #[arg(long)]
        vm: Option<PathBuf>,
        /// Which VMI of a List: NAME, or NAMESPACE/NAME when the name is in several
        /// namespaces.
        #[arg(long, value_name = "NAME|NAMESPACE/NAME")]
        name: Option<String>,
        #[arg(long, value_enum, default_value_t = Output::Json)]
        output: Output,
    },
    /// A VirtualMachine alone: the cluster-role record.
    #[command(after_help = PICK_HELP)]
    Vm {
        /// The VM, or a List holding it, as `kubectl get vm -o json` or `-o yaml` prints it.
        file: PathBuf,
        /// Which VM of a List: NAME, or NAMESPACE/NAME when the name is in several
        /// namespaces.
        #[arg(long, value_name = "NAME|NAMESPACE/NAME")]
        name: Option<String>,
        #[arg(long, value_enum, default_value_t = Output::Json)]
        output: Output,
    },
    /// Host capabilities from `virsh capabilities`, `virsh domcapabilities` and
    /// `virsh nodeinfo` output.
    Capabilities {
        /// `virsh capabilities` output.
        #[arg(long)]
        capabilities: PathBuf,
        /// `virsh domcapabilities [--virttype kvm|qemu] [--machine NAME]` output (at most
        /// one per machine and type). Documents of other drivers (bhyve, xen, …) and of
        /// another architecture are reported with the reason, not used for the host.
        #[arg(long, num_args = 1..)]
        domcapabilities: Vec<PathBuf>,
        /// `virsh nodeinfo` output.
        #[arg(long)]
        nodeinfo: Option<PathBuf>,
        /// The machine type the guests use (e.g. q35, pc-q35-7.2, virt): the
        /// --domcapabilities documents of this machine give the host-level values (secure
        /// boot, max vCPUs, disk buses, firmware, host-model CPU, …). Default: the
        /// daemon's default for the host's architecture (q35 on x86_64, virt on aarch64,
        /// …) when a document describes it, else the first document.
        #[arg(long, value_name = "NAME")]
        machine: Option<String>,
        #[arg(long, value_enum, default_value_t = CapsOutput::Json)]
        output: CapsOutput,
    },
    /// The hypervisor type of a domain XML (`virsh dumpxml`): kvm, qemu-tcg or unknown.
    Domain { file: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CapsOutput {
    Json,
    /// The seven groups with their state and main values.
    Table,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Table,
}

fn bad(path: &Path, problem: impl std::fmt::Display) -> Error {
    Error::Inspect {
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

/// A JSON or YAML document as a JSON value.
fn read_object(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, e))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => Ok(v),
        Err(json_err) if text.trim_start().starts_with(['{', '[']) => Err(bad(path, json_err)),
        Err(_) => serde_yaml_ng::from_str::<Value>(&text).map_err(|e| bad(path, e)),
    }
}

const VMI: &str = "VirtualMachineInstance";
const VM: &str = "VirtualMachine";

/// How many names an error lists before "and N more".
const NAMES_LISTED: usize = 20;

/// The object `--name` asks for: `NAME` or `NAMESPACE/NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Wanted {
    namespace: Option<String>,
    name: String,
}

impl Wanted {
    fn parse(text: &str) -> Result<Wanted> {
        let (namespace, name) = match text.split_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, text),
        };
        if name.is_empty() || name.contains('/') || namespace.is_some_and(str::is_empty) {
            return Err(Error::Usage(format!(
                "--name {text:?}: expected NAME or NAMESPACE/NAME"
            )));
        }
        Ok(Wanted {
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    fn matches(&self, object: &Value) -> bool {
        let meta = &object["metadata"];
        meta["name"].as_str() == Some(self.name.as_str())
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| meta["namespace"].as_str() == Some(ns))
    }
}

impl std::fmt::Display for Wanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// `NAMESPACE/NAME` of an object (`NAME` without a namespace, `?` without a name).
fn object_name(object: &Value) -> String {
    let meta = &object["metadata"];
    let name = meta["name"].as_str().unwrap_or("?");
    match meta["namespace"].as_str() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// `a, b, c`, at most [`NAMES_LISTED`] of them.
fn listed(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(NAMES_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMES_LISTED {
        text.push_str(&format!(" and {} more", names.len() - NAMES_LISTED));
    }
    text
}

/// A List: `kind: List` (kubectl) or `kind: <Kind>List` (the API), with `items`.
fn is_list(doc: &Value) -> bool {
    doc["kind"].as_str().is_some_and(|k| k.ends_with("List"))
}

/// The object of `kind` in `doc`: the document itself, or one item of a List; with
/// `wanted`, the one of that name (items of other kinds skipped); without it, the only
/// item, which must be of `kind`. The error is the problem, without the file.
fn pick(doc: Value, kind: &str, wanted: Option<&Wanted>) -> Result<Value, String> {
    if !is_list(&doc) {
        return match wanted {
            Some(w) if !w.matches(&doc) => Err(format!(
                "--name {w}: the file holds {}, not a List",
                object_name(&doc)
            )),
            _ => Ok(doc),
        };
    }
    let list_kind = doc["kind"].as_str().unwrap_or_default().to_owned();
    // The API's lists leave `kind` out of their items: it is the list's.
    let item_kind = list_kind.strip_suffix("List").filter(|k| !k.is_empty());
    let Value::Object(mut map) = doc else {
        return Err(format!("a {list_kind} that is not an object"));
    };
    let items = match map.remove("items") {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => Vec::new(),
        Some(_) => return Err(format!("the {list_kind}'s items are not a list")),
    };
    let kind_of =
        |item: &Value| -> Option<String> { item["kind"].as_str().or(item_kind).map(str::to_owned) };
    let of_kind: Vec<(usize, Value)> = match wanted {
        Some(_) => items
            .into_iter()
            .enumerate()
            .filter(|(_, item)| kind_of(item).is_none_or(|k| k == kind))
            .collect(),
        None => {
            let mut kept = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match kind_of(&item) {
                    Some(k) if k != kind => {
                        return Err(format!(
                            "{list_kind} items[{i}] ({}) is a {k}, not a {kind} (with --name, \
                             items of other kinds are skipped)",
                            object_name(&item)
                        ));
                    }
                    _ => kept.push((i, item)),
                }
            }
            kept
        }
    };
    let present: Vec<String> = of_kind.iter().map(|(_, item)| object_name(item)).collect();
    let Some(w) = wanted else {
        let mut items = of_kind.into_iter().map(|(_, item)| item);
        return match (items.next(), items.next()) {
            (Some(only), None) => Ok(only),
            (None, _) => Err(format!("the {list_kind} holds no {kind}")),
            (Some(_), Some(_)) => Err(format!(
                "the {list_kind} holds {} {kind}s ({}): choose one with --name NAME or \
                 NAMESPACE/NAME",
                present.len(),
                listed(&present)
            )),
        };
    };
    let found: Vec<Value> = of_kind
        .into_iter()
        .map(|(_, item)| item)
        .filter(|item| w.matches(item))
        .collect();
    let names: Vec<String> = found.iter().map(object_name).collect();
    let mut found = found.into_iter();
    match (found.next(), found.next()) {
        (Some(only), None) => Ok(only),
        (None, _) if present.is_empty() => Err(format!(
            "no {kind} {w} in the {list_kind}: it holds no {kind}"
        )),
        (None, _) => Err(format!(
            "no {kind} {w} in the {list_kind} (it holds {})",
            listed(&present)
        )),
        (Some(_), Some(_)) => Err(format!(
            "{w} names {} {kind}s ({}): give NAMESPACE/NAME",
            names.len(),
            listed(&names)
        )),
    }
}

fn warn(path: &Path, warnings: &[String]) {
    for w in warnings {
        eprintln!("virtsync: warning: {}: {w}", path.display());
    }
}

/// A text file, bounded by the XML size limit and refused when not UTF-8.
fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, e))?;
    if bytes.len() > caps::xml::MAX_DOCUMENT_BYTES {
        return Err(bad(
            path,
            caps::XmlError::TooLarge {
                size: bytes.len(),
                limit: caps::xml::MAX_DOCUMENT_BYTES,
            },
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        bad(
            path,
            caps::XmlError::NotUtf8 {
                position: e.utf8_error().valid_up_to(),
            },
        )
    })
}

/// What inspect says of the host files the daemon reads from sysfs.
const OFFLINE: &str = "not read: offline";

/// The canonical machine of `name` by the capabilities' alias list (`<machine
/// canonical='pc-q35-7.2'>q35</machine>`), looked up among the guests of `arch` first;
/// `name` itself when it is no alias.
fn canonical_machine(caps: &CapsDoc, arch: Option<&str>, name: &str) -> String {
    caps.canonical_machine(arch, name)
        .or_else(|| caps.canonical_machine(None, name))
        .unwrap_or(name)
        .to_owned()
}

/// One `--domcapabilities` file.
struct DomCapsFile {
    path: PathBuf,
    text: String,
    domain: String,
    arch: Option<String>,
    machine: Option<String>,
}

/// kvm before qemu before other drivers.
fn virttype_rank(domain: &str) -> u8 {
    match domain {
        "kvm" => 0,
        "qemu" => 1,
        _ => 2,
    }
}

/// The offline discovery input: the files given, every other call "not given".
/// `machine`: the guests' machine (`--machine`); `None`: the daemon's default for the
/// host's architecture when a document describes it, else the first document's.
pub fn capabilities_input(
    capabilities: &Path,
    domcapabilities: &[PathBuf],
    nodeinfo: Option<&Path>,
    machine: Option<&str>,
) -> Result<DiscoveryInput> {
    let mut input = DiscoveryInput::unavailable("not given to inspect");
    input.kvm_intel_nested = Err(OFFLINE.to_owned());
    input.kvm_amd_nested = Err(OFFLINE.to_owned());
    input.ksm_run = Err(OFFLINE.to_owned());
    if let Some(m) = machine {
        crate::config::check_machine_name(m)
            .map_err(|p| Error::Usage(format!("--machine: {p}")))?;
    }
    let text = read_text(capabilities)?;
    let caps_doc = caps::parse_capabilities(&text).map_err(|e| bad(capabilities, e))?;
    input.capabilities = Ok(text);
    let host_arch = caps_doc.arch.clone();

    let mut files: Vec<DomCapsFile> = Vec::new();
    for path in domcapabilities {
        let text = read_text(path)?;
        let doc = parse_domain_capabilities(&text).map_err(|e| bad(path, e))?;
        if let Some(other) = files
            .iter()
            .find(|f| f.domain == doc.domain && f.machine == doc.machine && f.arch == doc.arch)
        {
            return Err(bad(
                path,
                format!(
                    "a second {} domain capabilities document for machine {} (the first is {})",
                    doc.domain,
                    doc.machine.as_deref().unwrap_or("(none named)"),
                    other.path.display()
                ),
            ));
        }
        files.push(DomCapsFile {
            path: path.clone(),
            text,
            domain: doc.domain,
            arch: doc.arch,
            machine: doc.machine,
        });
    }

    // Does a document describe machine `name` (directly or through its alias)?
    let describes = |f: &DomCapsFile, name: &str| {
        f.machine.as_deref().is_some_and(|m| {
            m == name || m == canonical_machine(&caps_doc, f.arch.as_deref(), name)
        })
    };
    let guest_machine: Option<String> = match machine {
        Some(name) => {
            if !files.is_empty() && !files.iter().any(|f| describes(f, name)) {
                let given: Vec<String> = files
                    .iter()
                    .map(|f| {
                        format!(
                            "{} ({} {})",
                            f.path.display(),
                            f.domain,
                            f.machine.as_deref().unwrap_or("(no machine)")
                        )
                    })
                    .collect();
                return Err(Error::Usage(format!(
                    "--machine {name}: no --domcapabilities document describes it \
                     (canonical machine {}; given: {})",
                    canonical_machine(&caps_doc, host_arch.as_deref(), name),
                    given.join(", ")
                )));
            }
            Some(name.to_owned())
        }
        None => host_arch
            .as_deref()
            .map(|arch| {
                crate::config::default_machines()
                    .remove(arch)
                    .unwrap_or_default()
            })
            .unwrap_or_default()
            .into_iter()
            .find(|name| files.iter().any(|f| describes(f, name))),
    };

    // Preference order: the guests' machine first; then each other machine in the order
    // its first document was given; kvm before qemu before other drivers.
    let group_of = |f: &DomCapsFile| -> usize {
        if guest_machine.as_deref().is_some_and(|g| describes(f, g)) {
            return 0;
        }
        1 + files
            .iter()
            .position(|o| o.machine == f.machine && o.arch == f.arch)
            .unwrap_or_default()
    };
    let mut order: Vec<(usize, u8, usize)> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (group_of(f), virttype_rank(&f.domain), i))
        .collect();
    order.sort_unstable();
    let mut answers = Vec::with_capacity(files.len());
    for (group, _, i) in order {
        let Some(f) = files.get(i) else { continue };
        answers.push(DomCapsAnswer {
            virttype: f.domain.clone(),
            // The name asked for the guests' machine; the others: the document's own.
            machine: if group == 0 {
                guest_machine.clone()
            } else {
                None
            },
            answer: Ok(f.text.clone()),
        });
    }
    input.domcaps = answers;
    input.guest_machine = guest_machine;
    if let Some(path) = nodeinfo {
        let text = read_text(path)?;
        input.node_info = Ok(caps::parse_nodeinfo(&text).map_err(|e| bad(path, e))?);
    }
    Ok(input)
}

pub fn run(args: &InspectArgs) -> Result<()> {
    let (obs, output) = match &args.what {
        InspectWhat::Capabilities {
            capabilities,
            domcapabilities,
            nodeinfo,
            machine,
            output,
        } => {
            let input = capabilities_input(
                capabilities,
                domcapabilities,
                nodeinfo.as_deref(),
                machine.as_deref(),
            )?;
            let built = build_capabilities(&input);
            let text = match output {
                CapsOutput::Json => {
                    let mut text = serde_json::to_string_pretty(&built)
                        .map_err(|e| Error::Other(e.to_string()))?;
                    text.push('\n');
                    text
                }
                CapsOutput::Table => super::caps_table::render(&built),
            };
            print!("{text}");
            return Ok(());
        }
        InspectWhat::Domain { file } => {
            let text = read_text(file)?;
            // Unlike the daemon (which reports `unknown`), inspect names a bad file.
            caps::xml::parse(&text).map_err(|e| bad(file, e))?;
            let t: HypervisorType = caps::hypervisor_type(&text);
            println!("{t}");
            return Ok(());
        }
        InspectWhat::Vmi {
            file,
            vm,
            name,
            output,
        } => {
            let name = name.as_deref().map(Wanted::parse).transpose()?;
            let object = pick(read_object(file)?, VMI, name.as_ref()).map_err(|e| bad(file, e))?;
            let vmi = decode_vmi(&object).map_err(|e| bad(file, e))?;
            let vmi = derive_vmi(&vmi).map_err(|e| bad(file, e))?;
            warn(file, &vmi.warnings);
            let vm = match vm {
                Some(path) => {
                    let mut doc = read_object(path)?;
                    if is_list(&doc) {
                        // The VMI's own VM: the same namespace and name.
                        let own = Wanted {
                            namespace: Some(vmi.key.namespace.to_string()),
                            name: vmi.key.name.to_string(),
                        };
                        doc = pick(doc, VM, Some(&own)).map_err(|e| bad(path, e))?;
                    }
                    let part = decode_vm(&doc).map_err(|e| bad(path, e))?;
                    let part = derive_vm(&part).map_err(|e| bad(path, e))?;
                    warn(path, &part.warnings);
                    if part.key != vmi.key {
                        return Err(bad(
                            path,
                            format!("VM {} is not the VM of VMI {}", part.key, vmi.key),
                        ));
                    }
                    unknown_status(path, part.unknown_printable_status.as_deref());
                    Some(part)
                }
                None => None,
            };
            let vm_input = vm.as_ref().map_or(VmInput::Unknown, VmInput::Present);
            (
                observe(&vmi.key, vm_input, VmiInput::Present(&vmi), None),
                *output,
            )
        }
        InspectWhat::Vm { file, name, output } => {
            let name = name.as_deref().map(Wanted::parse).transpose()?;
            let object = pick(read_object(file)?, VM, name.as_ref()).map_err(|e| bad(file, e))?;
            let vm = decode_vm(&object).map_err(|e| bad(file, e))?;
            let vm = derive_vm(&vm).map_err(|e| bad(file, e))?;
            warn(file, &vm.warnings);
            unknown_status(file, vm.unknown_printable_status.as_deref());
            (
                observe(&vm.key, VmInput::Present(&vm), VmiInput::Unknown, None),
                *output,
            )
        }
    };
    print!("{}", render(&obs, output)?);
    Ok(())
}

fn unknown_status(path: &Path, value: Option<&str>) {
    if let Some(v) = value {
        eprintln!(
            "virtsync: warning: {}: printableStatus {v:?} is not in the status table: UNKNOWN",
            path.display()
        );
    }
}

/// The observation as pretty JSON, or as a two-column field/value table.
pub fn render(obs: &Observation, output: Output) -> Result<String> {
    match output {
        Output::Json => {
            // From the struct itself: keys in the record's field order.
            let mut text =
                serde_json::to_string_pretty(obs).map_err(|e| Error::Other(e.to_string()))?;
            text.push('\n');
            Ok(text)
        }
        Output::Table => {
            let value = serde_json::to_value(obs).map_err(|e| Error::Other(e.to_string()))?;
            let mut rows = Vec::new();
            flatten("", &value, &mut rows);
            let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            Ok(rows
                .iter()
                .map(|(k, v)| format!("{k:<width$}  {v}\n"))
                .collect())
        }
    }
}

fn flatten(prefix: &str, v: &Value, rows: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, child, rows);
            }
        }
        Value::String(s) => rows.push((prefix.to_string(), s.clone())),
        other => rows.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(kind: Option<&str>, namespace: &str, name: &str) -> Value {
        let mut v = json!({"metadata": {"namespace": namespace, "name": name}});
        if let Some(k) = kind {
            v["kind"] = json!(k);
        }
        v
    }

    fn list(kind: &str, items: Vec<Value>) -> Value {
        json!({"apiVersion": "v1", "kind": kind, "items": items, "metadata": {}})
    }

    fn wanted(text: &str) -> Wanted {
        match Wanted::parse(text) {
            Ok(w) => w,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn names_parse() {
        assert_eq!(
            wanted("vm-1"),
            Wanted {
                namespace: None,
                name: "vm-1".into()
            }
        );
        assert_eq!(
            wanted("team/vm-1"),
            Wanted {
                namespace: Some("team".into()),
                name: "vm-1".into()
            }
        );
        for bad in ["", "/vm", "team/", "a/b/c"] {
            assert!(Wanted::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// (document, --name, Ok(picked NAMESPACE/NAME) or Err(words of the problem))
    type Case = (
        Value,
        Option<&'static str>,
        Result<&'static str, &'static [&'static str]>,
    );

    #[test]
    fn lists_give_the_one_object_asked_for() {
        let a = object(Some(VMI), "ns1", "a");
        let b = object(Some(VMI), "ns2", "b");
        let a2 = object(Some(VMI), "ns2", "a");
        let vm_a = object(Some(VM), "ns1", "a");
        let cases: Vec<Case> = vec![
            // A single object passes; --name must name it.
            (a.clone(), None, Ok("ns1/a")),
            (a.clone(), Some("ns1/a"), Ok("ns1/a")),
            (
                a.clone(),
                Some("b"),
                Err(&["--name b", "ns1/a", "not a List"]),
            ),
            // kubectl's List with one item, or with --name.
            (list("List", vec![a.clone()]), None, Ok("ns1/a")),
            (
                list("List", vec![a.clone(), b.clone()]),
                Some("b"),
                Ok("ns2/b"),
            ),
            (
                list("List", vec![a.clone(), b.clone()]),
                Some("ns1/a"),
                Ok("ns1/a"),
            ),
            // Several and no --name: the names present.
            (
                list("List", vec![a.clone(), b.clone()]),
                None,
                Err(&["holds 2 VirtualMachineInstances (ns1/a, ns2/b)", "--name"]),
            ),
            // --name that matches nothing, or several.
            (
                list("List", vec![a.clone(), b.clone()]),
                Some("c"),
                Err(&["no VirtualMachineInstance c in the List", "ns1/a, ns2/b"]),
            ),
            (
                list("List", vec![a.clone(), a2.clone()]),
                Some("a"),
                Err(&["a names 2", "ns1/a, ns2/a", "NAMESPACE/NAME"]),
            ),
            (
                list("List", vec![a.clone(), a2]),
                Some("ns2/a"),
                Ok("ns2/a"),
            ),
            // Other kinds: an error naming the item without --name, skipped with it.
            (
                list("List", vec![vm_a.clone(), a.clone()]),
                None,
                Err(&["items[0] (ns1/a) is a VirtualMachine, not a VirtualMachineInstance"]),
            ),
            (
                list("List", vec![vm_a.clone(), a.clone()]),
                Some("a"),
                Ok("ns1/a"),
            ),
            (
                list("List", vec![vm_a]),
                Some("a"),
                Err(&[
                    "no VirtualMachineInstance a in the List: it holds no VirtualMachineInstance",
                ]),
            ),
            // Empty lists.
            (
                list("List", vec![]),
                None,
                Err(&["the List holds no VirtualMachineInstance"]),
            ),
            (json!({"kind": "List"}), None, Err(&["holds no"])),
            (
                json!({"kind": "List", "items": 3}),
                None,
                Err(&["items are not a list"]),
            ),
            // The API's typed list: items without kind.
            (
                list("VirtualMachineInstanceList", vec![object(None, "ns1", "a")]),
                None,
                Ok("ns1/a"),
            ),
            (
                list("VirtualMachineList", vec![object(None, "ns1", "a")]),
                None,
                Err(&["items[0] (ns1/a) is a VirtualMachine"]),
            ),
        ];
        for (doc, name, want) in cases {
            let w = name.map(wanted);
            let shown = doc.to_string();
            match (pick(doc, VMI, w.as_ref()), want) {
                (Ok(v), Ok(id)) => assert_eq!(object_name(&v), id, "{shown} {name:?}"),
                (Err(e), Err(words)) => {
                    for word in words {
                        assert!(e.contains(word), "{shown} {name:?}: {e:?} lacks {word:?}");
                    }
                }
                (got, want) => panic!("{shown} {name:?}: {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn long_lists_of_names_are_cut() {
        let items: Vec<Value> = (0..25)
            .map(|i| object(Some(VMI), "ns", &format!("vm-{i}")))
            .collect();
        let e = pick(list("List", items), VMI, None)
            .err()
            .unwrap_or_default();
        assert!(e.contains("holds 25"), "{e}");
        assert!(e.contains("ns/vm-19 and 5 more"), "{e}");
        assert!(!e.contains("vm-20"), "{e}");
    }
}
