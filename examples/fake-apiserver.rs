//! The test suite's fake Kubernetes API server, on its own: serves KubeVirt VMs, VMIs
//! and Nodes for list/watch/get over plain HTTP until Ctrl-C or SIGTERM.
//!
//! ```text
//! cargo run --example fake-apiserver -- --objects tests/fixtures/kubevirt \
//!     --synthetic 1000 --nodes node-a,node-b --churn 50
//! ```
//! Point a kubeconfig (or `virtsync`'s URL setting) at the printed URL.

#[path = "../tests/support/fake_kube/mod.rs"]
mod fake_kube;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use fake_kube::FakeApiServer;

#[derive(Parser, Debug)]
#[command(about = "Fake Kubernetes API server for KubeVirt objects (list/watch/get)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen: SocketAddr,
    /// Folder of *.json / *.yaml / *.yml objects to load (repeatable).
    #[arg(long = "objects", value_name = "DIR")]
    objects: Vec<PathBuf>,
    /// Generate N synthetic VM+VMI pairs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    synthetic: usize,
    /// Nodes the synthetic VMIs are spread over (round-robin).
    #[arg(long, value_delimiter = ',', default_value = "node-a,node-b")]
    nodes: Vec<String>,
    /// Extra Node objects (repeatable). A Node is also created for every
    /// status.nodeName of a loaded VMI.
    #[arg(long = "node", value_name = "NAME")]
    node: Vec<String>,
    /// Guest-agent changes per second on random VMIs.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    churn: f64,
    /// Seed for synthetic objects and churn.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Changes kept for resuming watches.
    #[arg(long, default_value_t = 10_000)]
    history: usize,
    /// Interval of BOOKMARK events, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    bookmark_ms: u64,
    /// Write the key (`namespace name`) of every VM served, from its VirtualMachine or
    /// VirtualMachineInstance, one per line and sorted, to FILE (whole, before the
    /// "listening" line): the rows a cloud API would hold for them.
    #[arg(long, value_name = "FILE")]
    vm_keys: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = FakeApiServer::start_on(args.listen).await?;
    server.set_history_limit(args.history);
    server.set_bookmark_interval(Duration::from_millis(args.bookmark_ms.max(1)));
    let mut skipped = 0;
    for dir in &args.objects {
        skipped += server.load_dir(dir)?.skipped.len();
    }
    if args.synthetic > 0 {
        server.load_synthetic(args.synthetic, &args.nodes, args.seed);
    }
    for n in &args.node {
        server.apply(fake_kube::node(n));
    }
    server.ensure_nodes_for_vmis();
    if let Some(path) = &args.vm_keys {
        write_vm_keys(&server, path)?;
    }
    let _churn = (args.churn > 0.0).then(|| server.spawn_churn(args.churn, args.seed));
    println!(
        "fake-apiserver listening on {}: {} VirtualMachines, {} VirtualMachineInstances, {} Nodes, {} skipped, churn {}/s",
        server.url(),
        server.list("vm").len(),
        server.list("vmi").len(),
        server.list("node").len(),
        skipped,
        args.churn
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    eprintln!(
        "fake-apiserver: stopping after {} lists, {} watches, {} gets",
        server.lists_served(),
        server.watches_opened(),
        server.gets_served()
    );
    Ok(())
}

/// Writes the `namespace name` keys to `path` through a temporary file, so a reader
/// never sees half of it.
fn write_vm_keys(server: &FakeApiServer, path: &std::path::Path) -> anyhow::Result<()> {
    let mut keys: Vec<String> = ["vm", "vmi"]
        .iter()
        .flat_map(|kind| server.list(kind))
        .filter_map(|o| {
            let m = &o["metadata"];
            Some(format!(
                "{} {}\n",
                m["namespace"].as_str()?,
                m["name"].as_str()?
            ))
        })
        .collect();
    keys.sort();
    keys.dedup();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, keys.concat())?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
