//! iocaged's configuration: a TOML file, overridden by command-line flags.
//!
//! ```toml
//! websocket = ["127.0.0.1:12150"]   # WebSocket listen addresses
//! rest = ["127.0.0.1:12151"]        # REST listen addresses
//! pool = "auto"                     # the active pool, or a pool name
//! log = "info"                      # tracing filter; RUST_LOG wins
//! pam_service = "login"             # PAM service for password logins (FreeBSD: "iocaged")
//! keys = "/etc/iocaged/keys"        # API keys (FreeBSD: /usr/local/etc/iocaged/keys)
//! tls_certificate = "/etc/iocaged/cert.pem"   # both or neither: TLS on every port
//! tls_key = "/etc/iocaged/key.pem"
//! allow_plaintext = false           # plaintext on a non-loopback address
//! allow_host_hooks = false          # API clients may set exec_pre*/post* (they become host root)
//! execjail_timeout = 600            # seconds; execjail's and every unbounded command's
//! exec_output_limit = 4194304       # bytes of stdout and of stderr before a command is stopped
//! execjail_max = 64                 # execjails running at once
//! ```
//! Both ports serve both transports (a WebSocket upgrade on the REST port
//! works too); the two lists exist for compatibility with sysadm clients.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::iocage::PoolChoice;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub websocket: Vec<SocketAddr>,
    pub rest: Vec<SocketAddr>,
    pub pool: String,
    pub log: String,
    pub pam_service: String,
    pub keys: PathBuf,
    pub tls_certificate: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub allow_plaintext: bool,
    /// API clients may set host hooks (`exec_prestart`, `exec_poststart`,
    /// `exec_prestop`, `exec_poststop`), which run as root on the host:
    /// write clients become host root.
    pub allow_host_hooks: bool,
    /// Seconds an execjail may run when the request names no `timeout`;
    /// also the bound of `exec_start`, `exec_stop` and hooks whose
    /// property says 0 (none).
    pub execjail_timeout: u64,
    /// Bytes of stdout, and of stderr, a command may write before it is
    /// stopped (the reply says it was cut).
    pub exec_output_limit: u64,
    /// execjails running at once; more are refused until one finishes.
    pub execjail_max: usize,
}

/// Where API keys live by default.
pub const DEFAULT_KEYS: &str =
    if cfg!(target_os = "freebsd") { "/usr/local/etc/iocaged/keys" } else { "/etc/iocaged/keys" };

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
            tls_certificate: None,
            tls_key: None,
            allow_plaintext: false,
            allow_host_hooks: false,
            execjail_timeout: 600,
            exec_output_limit: crate::runtime::DEFAULT_OUTPUT_LIMIT,
            execjail_max: 64,
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
        if !self.tls() && !self.allow_plaintext {
            if let Some(a) = self.listen_addrs().find(|a| !a.ip().is_loopback()) {
                return Err(ConfigError::Plaintext(a));
            }
        }
        let ranges: [(&'static str, u64, std::ops::RangeInclusive<u64>, &'static str); 3] = [
            ("execjail_timeout", self.execjail_timeout, 1..=86_400, "1 to 86400 seconds"),
            ("exec_output_limit", self.exec_output_limit, 1024..=(1 << 30), "1024 to 1073741824 bytes"),
            ("execjail_max", self.execjail_max as u64, 1..=256, "1 to 256"),
        ];
        for (key, value, range, expected) in ranges {
            if !range.contains(&value) {
                return Err(ConfigError::OutOfRange { key, value, expected });
            }
        }
        self.pool_choice().map(|_| ())
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
    /// it must parse to exactly the built-in defaults.
    #[test]
    #[cfg(target_os = "linux")]
    fn the_shipped_config_documents_the_defaults() {
        let shipped = include_str!("../dist/iocaged.toml");
        assert_eq!(Config::parse(shipped).unwrap(), Config::default(), "commented out, it changes nothing");
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
            ..Config::default()
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
        for bad in ["execjail_timeout = 0", "execjail_timeout = 86401", "exec_output_limit = 10", "execjail_max = 0"] {
            let c = Config::parse(bad).unwrap();
            assert!(matches!(c.validate(), Err(ConfigError::OutOfRange { .. })), "{bad}");
        }
        assert!(Config::parse("execjail_timeout = -1").is_err());
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
