//! Authentication: who the caller is and what they may do.
//!
//! - passwords through PAM (`pam`), once per `rpc/auth` or per REST
//!   request with `Authorization: Basic`;
//! - session tokens (`tokens`) from `rpc/auth`, and API keys ([`keys`]),
//!   both presented as `Authorization: Bearer` or with `rpc/auth_token`;
//! - sysadm clients' registered RSA keys ([`client_keys`]), proven with
//!   `rpc/auth_ssl` instead of a password;
//! - roles from the system's groups (`roles`);
//! - a lockout of addresses that keep failing ([`lockout`]).

pub mod client_keys;
pub mod keys;
pub mod lockout;
pub(crate) mod pam;
pub(crate) mod roles;
pub(crate) mod secret;
pub(crate) mod secret_file;
pub(crate) mod tokens;

use std::net::IpAddr;
use std::sync::Arc;

pub use roles::Role;
pub use tokens::Identity;

/// Why a caller was not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("too many failed logins from this address: blocked for an hour")]
    LockedOut,
    #[error("invalid credentials")]
    Invalid,
    #[error("user {0} may not use this service (not root, not in wheel or operator)")]
    NoRole(String),
    #[error("too many logins in progress ({0}); try again in a few seconds")]
    Busy(&'static str),
}

/// Password checks at once without a configuration (`max_logins`).
const DEFAULT_MAX_LOGINS: usize = 4;

/// How long a login waits for a free password check.
const PAM_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Auth {
    pam_service: String,
    tokens: tokens::Tokens,
    keys: Option<keys::KeyStore>,
    client_keys: Option<client_keys::ClientKeys>,
    lockout: lockout::Lockout,
    /// One permit per password check running (`max_logins`), apart from
    /// the actions' so that logins are never starved by them.
    pam: Arc<tokio::sync::Semaphore>,
    max_logins: usize,
}

impl Auth {
    pub fn new(pam_service: impl Into<String>, keys: Option<keys::KeyStore>) -> Arc<Auth> {
        Self::with_limits(pam_service, keys, None, DEFAULT_MAX_LOGINS, Vec::new())
    }

    /// [`Auth::new`] with sysadm clients' keys, at most `max_logins`
    /// password checks at once, and these reverse proxies (which the lockout
    /// does not exempt as loopback).
    pub fn with_limits(
        pam_service: impl Into<String>,
        keys: Option<keys::KeyStore>,
        client_keys: Option<client_keys::ClientKeys>,
        max_logins: usize,
        trusted_proxies: Vec<crate::config::Network>,
    ) -> Arc<Auth> {
        Arc::new(Auth {
            pam_service: pam_service.into(),
            tokens: Default::default(),
            keys,
            client_keys,
            lockout: lockout::Lockout::new(trusted_proxies),
            pam: Arc::new(tokio::sync::Semaphore::new(max_logins.max(1))),
            max_logins: max_logins.max(1),
        })
    }

    /// Password checks running now (for metrics).
    pub fn logins_in_flight(&self) -> usize {
        self.max_logins.saturating_sub(self.pam.available_permits())
    }

    /// Addresses locked out now (for metrics).
    pub fn addresses_locked_out(&self) -> usize {
        self.lockout.blocked_count()
    }

    pub fn is_locked_out(&self, ip: IpAddr) -> bool {
        self.lockout.is_blocked(ip)
    }

    /// Records a failed login; the failure itself is answered as such, the
    /// block applies from the next request on.
    fn failed<T>(&self, ip: IpAddr, e: AuthError) -> Result<T, AuthError> {
        if self.lockout.failure(ip) {
            tracing::warn!(peer = %ip, "address blocked after repeated failed logins");
        }
        Err(e)
    }

    /// Checks a password (PAM, on a blocking thread) and the user's role.
    ///
    /// First the address's turn (its checks run one at a time, so attempts
    /// in flight count against the lockout), then one of `max_logins`
    /// permits; the outcome is recorded before the turn passes on.
    ///
    /// It runs as a task of its own: a client that hangs up while PAM
    /// delays a wrong password must not take the outcome (and the turn)
    /// with it, or it could guess without ever being counted.
    pub async fn password(self: &Arc<Self>, ip: IpAddr, user: &str, password: &str) -> Result<Identity, AuthError> {
        let (this, user, password) = (self.clone(), user.to_string(), password.to_string());
        tokio::spawn(async move { this.check_password(ip, &user, &password).await }).await.unwrap_or_else(|e| {
            tracing::error!("a password check failed inside the server: {e}");
            Err(AuthError::Invalid)
        })
    }

    async fn check_password(&self, ip: IpAddr, user: &str, password: &str) -> Result<Identity, AuthError> {
        let _turn = self.lockout.admit(ip).await.map_err(|r| match r {
            lockout::Refusal::Blocked => AuthError::LockedOut,
            lockout::Refusal::Busy => AuthError::Busy("this address's earlier logins are still being checked"),
        })?;
        let _permit = tokio::time::timeout(PAM_WAIT, self.pam.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(AuthError::Busy("every password check is taken (max_logins)"))?;
        let (service, u, p) = (self.pam_service.clone(), user.to_string(), password.to_string());
        let checked = tokio::task::spawn_blocking(move || pam::authenticate(&service, &u, &p, ip)).await;
        match checked {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::info!(peer = %ip, user, "login refused: {e}");
                return self.failed(ip, AuthError::Invalid);
            }
            Err(e) => {
                tracing::error!("PAM check did not complete: {e}");
                return Err(AuthError::Invalid);
            }
        }
        let Some(role) = roles::role_of(user) else {
            tracing::info!(peer = %ip, user, "login refused: no role");
            return self.failed(ip, AuthError::NoRole(user.to_string()));
        };
        self.lockout.success(ip);
        Ok(Identity { user: user.to_string(), role })
    }

    /// `rpc/auth`: a password login that starts a session.
    pub async fn login(
        self: &Arc<Self>,
        ip: IpAddr,
        user: &str,
        password: &str,
    ) -> Result<(Identity, String, u64), AuthError> {
        let who = self.password(ip, user, password).await?;
        let (token, secs) = self.tokens.issue(who.clone()).map_err(|e| {
            tracing::error!("cannot make a token: {e}");
            AuthError::Invalid
        })?;
        Ok((who, token, secs))
    }

    /// A Bearer credential: a session token (renewed, with its seconds
    /// left) or an API key (no expiry: `None`).
    pub fn bearer(&self, ip: IpAddr, token: &str) -> Result<(Identity, Option<u64>), AuthError> {
        if self.is_locked_out(ip) {
            return Err(AuthError::LockedOut);
        }
        if let Some((who, secs)) = self.tokens.check(token) {
            return Ok((who, Some(secs)));
        }
        if let Some(who) = self.keys.as_ref().and_then(|k| k.verify(token)) {
            return Ok((who, None));
        }
        self.failed(ip, AuthError::Invalid)
    }

    /// `rpc/auth_clear`: ends a session.
    /// `rpc/auth_ssl`'s second stage: the user whose registered key turns
    /// `encrypted` back into `challenge` gets a session, with the role its
    /// groups give it now. A failure counts against the address like a
    /// wrong password.
    pub fn key_login(
        &self,
        ip: IpAddr,
        challenge: &str,
        encrypted: &str,
    ) -> Result<(Identity, String, u64), AuthError> {
        if self.is_locked_out(ip) {
            return Err(AuthError::LockedOut);
        }
        let Some(store) = &self.client_keys else { return self.failed(ip, AuthError::Invalid) };
        let user = match store.verify(challenge, encrypted) {
            Ok(Some(user)) => user,
            Ok(None) => {
                tracing::info!(peer = %ip, "key login refused: no registered key matches");
                return self.failed(ip, AuthError::Invalid);
            }
            Err(e) => {
                tracing::error!("cannot read the client keys: {e}");
                return Err(AuthError::Invalid);
            }
        };
        // The account must still be allowed in (not locked, not expired),
        // as sshd asks of a public-key login.
        if let Err(e) = pam::account(&self.pam_service, &user, ip) {
            tracing::info!(peer = %ip, user, "key login refused by the account check: {e}");
            return self.failed(ip, AuthError::Invalid);
        }
        let Some(role) = roles::role_of(&user) else {
            tracing::info!(peer = %ip, user, "key login refused: no role");
            return self.failed(ip, AuthError::NoRole(user));
        };
        self.lockout.success(ip);
        let who = Identity { user, role };
        let (token, secs) = self.tokens.issue(who.clone()).map_err(|e| {
            tracing::error!("cannot make a token: {e}");
            AuthError::Invalid
        })?;
        Ok((who, token, secs))
    }

    /// Whether `token` (a session token or an API key) is still good, without
    /// renewing it or counting a failure (for pushing events to a socket).
    pub fn still_valid(&self, token: &str) -> bool {
        self.tokens.is_live(token) || self.keys.as_ref().is_some_and(|k| k.verify(token).is_some())
    }

    /// The registered client keys, when the daemon keeps them.
    pub fn client_keys(&self) -> Option<&client_keys::ClientKeys> {
        self.client_keys.as_ref()
    }

    pub fn logout(&self, token: &str) {
        self.tokens.revoke(token);
    }
}
