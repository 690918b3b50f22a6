//! `virtsync inspect vmi FILE [--vm FILE]` and `virtsync inspect vm FILE`: offline
//! derivation of `kubectl get -o json|yaml` objects through the daemon's own code, for
//! support engineers. Prints the observation (record + source versions).
//!
//! `virtsync inspect capabilities --capabilities FILE [--domcapabilities FILE ...]
//! [--nodeinfo FILE]`: the host capabilities the daemon would derive from `virsh
//! capabilities` / `domcapabilities` / `nodeinfo` output (calls not given are reported
//! as "not given to inspect"). `virtsync inspect domain FILE`: the hypervisor type of a
//! domain XML (`kvm`, `qemu-tcg`, `unknown`).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use crate::derive::caps::{
    self, DiscoveryInput, HypervisorType, build_capabilities, parse_domain_capabilities,
};
use crate::derive::{VmInput, VmiInput, decode_vm, decode_vmi, derive_vm, derive_vmi, observe};
use crate::model::Observation;
use crate::{Error, Result};

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(subcommand)]
    pub what: InspectWhat,
}

#[derive(Subcommand, Debug)]
pub enum InspectWhat {
    /// A VirtualMachineInstance (optionally with its VirtualMachine): the node-role record.
    Vmi {
        /// The VMI as `kubectl get vmi -o json` or `-o yaml` prints it.
        file: PathBuf,
        /// Its VirtualMachine (adds the power status).
        #[arg(long)]
        vm: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Output::Json)]
        output: Output,
    },
    /// A VirtualMachine alone: the cluster-role record.
    Vm {
        /// The VM as `kubectl get vm -o json` or `-o yaml` prints it.
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Json)]
        output: Output,
    },
    /// Host capabilities from `virsh capabilities`, `virsh domcapabilities` and
    /// `virsh nodeinfo` output.
    Capabilities {
        /// `virsh capabilities` output.
        #[arg(long)]
        capabilities: PathBuf,
        /// `virsh domcapabilities [--virttype kvm|qemu]` output (at most one per type).
        #[arg(long, num_args = 1..)]
        domcapabilities: Vec<PathBuf>,
        /// `virsh nodeinfo` output.
        #[arg(long)]
        nodeinfo: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = CapsOutput::Json)]
        output: CapsOutput,
    },
    /// The hypervisor type of a domain XML (`virsh dumpxml`): kvm, qemu-tcg or unknown.
    Domain { file: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CapsOutput {
    Json,
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

/// The offline discovery input: the files given, every other call "not given".
pub fn capabilities_input(
    capabilities: &Path,
    domcapabilities: &[PathBuf],
    nodeinfo: Option<&Path>,
) -> Result<DiscoveryInput> {
    let mut input = DiscoveryInput::unavailable("not given to inspect");
    let text = read_text(capabilities)?;
    caps::parse_capabilities(&text).map_err(|e| bad(capabilities, e))?;
    input.capabilities = Ok(text);
    for path in domcapabilities {
        let text = read_text(path)?;
        let doc = parse_domain_capabilities(&text).map_err(|e| bad(path, e))?;
        let slot = match doc.domain.as_str() {
            "kvm" => &mut input.domcaps_kvm,
            "qemu" => &mut input.domcaps_qemu,
            other => {
                return Err(bad(
                    path,
                    format!("domain type {other:?} is neither kvm nor qemu"),
                ));
            }
        };
        if slot.is_ok() {
            return Err(bad(
                path,
                format!("a second {} domain capabilities document", doc.domain),
            ));
        }
        *slot = Ok(text);
    }
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
            output: CapsOutput::Json,
        } => {
            let input = capabilities_input(capabilities, domcapabilities, nodeinfo.as_deref())?;
            let built = build_capabilities(&input);
            let mut text =
                serde_json::to_string_pretty(&built).map_err(|e| Error::Other(e.to_string()))?;
            text.push('\n');
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
        InspectWhat::Vmi { file, vm, output } => {
            let vmi = decode_vmi(&read_object(file)?).map_err(|e| bad(file, e))?;
            let vmi = derive_vmi(&vmi).map_err(|e| bad(file, e))?;
            warn(file, &vmi.warnings);
            let vm = match vm {
                Some(path) => {
                    let part = decode_vm(&read_object(path)?).map_err(|e| bad(path, e))?;
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
        InspectWhat::Vm { file, output } => {
            let vm = decode_vm(&read_object(file)?).map_err(|e| bad(file, e))?;
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
