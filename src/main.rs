//! The `iocaged` command line: `iocaged serve` runs the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use iocaged::api::{Api, auth::Gate, server};
use iocaged::config::Config;
use iocaged::iocage::Iocage;
use iocaged::zfs::{OPENZFS_BUILD_VERSION, Zfs};

const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (built against OpenZFS ", env!("IOCAGED_OPENZFS_VERSION"), ")");

#[derive(Parser)]
#[command(name = "iocaged", version = VERSION, about = "Serves the sysadm iocage API from libzfs and jail(2)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML). Without it, built-in defaults are used.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// WebSocket listen address (repeatable; replaces the configured ones).
    #[arg(long, value_name = "ADDR")]
    websocket: Vec<SocketAddr>,
    /// REST listen address (repeatable; replaces the configured ones).
    #[arg(long, value_name = "ADDR")]
    rest: Vec<SocketAddr>,
    /// The pool to use: `auto` (the active one) or a pool name.
    #[arg(long)]
    pool: Option<String>,
    /// Log filter (e.g. `info`, `iocaged=debug`); RUST_LOG wins over it.
    #[arg(long)]
    log: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => match serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("iocaged: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if !args.websocket.is_empty() {
        config.websocket = args.websocket;
    }
    if !args.rest.is_empty() {
        config.rest = args.rest;
    }
    if let Some(p) = args.pool {
        config.pool = p;
    }
    if let Some(l) = args.log {
        config.log = l;
    }
    config.validate().map_err(|e| e.to_string())?;

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .map_err(|e| format!("invalid log filter {:?}: {e}", config.log))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let zfs = Zfs::start().map_err(|e| e.to_string())?;
    let pool = config.pool_choice().map_err(|e| e.to_string())?;
    let iocage = Iocage::new(zfs, iocaged::runtime::native(), pool);
    let api = Arc::new(Api::new(iocage.clone(), Gate::new()));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("iocaged")
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    rt.block_on(async move {
        // A create that was cut short (crash, SIGKILL, power loss) left a
        // marked jail behind: remove it before listening, so that no client
        // ever sees it.
        match iocage.recover().await {
            Ok(removed) => {
                for uuid in removed {
                    tracing::warn!(jail = %uuid, "removed a jail whose creation never finished");
                }
            }
            Err(e) => tracing::error!("could not check for unfinished creates: {e}"),
        }
        let mut listeners = Vec::new();
        for addr in config.listen_addrs() {
            let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            listeners.push(l);
        }
        tracing::info!(
            version = VERSION,
            openzfs = OPENZFS_BUILD_VERSION,
            websocket = ?config.websocket,
            rest = ?config.rest,
            pool = %config.pool,
            "iocaged listening"
        );
        server::serve(listeners, api, shutdown_signal()).await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop iocaged with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
