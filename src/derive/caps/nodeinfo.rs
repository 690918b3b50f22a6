//! Node info: the answer of `virNodeGetInfo`, and a parser for `virsh nodeinfo` text.

use serde::{Deserialize, Serialize};

use super::ParseError;
use super::values::number;

/// `virNodeInfo`: the libvirt source fills it from `virNodeGetInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// CPU model string (`x86_64` on Linux).
    pub model: String,
    pub memory_kib: u64,
    pub cpus: u32,
    pub mhz: u32,
    pub nodes: u32,
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
}

/// Parses `virsh nodeinfo` output (`CPU model:  x86_64` …). Every one of the eight lines
/// must be present; unknown lines are ignored.
pub fn parse_nodeinfo(text: &str) -> Result<NodeInfo, ParseError> {
    let mut info = NodeInfo::default();
    let mut seen = [false; 8];
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let slot = match key.trim() {
            "CPU model" => {
                info.model = value.to_string();
                0
            }
            "CPU(s)" => {
                info.cpus = number(value, "CPU(s)")?;
                1
            }
            "CPU frequency" => {
                info.mhz = number(value.trim_end_matches("MHz"), "CPU frequency")?;
                2
            }
            "CPU socket(s)" => {
                info.sockets = number(value, "CPU socket(s)")?;
                3
            }
            "Core(s) per socket" => {
                info.cores = number(value, "Core(s) per socket")?;
                4
            }
            "Thread(s) per core" => {
                info.threads = number(value, "Thread(s) per core")?;
                5
            }
            "NUMA cell(s)" => {
                info.nodes = number(value, "NUMA cell(s)")?;
                6
            }
            "Memory size" => {
                info.memory_kib = number(value.trim_end_matches("KiB"), "Memory size")?;
                7
            }
            _ => continue,
        };
        seen[slot] = true;
    }
    const NAMES: [&str; 8] = [
        "CPU model",
        "CPU(s)",
        "CPU frequency",
        "CPU socket(s)",
        "Core(s) per socket",
        "Thread(s) per core",
        "NUMA cell(s)",
        "Memory size",
    ];
    match seen.iter().position(|s| !s) {
        Some(i) => Err(ParseError::Missing(NAMES[i])),
        None => Ok(info),
    }
}
