//! Session tokens: 256 random bits, held in memory only, each with a
//! sliding lifetime (every use renews it). A token is `<id>.<secret>`; the
//! id finds the session and the secret is compared in constant time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::roles::Role;
use super::secret::{constant_time_eq, hex, random_bytes, unhex};

/// The sliding lifetime of a token.
pub const LIFETIME: Duration = Duration::from_secs(15 * 60);
/// The most sessions kept; beyond it the one closest to expiry goes.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub role: Role,
}

struct Session {
    secret: Vec<u8>,
    identity: Identity,
    expires: Instant,
}

#[derive(Default)]
pub struct Tokens {
    sessions: Mutex<HashMap<String, Session>>,
}

impl Tokens {
    /// A new token for `identity`, with the seconds it is valid for.
    pub fn issue(&self, identity: Identity) -> std::io::Result<(String, u64)> {
        self.issue_at(identity, Instant::now())
    }

    fn issue_at(&self, identity: Identity, now: Instant) -> std::io::Result<(String, u64)> {
        let id = hex(&random_bytes(8)?);
        let secret = random_bytes(32)?;
        let token = format!("{id}.{}", hex(&secret));
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.retain(|_, v| v.expires > now);
        if s.len() >= MAX_SESSIONS {
            if let Some(oldest) = s.iter().min_by_key(|(_, v)| v.expires).map(|(k, _)| k.clone()) {
                s.remove(&oldest);
            }
        }
        s.insert(id, Session { secret, identity, expires: now + LIFETIME });
        Ok((token, LIFETIME.as_secs()))
    }

    /// The identity behind a valid token (renewing it), with the seconds
    /// left; `None` for an unknown, wrong or expired token.
    pub fn check(&self, token: &str) -> Option<(Identity, u64)> {
        self.check_at(token, Instant::now())
    }

    fn check_at(&self, token: &str, now: Instant) -> Option<(Identity, u64)> {
        let (id, secret) = token.split_once('.')?;
        let secret = unhex(secret)?;
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let session = s.get_mut(id)?;
        if !constant_time_eq(&session.secret, &secret) {
            return None;
        }
        if session.expires <= now {
            s.remove(id);
            return None;
        }
        session.expires = now + LIFETIME;
        Some((session.identity.clone(), LIFETIME.as_secs()))
    }

    /// Ends a session (auth_clear).
    /// Whether `token` is a live session, without renewing it.
    pub fn is_live(&self, token: &str) -> bool {
        let Some((id, secret)) = token.split_once('.') else { return false };
        let Some(secret) = unhex(secret) else { return false };
        let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.get(id).is_some_and(|session| constant_time_eq(&session.secret, &secret) && session.expires > Instant::now())
    }

    pub fn revoke(&self, token: &str) {
        if let Some((id, _)) = token.split_once('.') {
            if self.check(token).is_some() {
                self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Identity {
        Identity { user: "alice".into(), role: Role::Read }
    }

    #[test]
    fn tokens_are_long_random_and_checked() {
        let t = Tokens::default();
        let (a, secs) = t.issue(who()).unwrap();
        let (b, _) = t.issue(who()).unwrap();
        assert_ne!(a, b);
        assert!(a.len() >= 32, "at least 128 bits");
        assert_eq!(secs, 900);
        assert_eq!(t.check(&a).map(|x| x.0), Some(who()));
        let (id, secret) = a.split_once('.').unwrap();
        let mut wrong = secret.to_string();
        wrong.replace_range(0..1, if &secret[0..1] == "0" { "1" } else { "0" });
        assert_eq!(t.check(&format!("{id}.{wrong}")), None);
        assert_eq!(t.check(""), None);
        assert_eq!(t.check("."), None);
        t.revoke(&a);
        assert_eq!(t.check(&a), None);
        assert!(t.check(&b).is_some());
    }

    #[test]
    fn lifetime_slides_and_ends() {
        let t = Tokens::default();
        let start = Instant::now();
        let (tok, _) = t.issue_at(who(), start).unwrap();
        let nearly = start + LIFETIME - Duration::from_secs(1);
        assert!(t.check_at(&tok, nearly).is_some(), "still valid, and renewed");
        assert!(t.check_at(&tok, nearly + LIFETIME - Duration::from_secs(1)).is_some(), "renewed by the use");
        assert!(t.check_at(&tok, nearly + LIFETIME * 3).is_none(), "expired after 15 idle minutes");
    }
}
