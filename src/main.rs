//! The `iocaged` command line: `iocaged serve` runs the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use iocaged::api::{Api, server, tls};
use iocaged::auth::client_keys::ClientKeys;
use iocaged::auth::{Auth, Role, keys};
use iocaged::config::{Config, DEFAULT_KEYS};
use iocaged::iocage::{Iocage, autostart};
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
    /// Manage API keys (Bearer credentials for automation).
    #[command(subcommand)]
    Key(KeyCommand),
    /// TLS helpers.
    #[command(subcommand)]
    Tls(TlsCommand),
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key and print it (the only time it is shown).
    Add {
        name: String,
        /// `read` (listjails, getjailsettings, df, getdefaultsettings) or `write` (everything).
        #[arg(long)]
        role: String,
        #[arg(long, default_value = DEFAULT_KEYS)]
        file: PathBuf,
    },
    /// Remove a key; the daemon refuses it from then on.
    Revoke {
        name: String,
        #[arg(long, default_value = DEFAULT_KEYS)]
        file: PathBuf,
    },
    /// List the keys' names and roles.
    List {
        #[arg(long, default_value = DEFAULT_KEYS)]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Write a self-signed certificate and its key (mode 0600), for first use.
    SelfSigned {
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        /// Host names and addresses the certificate is for (repeatable).
        #[arg(long = "name", default_value = "localhost")]
        names: Vec<String>,
    },
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
    /// API key file (replaces the configured one).
    #[arg(long)]
    keys: Option<PathBuf>,
    /// PAM service for password logins (replaces the configured one).
    #[arg(long)]
    pam_service: Option<String>,
    /// TLS certificate (PEM); with --tls-key, every port speaks TLS.
    #[arg(long)]
    tls_certificate: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Allow plaintext on non-loopback addresses (logged as a warning).
    #[arg(long)]
    allow_plaintext: bool,
}

fn main() -> ExitCode {
    // The helper processes (`iocaged::runtime`'s, and the sender and relay
    // of a thick copy, `iocaged::zfs::copy_snapshot`): not part of
    // the command line people use, and started before anything else.
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    if let Some(code) = iocaged::runtime::helper::helper_main(&args) {
        return code;
    }
    match args.get(1).map(String::as_str) {
        Some(iocaged::zfs::SEND_HELPER) => return iocaged::zfs::send_main(&args[2..]),
        Some(iocaged::zfs::RELAY_HELPER) => return iocaged::zfs::relay_main(&args[2..]),
        _ => {}
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Key(k) => key(k),
        Command::Tls(TlsCommand::SelfSigned { cert, key, names }) => {
            tls::self_signed(&cert, &key, names).map_err(Failure::from).map(|()| {
                println!("wrote {} and {}", cert.display(), key.display());
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut said = e.to_string();
            eprintln!("iocaged: {said}");
            // The causes the message does not already give.
            let mut cause = e.source();
            while let Some(c) = cause {
                let why = c.to_string();
                if !said.contains(&why) {
                    eprintln!("  because: {why}");
                    said.push_str(&why);
                }
                cause = c.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Why a command failed: the library's own typed error (or a message of
/// this file's), printed with its causes.
type Failure = Box<dyn std::error::Error + Send + Sync>;

fn key(cmd: KeyCommand) -> Result<(), Failure> {
    match cmd {
        KeyCommand::Add { name, role, file } => {
            let role = Role::parse(&role).ok_or_else(|| format!("invalid role {role:?}: use read or write"))?;
            let key = keys::add(&file, &name, role)?;
            println!("{key}");
        }
        KeyCommand::Revoke { name, file } => keys::revoke(&file, &name)?,
        KeyCommand::List { file } => {
            for k in keys::load(&file)? {
                println!("{} {}", k.name, k.role.as_str());
            }
        }
    }
    Ok(())
}

fn serve(args: ServeArgs) -> Result<(), Failure> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
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
    if let Some(k) = args.keys {
        config.keys = k;
    }
    if let Some(p) = args.pam_service {
        config.pam_service = p;
    }
    if args.tls_certificate.is_some() || args.tls_key.is_some() {
        config.tls_certificate = args.tls_certificate;
        config.tls_key = args.tls_key;
    }
    config.allow_plaintext |= args.allow_plaintext;
    config.validate()?;

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .map_err(|e| format!("invalid log filter {:?}: {e}", config.log))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    raise_open_files(config.max_connections);
    for addr in config.exposed_plaintext() {
        tracing::warn!("listening in plaintext on {addr} (allow_plaintext): credentials cross the network in clear");
    }
    let acceptor = match (&config.tls_certificate, &config.tls_key) {
        (Some(c), Some(k)) => Some(tls::acceptor(c, k)?),
        _ => None,
    };
    let keys = keys::KeyStore::open(&config.keys)?;
    let client_keys = match config.key_logins {
        true => Some(ClientKeys::open(&config.client_keys)?),
        false => None,
    };
    // libzfs_init itself refuses a kernel module whose interface does not
    // match this userland; the error says so (see Libzfs::init).
    let zfs = Zfs::start_with_queue(config.zfs_queue)?;
    // Reads answer from memory while ZFS announces no change (zfs::follow);
    // without the event queue, each read asks ZFS, as it always can. Started
    // from a job of the owner thread: libzfs_init sets process-wide tables,
    // which the owner's handle must not be reading meanwhile (the job
    // returns once the follower's libzfs_init has).
    let changes = Arc::new(iocaged::zfs::Changes::default());
    let following = changes.clone();
    let changes = match zfs.run_blocking(move |_| iocaged::zfs::follow(following)) {
        Ok(Ok(())) => Some(changes),
        Ok(Err(e)) | Err(e) => {
            tracing::warn!(error = %e, "ZFS's event queue is not followed: every read asks ZFS");
            None
        }
    };
    let running = zfs.run_blocking(|l| l.versions())?;
    tracing::info!(userland = %running.userland, kernel = %running.kernel, built_against = OPENZFS_BUILD_VERSION, "OpenZFS");
    // Found (and logged) now, before an upgrade can replace either binary.
    iocaged::runtime::helper::program();
    let pool = config.pool_choice()?;
    let limits = config.limits();
    // Jail events and long actions' progress, on their way to subscribers.
    let events = Arc::new(iocaged::api::events::Hub::default());
    let mut iocage = Iocage::new(zfs, iocaged::runtime::native(), pool);
    if let Some(changes) = changes {
        iocage = iocage.with_changes(changes);
    }
    let iocage = iocage
        .with_policy(config.jail_policy())
        .with_limits(limits.max_actions, limits.request_timeout)
        .with_fetch(config.fetch_settings())
        .with_events(events.clone());
    let auth = Auth::with_limits(
        config.pam_service.clone(),
        Some(keys),
        client_keys,
        limits.max_logins,
        limits.trusted_proxies.clone(),
    );
    let api = Arc::new(Api::new(iocage.clone(), auth, events.clone()));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("iocaged")
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let served = rt.block_on(async move {
        // A create or fetch that was cut short (crash, SIGKILL, power loss)
        // left a marked jail or release behind: remove it before listening,
        // so that no client ever sees it.
        match iocage.recover().await {
            Ok(removed) => {
                for what in removed {
                    tracing::warn!(removed = %what, "removed a jail or release whose making never finished");
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
        // Jail events: the watcher runs for the daemon's lifetime.
        let (stop_watch, stopped) = tokio::sync::watch::channel(false);
        let sink: Arc<dyn iocaged::iocage::watch::Sink> = events.clone();
        let watcher = tokio::spawn(iocaged::iocage::watch::watch(iocage.clone(), sink, iocage.changes(), stopped));
        // Free memory back to the system now and then (see iocaged::memory).
        let trimmer = tokio::spawn(async {
            let mut every = tokio::time::interval(iocaged::memory::TRIM_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let _ = tokio::task::spawn_blocking(iocaged::memory::trim).await;
            }
        });
        // Autostart once listening: clients (and subscribers) can connect
        // while the jails start.
        let autostart = config.autostart.then(|| {
            let (iocage, sink, delay) = (iocage.clone(), events.clone(), config.autostart_delay);
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(delay)).await;
                autostart::start_all(&iocage, sink).await;
            })
        });
        server::serve(listeners, acceptor, api, limits, shutdown_signal()).await;
        if let Some(task) = autostart {
            task.abort(); // no new starts; those begun run as their own tasks
        }
        trimmer.abort();
        // Actions in flight (a client's, autostart's) finish before the
        // stops, and before the runtime goes.
        if !iocage.drain(std::time::Duration::from_secs(30)).await {
            tracing::warn!("actions still in flight after 30 s; stopping anyway");
        }
        if config.stop_jails_on_shutdown {
            tracing::info!("stopping boot=on jails (stop_jails_on_shutdown)");
            autostart::stop_all(&iocage, events).await;
        }
        let _ = stop_watch.send(true);
        let _ = watcher.await;
        tracing::info!(index = %iocage.index_counts(), "stopped");
        Ok(())
    });
    // Blocking work still running after the drain (a release's extraction,
    // a copy) is not waited for without end: what it leaves is marked
    // incomplete, and the next start removes it.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    served
}

/// Raises the soft limit on open files to the hard one: every connection
/// is a descriptor, and running out of them would fail key-file reads and
/// PAM as well as accepts. Warns when even the hard limit leaves no room
/// for `max_connections` and the daemon's own files.
fn raise_open_files(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    if soft < hard {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
        }
    }
    // rlim_t is u64 on Linux, i64 on FreeBSD (never negative there).
    #[allow(clippy::unnecessary_cast)]
    let now = getrlimit(Resource::RLIMIT_NOFILE).map_or(soft, |(s, _)| s) as u64;
    let wanted = max_connections as u64 + 256;
    if now < wanted {
        tracing::warn!(
            "open-file limit {now} is below max_connections + 256 = {wanted}: lower max_connections or raise the limit"
        );
    }
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
