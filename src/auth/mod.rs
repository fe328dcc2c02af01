//! Authentication: who the caller is and what they may do.
//!
//! - passwords through PAM ([`pam`]), once per `rpc/auth` or per REST
//!   request with `Authorization: Basic`;
//! - session tokens ([`tokens`]) from `rpc/auth`, and API keys ([`keys`]),
//!   both presented as `Authorization: Bearer` or with `rpc/auth_token`;
//! - roles from the system's groups ([`roles`]);
//! - a lockout of addresses that keep failing ([`lockout`]).

pub mod keys;
pub mod lockout;
pub mod pam;
pub mod roles;
pub mod secret;
pub mod tokens;

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
}

pub struct Auth {
    pam_service: String,
    tokens: tokens::Tokens,
    keys: Option<keys::KeyStore>,
    lockout: lockout::Lockout,
}

impl Auth {
    pub fn new(pam_service: impl Into<String>, keys: Option<keys::KeyStore>) -> Arc<Auth> {
        Arc::new(Auth {
            pam_service: pam_service.into(),
            tokens: Default::default(),
            keys,
            lockout: Default::default(),
        })
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
    pub async fn password(self: &Arc<Self>, ip: IpAddr, user: &str, password: &str) -> Result<Identity, AuthError> {
        if self.is_locked_out(ip) {
            return Err(AuthError::LockedOut);
        }
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
    pub fn logout(&self, token: &str) {
        self.tokens.revoke(token);
    }
}
