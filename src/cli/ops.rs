//! Operator commands that talk to the running daemon over its socket
//! (docs/ARCHITECTURE.md, "Socket API and CLI"): `status`, `vms`, `host capabilities`,
//! `resync`, `outbox`; `--output table|json`. The answers are read into the types of
//! [`crate::api::types`] and printed from their fields; `--output json` prints them in the
//! daemon's own encoding.

use std::time::{Duration, Instant};

use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::Value;

use super::client::Client;
use crate::api::types::{
    self, Capabilities, OutboxAction, OutboxActionDone, OutboxList, ResyncRequested, Status, Vm,
    VmList, VmsQuery,
};
use crate::derive::ConditionStatus;
use crate::derive::caps::GroupState;
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

/// A body as the daemon sent it (the same encoding: [`types::to_text`]).
fn print_json<T: Serialize>(body: &T) -> Result<()> {
    let text = types::to_text(body).map_err(|e| Error::Other(format!("printing JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// A value that may be missing: `-` then.
fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A JSON value as one cell: strings without quotes, `null` as `-`.
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
    let s: Status = client.get(types::STATUS_PATH).await?;
    if args.output == Output::Json {
        return print_json(&s);
    }
    println!("node:          {}", s.node);
    println!("role:          {}", s.role.as_str());
    println!("cluster role:  {}", s.cluster_role.state);
    println!("ready:         {}", if s.ready { "yes" } else { "no" });
    println!(
        "records:       {} ({} with a running VMI)",
        s.records, s.records_with_runtime_details
    );
    let o = &s.outbox;
    println!(
        "outbox:        {} pending, {} parked{}",
        o.pending,
        o.parked,
        o.oldest_age_seconds
            .map(|a| format!(", oldest {a:.1} s"))
            .unwrap_or_default()
    );
    if let Some(r) = &s.resync {
        println!(
            "anti-entropy:  {} passes{}, last corrected {} rows",
            r.passes,
            if r.running { " (one running)" } else { "" },
            r.last_drifted
        );
    }
    println!("version:       {}", s.version);
    println!();
    let rows: Vec<Vec<String>> = s
        .conditions
        .iter()
        .map(|c| {
            vec![
                c.type_.clone(),
                condition_status(c.status).to_owned(),
                c.reason.clone(),
                c.last_transition_time.to_rfc3339(),
                c.message.clone(),
            ]
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
        let v: Vm = client.get(&types::vm_path(ns, name)).await?;
        if args.output == Output::Json {
            return print_json(&v);
        }
        // Every field of the record, as the wire has them (keys sorted).
        let fields = types::to_value(&v).map_err(|e| Error::Other(format!("{vm}: {e}")))?;
        for (k, val) in fields.as_object().into_iter().flatten() {
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
    let query = VmsQuery {
        namespace: args.namespace.clone(),
        node: args.node.clone(),
    };
    let list: VmList = client.get(&query.path()).await?;
    if args.output == Output::Json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .items
        .iter()
        .map(|vm| {
            let r = &vm.record;
            let rt = r.runtime_details.as_deref();
            vec![
                r.namespace.to_string(),
                r.name.to_string(),
                or_dash(r.status.map(|s| s.as_str())),
                or_dash(r.cpu_count),
                or_dash(r.memory_mb),
                or_dash(rt.and_then(|rt| rt.node_name.as_deref())),
                or_dash(rt.and_then(|rt| rt.primary_ip.as_deref())),
                or_dash(rt.and_then(|rt| rt.hypervisor_type.as_deref())),
                vm.sync.as_str().to_owned(),
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

pub async fn host(client: &Client, args: &HostArgs) -> Result<()> {
    let HostCommand::Capabilities { refresh, output } = &args.command;
    let c: Capabilities = if *refresh {
        eprintln!("discovering the host capabilities now…");
        client.post(types::REFRESH_CAPABILITIES_PATH).await?
    } else {
        client.get(types::CAPABILITIES_PATH).await?
    };
    if *output == Output::Json {
        return print_json(&c);
    }
    println!("hostname:     {}", c.hostname);
    println!("fingerprint:  {}", c.fingerprint);
    println!("discovered:   {}", c.discovered_at.to_rfc3339());
    let rows: Vec<Vec<String>> = c
        .group_statuses()
        .into_iter()
        .map(|(group, status)| match status {
            Some(s) => vec![
                group,
                group_state(s.state).to_owned(),
                if s.reasons.is_empty() {
                    "-".into()
                } else {
                    s.reasons.join("; ")
                },
            ],
            None => vec![group, "-".into(), "-".into()],
        })
        .collect();
    println!();
    println!("{}", table(&["GROUP", "STATE", "REASONS"], &rows));
    println!("\n(--output json shows every value)");
    Ok(())
}

fn condition_status(status: ConditionStatus) -> &'static str {
    match status {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
        ConditionStatus::Unknown => "Unknown",
    }
}

fn group_state(state: GroupState) -> &'static str {
    match state {
        GroupState::Complete => "complete",
        GroupState::Partial => "partial",
        GroupState::Unavailable => "unavailable",
    }
}

/// How long `virtsync resync` waits for the pass before giving up waiting.
const RESYNC_WAIT: Duration = Duration::from_secs(600);

pub async fn resync(client: &Client, args: &ResyncArgs) -> Result<()> {
    let asked: ResyncRequested = client.post(types::RESYNC_PATH).await?;
    let before = asked.passes_before;
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
        let s: Status = client.get(types::STATUS_PATH).await?;
        let Some(r) = &s.resync else {
            return Err(Error::Other(
                "GET /v1/status: no anti-entropy passes (resync: null): the daemon has no \
                 PostgreSQL configured (postgres.url)"
                    .into(),
            ));
        };
        if r.passes > before {
            if args.output == Output::Json {
                return print_json(r);
            }
            println!(
                "anti-entropy pass done in {:.1} s: {} rows differed and were queued again",
                started.elapsed().as_secs_f64(),
                r.last_drifted
            );
            return Ok(());
        }
        if started.elapsed() > RESYNC_WAIT {
            return Err(Error::Other(format!(
                "the pass did not finish within {RESYNC_WAIT:?} (last error: {}); it goes on in the daemon",
                or_dash(r.last_error.as_deref())
            )));
        }
        if last_line.elapsed() >= Duration::from_secs(2) {
            let state = if r.running {
                "comparing rows"
            } else if r.last_error.is_some() {
                "waiting (last attempt failed; PostgreSQL reachable?)"
            } else {
                "waiting for the sink"
            };
            eprintln!(
                "  … {state} ({:.0} s, {} changes pending)",
                started.elapsed().as_secs_f64(),
                s.outbox.pending
            );
            last_line = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn outbox(client: &Client, args: &OutboxArgs) -> Result<()> {
    match &args.command {
        OutboxCommand::List { output } => {
            let list: OutboxList = client.get(types::OUTBOX_PATH).await?;
            if *output == Output::Json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .items
                .iter()
                .map(|e| {
                    vec![
                        e.vm.clone(),
                        e.state.as_str().to_owned(),
                        e.since.to_rfc3339(),
                        e.columns.join(","),
                        or_dash(e.message.as_deref()),
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
                OutboxCommand::Retry { .. } => OutboxAction::Retry,
                _ => OutboxAction::Drop,
            };
            let (ns, name) = split_key(vm)?;
            let done: OutboxActionDone = client
                .post(&types::outbox_action_path(ns, name, action))
                .await?;
            println!("{vm}: {} done", done.done.as_str());
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
    }
}
