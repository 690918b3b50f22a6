//! Operator commands that talk to the running daemon over its socket
//! (docs/ARCHITECTURE.md, "Socket API and CLI"): `status`, `vms`, `host capabilities`,
//! `resync`, `outbox`; `--output table|json`.

use std::time::{Duration, Instant};

use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use serde_json::Value;

use super::client::Client;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(ClapArgs, Debug)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(ClapArgs, Debug)]
pub struct VmsArgs {
    #[command(subcommand)]
    pub command: Option<VmsCommand>,
    /// Only VMs in this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only VMs running on this node.
    #[arg(long)]
    pub node: Option<String>,
    #[arg(long, value_enum, default_value_t, global = true)]
    pub output: Output,
}

#[derive(Subcommand, Debug)]
pub enum VmsCommand {
    /// One VM: `vms get NAMESPACE/NAME`.
    Get { vm: String },
}

#[derive(ClapArgs, Debug)]
pub struct HostArgs {
    #[command(subcommand)]
    pub command: HostCommand,
}

#[derive(Subcommand, Debug)]
pub enum HostCommand {
    /// The host capabilities last discovered (`--refresh`: discover now, then show).
    Capabilities {
        #[arg(long)]
        refresh: bool,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(ClapArgs, Debug)]
pub struct ResyncArgs {
    /// Ask for the pass and return without waiting for it.
    #[arg(long)]
    pub no_wait: bool,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(ClapArgs, Debug)]
pub struct OutboxArgs {
    #[command(subcommand)]
    pub command: OutboxCommand,
}

#[derive(Subcommand, Debug)]
pub enum OutboxCommand {
    /// Changes waiting to be written, and parked ones with PostgreSQL's reason.
    List {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Put a parked change back in line: `outbox retry NAMESPACE/NAME`.
    Retry { vm: String },
    /// Forget a pending or parked change: `outbox drop NAMESPACE/NAME`.
    Drop { vm: String },
}

fn print_json(v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Other(e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(header.iter().map(|h| (*h).to_owned()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

fn split_key(vm: &str) -> Result<(&str, &str)> {
    vm.split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
        .ok_or_else(|| Error::Usage(format!("{vm:?}: expected NAMESPACE/NAME")))
}

pub async fn status(client: &Client, args: &StatusArgs) -> Result<()> {
    let s = client.ok("GET", "/v1/status").await?;
    if args.output == Output::Json {
        return print_json(&s);
    }
    println!("node:          {}", text(&s["node"]));
    println!("role:          {}", text(&s["role"]));
    println!("cluster role:  {}", text(&s["clusterRole"]["state"]));
    println!(
        "ready:         {}",
        if s["ready"] == Value::Bool(true) {
            "yes"
        } else {
            "no"
        }
    );
    println!(
        "records:       {} ({} with a running VMI)",
        text(&s["records"]),
        text(&s["recordsWithRuntimeDetails"])
    );
    let o = &s["outbox"];
    println!(
        "outbox:        {} pending, {} parked{}",
        text(&o["pending"]),
        text(&o["parked"]),
        o["oldestAgeSeconds"]
            .as_f64()
            .map(|a| format!(", oldest {a:.1} s"))
            .unwrap_or_default()
    );
    if let Some(r) = s["resync"].as_object() {
        println!(
            "anti-entropy:  {} passes{}, last corrected {} rows",
            text(&r["passes"]),
            if r["running"] == Value::Bool(true) {
                " (one running)"
            } else {
                ""
            },
            text(&r["lastDrifted"])
        );
    }
    println!("version:       {}", text(&s["version"]));
    println!();
    let rows: Vec<Vec<String>> = s["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            ["type", "status", "reason", "lastTransitionTime", "message"]
                .iter()
                .map(|k| text(&c[*k]))
                .collect()
        })
        .collect();
    println!(
        "{}",
        table(
            &["CONDITION", "STATUS", "REASON", "SINCE", "MESSAGE"],
            &rows
        )
    );
    Ok(())
}

pub async fn vms(client: &Client, args: &VmsArgs) -> Result<()> {
    if let Some(VmsCommand::Get { vm }) = &args.command {
        let (ns, name) = split_key(vm)?;
        let v = client.ok("GET", &format!("/v1/vms/{ns}/{name}")).await?;
        if args.output == Output::Json {
            return print_json(&v);
        }
        for (k, val) in v.as_object().into_iter().flatten() {
            match val {
                Value::Object(inner) => {
                    println!("{k}:");
                    for (ik, iv) in inner {
                        println!("  {ik}: {}", text(iv));
                    }
                }
                other => println!("{k}: {}", text(other)),
            }
        }
        return Ok(());
    }
    let mut query = Vec::new();
    if let Some(ns) = &args.namespace {
        query.push(format!("namespace={}", encode(ns)));
    }
    if let Some(n) = &args.node {
        query.push(format!("node={}", encode(n)));
    }
    let path = if query.is_empty() {
        "/v1/vms".to_owned()
    } else {
        format!("/v1/vms?{}", query.join("&"))
    };
    let v = client.ok("GET", &path).await?;
    if args.output == Output::Json {
        return print_json(&v);
    }
    let rows: Vec<Vec<String>> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|vm| {
            let rt = &vm["runtimeDetails"];
            vec![
                text(&vm["namespace"]),
                text(&vm["name"]),
                text(&vm["status"]),
                text(&vm["cpuCount"]),
                text(&vm["memoryMB"]),
                text(&rt["nodeName"]),
                text(&rt["primaryIPAddress"]),
                text(&rt["hypervisorType"]),
                text(&vm["sync"]["state"]),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &[
                "NAMESPACE",
                "NAME",
                "STATUS",
                "CPUS",
                "MEMORY_MB",
                "NODE",
                "IP",
                "HYPERVISOR",
                "SYNC"
            ],
            &rows
        )
    );
    Ok(())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn host(client: &Client, args: &HostArgs) -> Result<()> {
    let HostCommand::Capabilities { refresh, output } = &args.command;
    let v = if *refresh {
        eprintln!("discovering the host capabilities now…");
        client.ok("POST", "/v1/host/capabilities/refresh").await?
    } else {
        client.ok("GET", "/v1/host/capabilities").await?
    };
    if *output == Output::Json {
        return print_json(&v);
    }
    println!("hostname:     {}", text(&v["hostname"]));
    println!("fingerprint:  {}", text(&v["fingerprint"]));
    println!("discovered:   {}", text(&v["discoveredAt"]));
    let rows: Vec<Vec<String>> = v["capabilities"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(group, g)| {
            let reasons: Vec<String> = g["status"]["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            vec![
                group.clone(),
                text(&g["status"]["state"]),
                if reasons.is_empty() {
                    "-".into()
                } else {
                    reasons.join("; ")
                },
            ]
        })
        .collect();
    println!();
    println!("{}", table(&["GROUP", "STATE", "REASONS"], &rows));
    println!("\n(--output json shows every value)");
    Ok(())
}

/// How long `virtsync resync` waits for the pass before giving up waiting.
const RESYNC_WAIT: Duration = Duration::from_secs(600);

pub async fn resync(client: &Client, args: &ResyncArgs) -> Result<()> {
    let asked = client.ok("POST", "/v1/resync").await?;
    let before = asked["passesBefore"].as_u64().unwrap_or(0);
    if args.no_wait {
        return if args.output == Output::Json {
            print_json(&asked)
        } else {
            println!("anti-entropy pass requested");
            Ok(())
        };
    }
    let started = Instant::now();
    let mut last_line = Instant::now();
    loop {
        let s = client.ok("GET", "/v1/status").await?;
        let r = &s["resync"];
        if r["passes"].as_u64().unwrap_or(0) > before {
            if args.output == Output::Json {
                return print_json(r);
            }
            println!(
                "anti-entropy pass done in {:.1} s: {} rows differed and were queued again",
                started.elapsed().as_secs_f64(),
                text(&r["lastDrifted"])
            );
            return Ok(());
        }
        if started.elapsed() > RESYNC_WAIT {
            return Err(Error::Other(format!(
                "the pass did not finish within {RESYNC_WAIT:?} (last error: {}); it goes on in the daemon",
                text(&r["lastError"])
            )));
        }
        if last_line.elapsed() >= Duration::from_secs(2) {
            let state = if r["running"] == Value::Bool(true) {
                "comparing rows"
            } else if r["lastError"].is_string() {
                "waiting (last attempt failed; PostgreSQL reachable?)"
            } else {
                "waiting for the sink"
            };
            eprintln!(
                "  … {state} ({:.0} s, {} changes pending)",
                started.elapsed().as_secs_f64(),
                text(&s["outbox"]["pending"])
            );
            last_line = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn outbox(client: &Client, args: &OutboxArgs) -> Result<()> {
    match &args.command {
        OutboxCommand::List { output } => {
            let v = client.ok("GET", "/v1/outbox").await?;
            if *output == Output::Json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let cols: Vec<String> = e["columns"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(text)
                        .collect();
                    vec![
                        text(&e["vm"]),
                        text(&e["state"]),
                        text(&e["since"]),
                        cols.join(","),
                        text(&e["message"]),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(&["VM", "STATE", "SINCE", "COLUMNS", "MESSAGE"], &rows)
            );
            Ok(())
        }
        OutboxCommand::Retry { vm } | OutboxCommand::Drop { vm } => {
            let action = match &args.command {
                OutboxCommand::Retry { .. } => "retry",
                _ => "drop",
            };
            let (ns, name) = split_key(vm)?;
            client
                .ok(
                    "POST",
                    &format!("/v1/outbox/{}/{}/{action}", encode(ns), encode(name)),
                )
                .await?;
            println!("{vm}: {action} done");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_keys_split() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1");
        assert_eq!(split_key("ns/vm").unwrap(), ("ns", "vm"));
        for bad in ["ns", "/vm", "ns/", "a/b/c"] {
            assert!(split_key(bad).is_err(), "{bad}");
        }
        assert_eq!(encode("a b/ü"), "a%20b%2F%C3%BC");
    }
}
