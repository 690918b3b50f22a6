//! Command line: subcommands, configuration loading and exit codes
//! (0 ok, 1 runtime error, 2 usage or configuration error).

mod caps_table;
mod client;
mod ingest;
mod inspect;
mod ops;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, Env};
use crate::sink::postgres::{self, schema};
use crate::{Error, Result};

const DEFAULT_CONFIG: &str = "/etc/virtsync/virtsync.toml";

#[derive(Parser, Debug)]
#[command(
    name = "virtsync",
    version,
    about = "Keeps the cloud API's VM records in sync with KubeVirt and libvirt"
)]
pub struct Args {
    /// Configuration file; when the default one does not exist, built-in defaults apply.
    #[arg(long, global = true, env = "VIRTSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Override one configuration key, e.g. --set postgres.batch_size=100 (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Shorthand for --set node_name=...
    #[arg(long, global = true)]
    pub node_name: Option<String>,
    /// Shorthand for --set cache.path=...
    #[arg(long, global = true)]
    pub cache_path: Option<PathBuf>,
    /// Shorthand for --set postgres.url=...
    #[arg(long, global = true)]
    pub postgres_url: Option<String>,
    /// The daemon's socket (default: api.socket of the configuration).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon.
    Daemon,
    /// Validate the configuration (exit 0 when valid; 2 when not, with every problem found,
    /// one `key: problem` line each).
    CheckConfig,
    /// Create virtsync's schema in PostgreSQL (and the runtime_* columns in extended mode).
    Migrate,
    /// Print the version (--verbose: and the build's features).
    Version(VersionArgs),
    /// The running daemon: conditions, role, cluster role, outbox, sources.
    Status(ops::StatusArgs),
    /// VMs as the daemon knows them: `vms [--namespace NS] [--node NODE]`, `vms get NS/NAME`.
    Vms(ops::VmsArgs),
    /// This host: `host capabilities [--refresh]`.
    Host(ops::HostArgs),
    /// Compare every VM row in PostgreSQL with the sources now and correct what differs.
    Resync(ops::ResyncArgs),
    /// Changes waiting for PostgreSQL: `outbox list`, `outbox retry NS/NAME`, `outbox drop NS/NAME`.
    Outbox(ops::OutboxArgs),
    /// Feed records (JSON lines {"record": <the API VM shape>, "versions": {...}}) through the state
    /// store and flush them: a support and test tool that uses the daemon's code path.
    #[command(hide = true)]
    Ingest(ingest::IngestArgs),
    /// Derive records offline from KubeVirt objects (`kubectl get -o json|yaml`, one object
    /// or a List), with the daemon's code: `inspect vmi FILE [--vm FILE] [--name NAME]`,
    /// `inspect vm FILE [--name NAME]`; host capabilities and domain hypervisor types from
    /// libvirt XML: `inspect capabilities`, `inspect domain`.
    Inspect(inspect::InspectArgs),
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    // The daemon's log starts once its configuration (log.format) is read.
    if !matches!(args.command, Command::Daemon) {
        init_tracing(config::LogFormat::Text);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Under systemd, journald reads "<3>" as priority err and drops it.
            let err = if crate::logging::StderrInfo::of_process().is_journal() {
                "<3>"
            } else {
                ""
            };
            match &e {
                // Every configuration problem on a line of its own.
                Error::Config(c) => {
                    for (key, problem) in c.problems() {
                        eprintln!("{err}virtsync: configuration: {key}: {problem}");
                    }
                }
                _ => eprintln!("{err}virtsync: {e}"),
            }
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct VersionArgs {
    /// Also print the build's optional features (failpoints: a test build).
    #[arg(long, short)]
    pub verbose: bool,
}

/// Logs to stderr as `format` says (`crate::logging`); RUST_LOG filters (default info).
/// Then warns when VIRTSYNC_FAILPOINT is set in a build without failpoints.
fn init_tracing(format: config::LogFormat) {
    crate::logging::init(format, &crate::logging::journal_socket_path());
    crate::failpoint::warn_if_set();
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    crate::memory::limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::io("starting the async runtime"))
}

pub fn run(args: Args) -> Result<()> {
    match &args.command {
        Command::Version(v) => {
            println!("virtsync {}", env!("CARGO_PKG_VERSION"));
            if v.verbose {
                // tests/support/failpoints.rs reads this line.
                let failpoints = if crate::failpoint::ENABLED {
                    "yes (test build: VIRTSYNC_FAILPOINT is acted on)"
                } else {
                    "no"
                };
                println!("failpoints: {failpoints}");
            }
            Ok(())
        }
        Command::CheckConfig => {
            let (cfg, path) = load_config(&args)?;
            let password = password(&cfg)?;
            if cfg.postgres.url.is_some() {
                // The connection settings too (reads postgres.ca_file).
                postgres::SinkSettings::from_config(&cfg, password.as_deref())?;
            }
            match path {
                Some(p) => println!("configuration OK: {}", p.display()),
                None => println!("configuration OK (built-in defaults)"),
            }
            Ok(())
        }
        Command::Migrate => {
            let (cfg, _) = load_config(&args)?;
            runtime()?.block_on(migrate(&cfg))
        }
        Command::Daemon => {
            let (cfg, path) = load_config(&args)?;
            init_tracing(cfg.log.format);
            let password = password(&cfg)?;
            match path {
                Some(p) => tracing::info!(config = %p.display(), "configuration loaded"),
                None => tracing::info!("no configuration file: built-in defaults"),
            }
            let inputs = ConfigInputs::of(&args);
            let reload: crate::daemon::Reload =
                Box::new(move || load_inputs(&inputs).map(|(c, _)| c));
            runtime()?.block_on(async {
                // Installed before anything else starts: an early signal still shuts
                // down in order.
                let mut signals = crate::shutdown::ShutdownSignals::install()
                    .map_err(Error::io("installing signal handlers"))?;
                let daemon = crate::daemon::Daemon::build(cfg, password, reload).await?;
                daemon.run(signals.received()).await
            })
        }
        Command::Inspect(inspect_args) => inspect::run(inspect_args),
        Command::Status(a) => with_client(&args, |c| async move { ops::status(&c, a).await }),
        Command::Vms(a) => with_client(&args, |c| async move { ops::vms(&c, a).await }),
        Command::Host(a) => with_client(&args, |c| async move { ops::host(&c, a).await }),
        Command::Resync(a) => with_client(&args, |c| async move { ops::resync(&c, a).await }),
        Command::Outbox(a) => with_client(&args, |c| async move { ops::outbox(&c, a).await }),
        Command::Ingest(ingest_args) => {
            let (cfg, _) = load_config(&args)?;
            let password = password(&cfg)?;
            runtime()?.block_on(ingest::run(&cfg, password, ingest_args))
        }
    }
}

/// Runs a command against the daemon's socket (`--socket`, else `api.socket`).
fn with_client<F, Fut>(args: &Args, f: F) -> Result<()>
where
    F: FnOnce(client::Client) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let (socket, origin) = match &args.socket {
        Some(p) => (p.clone(), client::SocketOrigin::Flag),
        None => (
            load_config(args)?.0.api.socket,
            client::SocketOrigin::Config,
        ),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::io("starting the async runtime"))?;
    rt.block_on(f(client::Client::new(socket, origin)))
}

fn password(cfg: &Config) -> Result<Option<String>> {
    let creds = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    Ok(config::read_password(&cfg.postgres, creds.as_deref())?)
}

/// Reads the file (if any), the VIRTSYNC_* environment and the flags into a validated
/// configuration. Returns the file used.
pub fn load_config(args: &Args) -> Result<(Config, Option<PathBuf>)> {
    load_inputs(&ConfigInputs::of(args))
}

/// What the configuration is read from, kept so SIGHUP can read it again.
#[derive(Clone, Debug)]
struct ConfigInputs {
    config: Option<PathBuf>,
    sets: Vec<String>,
    node_name: Option<String>,
    cache_path: Option<PathBuf>,
    postgres_url: Option<String>,
}

impl ConfigInputs {
    fn of(args: &Args) -> ConfigInputs {
        ConfigInputs {
            config: args.config.clone(),
            sets: args.sets.clone(),
            node_name: args.node_name.clone(),
            cache_path: args.cache_path.clone(),
            postgres_url: args.postgres_url.clone(),
        }
    }
}

fn load_inputs(args: &ConfigInputs) -> Result<(Config, Option<PathBuf>)> {
    let (text, used) = match &args.config {
        Some(p) => (read(p)?, Some(p.clone())),
        None if Path::new(DEFAULT_CONFIG).exists() => (
            read(Path::new(DEFAULT_CONFIG))?,
            Some(PathBuf::from(DEFAULT_CONFIG)),
        ),
        None => (String::new(), None),
    };
    let env = Env {
        hostname: gethostname::gethostname().to_string_lossy().into_owned(),
        vars: std::env::vars()
            .filter(|(k, _)| k.starts_with("VIRTSYNC_"))
            .collect(),
    };
    // A malformed --set is reported with every problem of the configuration.
    let mut malformed = Vec::new();
    let mut sets = Vec::new();
    for s in &args.sets {
        match s.split_once('=') {
            Some((k, v)) => sets.push((k.trim().to_string(), v.to_string())),
            None => malformed.push(config::ConfigError::new(
                format!("--set {s}"),
                "expected KEY=VALUE",
            )),
        }
    }
    if let Some(n) = &args.node_name {
        sets.push(("node_name".into(), n.clone()));
    }
    if let Some(p) = &args.cache_path {
        sets.push(("cache.path".into(), p.display().to_string()));
    }
    if let Some(u) = &args.postgres_url {
        sets.push(("postgres.url".into(), u.clone()));
    }
    match Config::parse(&text, &env, &sets) {
        Ok(cfg) => match config::ConfigError::from_list(malformed) {
            None => Ok((cfg, used)),
            Some(e) => Err(e.into()),
        },
        Err(e) => Err(e.and(malformed).into()),
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::Config(config::ConfigError::new(
            "--config",
            format!("cannot read {}: {e}", path.display()),
        ))
    })
}

async fn migrate(cfg: &Config) -> Result<()> {
    let url = cfg
        .postgres
        .owner_url
        .as_deref()
        .map_or_else(|| cfg.require_postgres_url(), Ok)?;
    let password = password(cfg)?;
    let (pg, tls) = postgres::pg_config(
        url,
        password.as_deref(),
        &format!("virtsync-migrate/{}", cfg.node_name),
        &cfg.postgres,
    )?;
    let mut client = postgres::connect_client(&pg, &tls).await?;
    let n = schema::migrate(
        &mut client,
        &cfg.postgres.table,
        cfg.postgres.schema,
        cfg.postgres.lock_timeout,
    )
    .await?;
    println!(
        "migrated {} (schema = {:?}): {n} idempotent statements applied",
        cfg.postgres.table, cfg.postgres.schema
    );
    Ok(())
}
