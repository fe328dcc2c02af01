//! iocaged's configuration: a TOML file, overridden by command-line flags.
//!
//! ```toml
//! websocket = ["127.0.0.1:12150"]   # WebSocket listen addresses
//! rest = ["127.0.0.1:12151"]        # REST listen addresses
//! pool = "auto"                     # the active pool, or a pool name
//! log = "info"                      # tracing filter; RUST_LOG wins
//! pam_service = "login"             # PAM service for password logins (FreeBSD: "iocaged")
//! keys = "/etc/iocaged/keys"        # API keys (FreeBSD: /usr/local/etc/iocaged/keys)
//! client_keys = "/etc/iocaged/client-keys"  # sysadm clients' keys for rpc/auth_ssl
//! key_logins = true                 # rpc/auth_ssl and rpc/settings' client keys at all
//! tls_certificate = "/etc/iocaged/cert.pem"   # both or neither: TLS on every port
//! tls_key = "/etc/iocaged/key.pem"
//! allow_plaintext = false           # plaintext on a non-loopback address
//! allow_host_hooks = false          # API clients may set exec_pre*/post* (they become host root)
//! autostart = false                 # start boot=on jails by priority, once per host boot (dist: true)
//! autostart_delay = 0               # seconds to wait after listening before autostart
//! stop_jails_on_shutdown = false    # stop boot=on jails, highest priority first, when the daemon stops
//! execjail_timeout = 600            # seconds; execjail's and every unbounded command's
//! exec_output_limit = 4194304       # bytes of stdout and of stderr before a command is stopped
//! execjail_max = 64                 # execjails running at once
//! max_connections = 1024            # open connections, all clients
//! max_connections_per_address = 256 # open connections from one address
//! max_requests_per_socket = 16      # WebSocket requests in flight on one socket
//! max_actions = 256                 # iocage actions in flight, all clients
//! max_logins = 4                    # password checks (PAM) at once
//! zfs_queue = 512                   # libzfs jobs waiting (at least max_actions)
//! header_timeout = 10               # seconds to send a request's headers; idle keep-alive
//! request_timeout = 30              # seconds to send a body; a read's deadline
//! trusted_proxies = []              # proxies whose X-Forwarded-For is believed
//! release_mirror = "https://download.freebsd.org/releases"  # fetchrelease: <mirror>/<arch>/<release>/
//! release_arch = "amd64"            # the mirror's path for this host (default: the build's; arm64: "arm64/aarch64")
//! allow_plaintext_mirror = false    # an http:// mirror that is not on loopback
//! max_release_bytes = 17179869184   # bytes of one set downloaded, and of a release extracted
//! ```
//! Both ports serve both transports (a WebSocket upgrade on the REST port
//! works too); the two lists exist for compatibility with sysadm clients.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::iocage::PoolChoice;

mod network;
pub use network::{Network, canonical, host_key};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub websocket: Vec<SocketAddr>,
    pub rest: Vec<SocketAddr>,
    pub pool: String,
    pub log: String,
    pub pam_service: String,
    pub keys: PathBuf,
    /// sysadm clients' registered RSA keys (`rpc/auth_ssl`).
    pub client_keys: PathBuf,
    /// Whether sysadm clients may register keys and log in with them.
    pub key_logins: bool,
    pub tls_certificate: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub allow_plaintext: bool,
    /// API clients may set host hooks (`exec_prestart`, `exec_poststart`,
    /// `exec_prestop`, `exec_poststop`), which run as root on the host:
    /// write clients become host root.
    pub allow_host_hooks: bool,
    /// Start the `boot=on` jails, lowest `priority` first, once per boot
    /// of the host (as iocage's rc script did).
    pub autostart: bool,
    /// Seconds to wait, once listening, before autostart begins.
    pub autostart_delay: u64,
    /// Stop the running `boot=on` jails, highest priority first, when the
    /// daemon stops.
    pub stop_jails_on_shutdown: bool,
    /// Seconds an execjail may run when the request names no `timeout`;
    /// also the bound of `exec_start`, `exec_stop` and hooks whose
    /// property says 0 (none).
    pub execjail_timeout: u64,
    /// Bytes of stdout, and of stderr, a command may write before it is
    /// stopped (the reply says it was cut).
    pub exec_output_limit: u64,
    /// execjails running at once; more are refused until one finishes.
    pub execjail_max: usize,
    /// Connections open at once, all clients; more are refused (503).
    pub max_connections: usize,
    /// Connections open at once from one address (trusted proxies are
    /// bounded by `max_connections` alone).
    pub max_connections_per_address: usize,
    /// Requests in flight on one WebSocket; the socket is not read further
    /// until one finishes, so TCP pushes back on the client.
    pub max_requests_per_socket: usize,
    /// iocage actions in flight, all clients; more are refused (503).
    pub max_actions: usize,
    /// Password checks (PAM) at once, all clients; apart from
    /// `max_actions`, so that logins cannot be starved.
    pub max_logins: usize,
    /// libzfs jobs waiting for the owner thread; at least `max_actions`.
    pub zfs_queue: usize,
    /// Seconds a client has to send a request's headers, and that an idle
    /// keep-alive connection is kept.
    pub header_timeout: u64,
    /// Seconds a client has to send a request's body; also how long a
    /// read action may take before the client is answered 503.
    pub request_timeout: u64,
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For`
    /// names the client; the lockout then applies to that client (the
    /// per-address connection limit counts TCP peers, and exempts these).
    pub trusted_proxies: Vec<Network>,
    /// fetchrelease's mirror: a release's `MANIFEST` and sets are at
    /// `<release_mirror>/<release_arch>/<release>/`.
    pub release_mirror: String,
    pub release_arch: String,
    /// Allows an `http://` release mirror that is not on loopback.
    pub allow_plaintext_mirror: bool,
    /// The most bytes of one downloaded set, and of all the files
    /// extracted into one release.
    pub max_release_bytes: u64,
}

/// The bounds on what clients may put in flight (see [`Config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub max_requests_per_socket: usize,
    pub max_actions: usize,
    pub max_logins: usize,
    pub zfs_queue: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub trusted_proxies: Vec<Network>,
}

impl Limits {
    /// Whether `ip` is a configured reverse proxy.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(ip))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Config::default().limits()
    }
}

/// Where API keys live by default.
pub const DEFAULT_KEYS: &str =
    if cfg!(target_os = "freebsd") { "/usr/local/etc/iocaged/keys" } else { "/etc/iocaged/keys" };

/// Where sysadm clients' keys live by default.
pub const DEFAULT_CLIENT_KEYS: &str =
    if cfg!(target_os = "freebsd") { "/usr/local/etc/iocaged/client-keys" } else { "/etc/iocaged/client-keys" };

/// The PAM service for password logins when the configuration names none:
/// `iocaged` on FreeBSD, whose service file ships as
/// `dist/freebsd/pam.d/iocaged` (FreeBSD's own `login` service has
/// pam_securetty, which refuses root without a secure `PAM_TTY`, and a
/// network login has no terminal); `login` elsewhere (on Debian the plain
/// common-auth and common-account stack).
pub fn default_pam_service(target_os: &str) -> &'static str {
    if target_os == "freebsd" { "iocaged" } else { "login" }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            websocket: vec![SocketAddr::from(([127, 0, 0, 1], 12150))],
            rest: vec![SocketAddr::from(([127, 0, 0, 1], 12151))],
            pool: "auto".into(),
            log: "info".into(),
            pam_service: default_pam_service(std::env::consts::OS).into(),
            keys: PathBuf::from(DEFAULT_KEYS),
            client_keys: PathBuf::from(DEFAULT_CLIENT_KEYS),
            key_logins: true,
            tls_certificate: None,
            tls_key: None,
            allow_plaintext: false,
            allow_host_hooks: false,
            autostart: false,
            autostart_delay: 0,
            stop_jails_on_shutdown: false,
            execjail_timeout: 600,
            exec_output_limit: crate::runtime::DEFAULT_OUTPUT_LIMIT,
            execjail_max: 64,
            max_connections: 1024,
            max_connections_per_address: 256,
            max_requests_per_socket: 16,
            max_actions: 256,
            max_logins: 4,
            zfs_queue: 512,
            header_timeout: 10,
            request_timeout: 30,
            trusted_proxies: Vec::new(),
            release_mirror: crate::iocage::fetch::Settings::default().mirror,
            release_arch: crate::iocage::fetch::default_arch().into(),
            allow_plaintext_mirror: false,
            max_release_bytes: crate::iocage::fetch::Settings::default().max_release_bytes,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "refusing to listen in plaintext on {0}: configure tls_certificate and tls_key \
         (`iocaged tls self-signed` makes a pair), or set allow_plaintext = true"
    )]
    Plaintext(SocketAddr),
    #[error("tls_certificate and tls_key go together: set both or neither")]
    HalfTls,
    #[error("no listen address configured")]
    NoListener,
    #[error("invalid pool name {0:?}")]
    BadPool(String),
    #[error("{key} = {value}: expected {expected}")]
    OutOfRange { key: &'static str, value: u64, expected: &'static str },
    #[error("release_mirror = {0:?}: {1}")]
    BadMirror(String, String),
    #[error("release_arch = {0:?}: expected plain path components, as amd64 or arm64/aarch64")]
    BadArch(String),
    #[error("zfs_queue = {queue} is less than max_actions = {actions}: every action in flight needs room for its job")]
    QueueBelowActions { queue: usize, actions: usize },
}

impl Config {
    /// Reads a configuration file; a missing file is an error (the caller
    /// decides whether a default path may be absent).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_path_buf(), message })
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks what the server will do with this configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.websocket.is_empty() && self.rest.is_empty() {
            return Err(ConfigError::NoListener);
        }
        if self.tls_certificate.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::HalfTls);
        }
        let mirror = crate::iocage::download::Url::parse(&self.release_mirror)
            .map_err(|e| ConfigError::BadMirror(self.release_mirror.clone(), e.to_string()))?;
        let bad_mirror = |why: &str| Err(ConfigError::BadMirror(self.release_mirror.clone(), why.into()));
        if self.release_mirror.contains(['?', '#']) {
            return bad_mirror("a mirror's URL has no query or fragment");
        }
        if !mirror.is_private_channel() && !self.allow_plaintext_mirror {
            return bad_mirror(
                "over plain http anyone on the way can change a MANIFEST and its sets together, and the \
                 checksums then vouch for nothing: use https, or set allow_plaintext_mirror = true",
            );
        }
        let plain = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !self.release_arch.split('/').all(plain) {
            return Err(ConfigError::BadArch(self.release_arch.clone()));
        }
        if !self.tls() && !self.allow_plaintext {
            if let Some(a) = self.listen_addrs().find(|a| !a.ip().is_loopback()) {
                return Err(ConfigError::Plaintext(a));
            }
        }
        let ranges: [(&'static str, u64, std::ops::RangeInclusive<u64>, &'static str); 13] = [
            ("max_release_bytes", self.max_release_bytes, (1 << 20)..=(1 << 40), "1048576 to 1099511627776 bytes"),
            ("autostart_delay", self.autostart_delay, 0..=3600, "0 to 3600 seconds"),
            ("execjail_timeout", self.execjail_timeout, 1..=86_400, "1 to 86400 seconds"),
            ("exec_output_limit", self.exec_output_limit, 1024..=(1 << 30), "1024 to 1073741824 bytes"),
            ("execjail_max", self.execjail_max as u64, 1..=256, "1 to 256"),
            ("max_connections", self.max_connections as u64, 1..=65_536, "1 to 65536"),
            ("max_connections_per_address", self.max_connections_per_address as u64, 1..=65_536, "1 to 65536"),
            ("max_requests_per_socket", self.max_requests_per_socket as u64, 1..=1024, "1 to 1024"),
            ("max_actions", self.max_actions as u64, 1..=4096, "1 to 4096"),
            ("max_logins", self.max_logins as u64, 1..=64, "1 to 64"),
            ("zfs_queue", self.zfs_queue as u64, 1..=65_536, "1 to 65536"),
            ("header_timeout", self.header_timeout, 1..=3600, "1 to 3600 seconds"),
            ("request_timeout", self.request_timeout, 1..=3600, "1 to 3600 seconds"),
        ];
        for (key, value, range, expected) in ranges {
            if !range.contains(&value) {
                return Err(ConfigError::OutOfRange { key, value, expected });
            }
        }
        if self.zfs_queue < self.max_actions {
            return Err(ConfigError::QueueBelowActions { queue: self.zfs_queue, actions: self.max_actions });
        }
        self.pool_choice().map(|_| ())
    }

    /// The bounds on clients, as the server, auth and service take them.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            max_requests_per_socket: self.max_requests_per_socket,
            max_actions: self.max_actions,
            max_logins: self.max_logins,
            zfs_queue: self.zfs_queue,
            header_timeout: Duration::from_secs(self.header_timeout),
            request_timeout: Duration::from_secs(self.request_timeout),
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }

    /// Where fetchrelease fetches from.
    pub fn fetch_settings(&self) -> crate::iocage::fetch::Settings {
        crate::iocage::fetch::Settings {
            mirror: self.release_mirror.clone(),
            arch: self.release_arch.clone(),
            max_release_bytes: self.max_release_bytes,
        }
    }

    /// What the service does about host hooks and the commands it runs.
    pub fn jail_policy(&self) -> crate::iocage::lifecycle::Policy {
        crate::iocage::lifecycle::Policy::new(
            self.allow_host_hooks,
            std::time::Duration::from_secs(self.execjail_timeout),
            self.exec_output_limit,
            self.execjail_max,
        )
    }

    /// Whether the ports speak TLS.
    pub fn tls(&self) -> bool {
        self.tls_certificate.is_some() && self.tls_key.is_some()
    }

    /// Plaintext listen addresses that are not loopback (allowed only with
    /// `allow_plaintext`, and warned about).
    pub fn exposed_plaintext(&self) -> Vec<SocketAddr> {
        if self.tls() { Vec::new() } else { self.listen_addrs().filter(|a| !a.ip().is_loopback()).collect() }
    }

    pub fn listen_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.websocket.iter().chain(self.rest.iter()).copied()
    }

    pub fn pool_choice(&self) -> Result<PoolChoice, ConfigError> {
        match self.pool.as_str() {
            "auto" | "" => Ok(PoolChoice::Auto),
            p if crate::iocage::props::is_safe_name(p) && !p.contains(':') => Ok(PoolChoice::Fixed(p.to_string())),
            p => Err(ConfigError::BadPool(p.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_12150_12151() {
        let c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.websocket[0].port(), 12150);
        assert_eq!(c.rest[0].port(), 12151);
        c.validate().unwrap();
        assert_eq!(c.pool_choice().unwrap(), PoolChoice::Auto);
    }

    /// dist/iocaged.toml documents every key with its default: uncommented,
    /// it must parse to exactly the built-in defaults, but for `autostart`,
    /// which the installed service turns on.
    #[test]
    #[cfg(target_os = "linux")]
    fn the_shipped_config_documents_the_defaults() {
        let shipped = include_str!("../../dist/iocaged.toml");
        let service = Config { autostart: true, ..Config::default() };
        assert_eq!(Config::parse(shipped).unwrap(), service, "commented out, it changes nothing");
        let uncommented: String = shipped
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let want = Config {
            tls_certificate: Some("/etc/iocaged/cert.pem".into()),
            tls_key: Some("/etc/iocaged/key.pem".into()),
            ..service
        };
        assert_eq!(Config::parse(&uncommented).unwrap(), want);
    }

    #[test]
    fn the_pam_service_defaults_per_os() {
        assert_eq!(default_pam_service("freebsd"), "iocaged");
        assert_eq!(default_pam_service("linux"), "login");
        assert_eq!(Config::default().pam_service, default_pam_service(std::env::consts::OS));
    }

    #[test]
    fn parse_and_validate() {
        let c = Config::parse("websocket = [\"[::1]:9000\"]\nrest = []\npool = \"tank\"\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.pool_choice().unwrap(), PoolChoice::Fixed("tank".into()));
        assert!(Config::parse("nonsense = 1").unwrap_err().contains("nonsense"));
        assert!(Config::parse("rest = [\"not an address\"]").is_err());
        let open = Config::parse("rest = [\"0.0.0.0:12151\"]").unwrap();
        assert!(matches!(open.validate(), Err(ConfigError::Plaintext(_))));
        let allowed = Config::parse("rest = [\"0.0.0.0:12151\"]\nallow_plaintext = true").unwrap();
        allowed.validate().unwrap();
        assert_eq!(allowed.exposed_plaintext().len(), 1);
        let tls = Config::parse("rest = [\"0.0.0.0:1\"]\ntls_certificate = \"/c\"\ntls_key = \"/k\"").unwrap();
        tls.validate().unwrap();
        assert!(tls.exposed_plaintext().is_empty());
        let half = Config::parse("tls_key = \"/k\"").unwrap();
        assert!(matches!(half.validate(), Err(ConfigError::HalfTls)));
        let none = Config::parse("rest = []\nwebsocket = []").unwrap();
        assert!(matches!(none.validate(), Err(ConfigError::NoListener)));
        let bad = Config::parse("pool = \"a/b\"").unwrap();
        assert!(matches!(bad.validate(), Err(ConfigError::BadPool(_))));
        for mirror in ["ftp://m/releases", "https://u:p@m/releases", "releases"] {
            let c = Config::parse(&format!("release_mirror = {mirror:?}")).unwrap();
            assert!(matches!(c.validate(), Err(ConfigError::BadMirror(..))), "{mirror}");
        }
        for arch in ["", "../x", "amd64/", "a b"] {
            let c = Config::parse(&format!("release_arch = {arch:?}")).unwrap();
            assert!(matches!(c.validate(), Err(ConfigError::BadArch(_))), "{arch}");
        }
        let plain = "release_mirror = \"http://10.0.0.1:8080/r/\"\nrelease_arch = \"arm64/aarch64\"";
        let e = Config::parse(plain).unwrap().validate().unwrap_err();
        assert!(e.to_string().contains("allow_plaintext_mirror"), "{e}");
        let c = Config::parse(&format!("{plain}\nallow_plaintext_mirror = true")).unwrap();
        c.validate().unwrap();
        Config::parse("release_mirror = \"http://127.0.0.1:8080/r\"").unwrap().validate().unwrap();
        let e = Config::parse("release_mirror = \"https://m/r?x=1\"").unwrap().validate().unwrap_err();
        assert!(e.to_string().contains("query"), "{e}");
        assert_eq!(c.fetch_settings().arch, "arm64/aarch64");
        assert!(matches!(
            Config::parse("max_release_bytes = 1000").unwrap().validate(),
            Err(ConfigError::OutOfRange { key: "max_release_bytes", .. })
        ));
        for bad in ["execjail_timeout = 0", "execjail_timeout = 86401", "exec_output_limit = 10", "execjail_max = 0"] {
            let c = Config::parse(bad).unwrap();
            assert!(matches!(c.validate(), Err(ConfigError::OutOfRange { .. })), "{bad}");
        }
        assert!(Config::parse("execjail_timeout = -1").is_err());
        for bad in ["max_connections = 0", "max_requests_per_socket = 0", "max_logins = 0", "header_timeout = 0"] {
            let c = Config::parse(bad).unwrap();
            assert!(matches!(c.validate(), Err(ConfigError::OutOfRange { .. })), "{bad}");
        }
        let c = Config::parse("max_actions = 600").unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::QueueBelowActions { .. })));
        assert!(Config::parse("trusted_proxies = [\"10.0.0.0/33\"]").unwrap_err().contains("10.0.0.0/33"));
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let c = Config::parse("trusted_proxies = [\"127.0.0.1\", \"10.1.0.0/16\", \"fd00::/8\"]").unwrap();
        let l = c.limits();
        for yes in ["127.0.0.1", "::ffff:127.0.0.1", "10.1.200.3", "fd12::1"] {
            assert!(l.is_trusted_proxy(yes.parse().unwrap()), "{yes}");
        }
        for no in ["127.0.0.2", "10.2.0.1", "fe80::1", "::1"] {
            assert!(!l.is_trusted_proxy(no.parse().unwrap()), "{no}");
        }
        assert!("0.0.0.0/0".parse::<Network>().unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(!Limits::default().is_trusted_proxy("127.0.0.1".parse().unwrap()), "none by default");
    }

    #[test]
    fn host_hooks_are_off_and_commands_bounded_by_default() {
        let c = Config::default();
        assert!(!c.allow_host_hooks);
        let p = Config::parse("allow_host_hooks = true\nexecjail_timeout = 5\nexec_output_limit = 2048").unwrap();
        p.validate().unwrap();
        let policy = p.jail_policy();
        assert!(policy.allow_host_hooks);
        assert_eq!(policy.bounds(None).timeout, Some(std::time::Duration::from_secs(5)));
        assert_eq!(policy.output_limit, 2048);
    }
}
