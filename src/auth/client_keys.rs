//! Client keys for `rpc/auth_ssl`, sysadm's password-less login. After its
//! first password login a sysadm client registers an RSA public key
//! (`rpc/settings` `register_ssl_cert`); a saved host later reconnects only
//! by proving it holds the private key:
//!
//! 1. `rpc/auth_ssl` with no args: the server answers `{"test_string"}`, 40
//!    random letters and digits, good for [`CHALLENGE_LIFETIME`] on that
//!    socket alone ([`Challenge`]).
//! 2. `rpc/auth_ssl` with `{"encrypted_string"}`: base64 of the test string
//!    through RSA's private-key operation with PKCS#1 v1.5 type-1 padding
//!    and no digest (OpenSSL's `RSA_private_encrypt(..., RSA_PKCS1_PADDING)`,
//!    what the client does). The server undoes it with each registered key
//!    and logs in the user of the one that gives the test string back; the
//!    role comes from the user's groups at that moment, as for a password.
//!
//! Keys are kept in a file readable by root alone, one JSON object per line
//! (`user`, `pub_key`, `nickname`, `email`, `registered`). `pub_key` is kept
//! as the client sends it (base64 of the PEM text), which is how list and
//! revoke name a key. The file is read again whenever its content changes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use serde::{Deserialize, Serialize};

use super::secret::random_bytes;
use super::secret_file::{self, SecretFileError};

/// How long a test string may be answered.
pub const CHALLENGE_LIFETIME: Duration = Duration::from_secs(30);
/// The test string's length (the original server's).
const CHALLENGE_LEN: usize = 40;
/// The largest key file read, and the most keys per user.
const MAX_FILE: u64 = 1 << 20;
const MAX_KEYS_PER_USER: usize = 32;
/// Bounds on what a client may register.
const MAX_PUB_KEY: usize = 16 * 1024;
const MAX_LABEL: usize = 256;
const MIN_BITS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum ClientKeyError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error("{path}, line {line}: {what}")]
    Malformed { path: PathBuf, line: usize, what: String },
    /// What a client sent is not a usable key (the reason says why).
    #[error("{0}")]
    BadKey(String),
    #[error("{user} has {MAX_KEYS_PER_USER} keys registered already; revoke one first")]
    TooMany { user: String },
    #[error("no such key registered{}", .user.as_ref().map(|u| format!(" for {u}")).unwrap_or_default())]
    NotFound { user: Option<String> },
}

/// One registered key, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientKey {
    pub user: String,
    /// Base64 of the PEM text, as the client sent it.
    pub pub_key: String,
    #[serde(default)]
    pub nickname: String,
    #[serde(default)]
    pub email: String,
    /// When it was registered (RFC 3339, UTC).
    #[serde(default)]
    pub registered: String,
}

impl ClientKey {
    /// The description `list_ssl_certs` gives, as the original server did.
    pub fn description(&self) -> String {
        format!("Nickname: {}\nEmail: {}\nDate Registered: {}", self.nickname, self.email, self.registered)
    }
}

/// The public key inside a client's `pub_key` (base64 of PEM text).
fn parse_pub_key(pub_key: &str) -> Result<RsaPublicKey, ClientKeyError> {
    let bad = |what: &str| ClientKeyError::BadKey(format!("pub_key {what}"));
    if pub_key.is_empty() || pub_key.len() > MAX_PUB_KEY {
        return Err(bad(&format!("must be 1 to {MAX_PUB_KEY} characters")));
    }
    let pem = base64::engine::general_purpose::STANDARD
        .decode(pub_key.trim())
        .map_err(|_| bad("is not base64 (send base64 of the PEM text)"))?;
    let pem = String::from_utf8(pem).map_err(|_| bad("is not base64 of PEM text"))?;
    let key = RsaPublicKey::from_public_key_pem(pem.trim())
        .map_err(|e| bad(&format!("is not an RSA public key in PEM (\"BEGIN PUBLIC KEY\"): {e}")))?;
    let bits = key.size() * 8;
    if bits < MIN_BITS {
        return Err(bad(&format!("is a {bits}-bit key; at least {MIN_BITS} bits are needed")));
    }
    Ok(key)
}

fn label(what: &str, value: &str) -> Result<String, ClientKeyError> {
    if value.chars().count() > MAX_LABEL || value.chars().any(char::is_control) {
        return Err(ClientKeyError::BadKey(format!(
            "{what} must be at most {MAX_LABEL} characters without control characters"
        )));
    }
    Ok(value.to_string())
}

/// A test string handed to one socket, and until when it may be answered.
#[derive(Debug, Default)]
pub struct Challenge(Mutex<Option<(String, Instant)>>);

impl Challenge {
    /// A new test string for this socket (the previous one is forgotten).
    pub fn issue(&self) -> std::io::Result<String> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        // Rejection sampling keeps every character equally likely.
        let mut out = String::with_capacity(CHALLENGE_LEN);
        while out.len() < CHALLENGE_LEN {
            for b in random_bytes(64)? {
                if usize::from(b) < 4 * ALPHABET.len() && out.len() < CHALLENGE_LEN {
                    out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
                }
            }
        }
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((out.clone(), Instant::now() + CHALLENGE_LIFETIME));
        Ok(out)
    }

    /// The test string, if one is outstanding and fresh; it can be
    /// answered once only.
    pub fn take(&self) -> Option<String> {
        let (s, until) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        (Instant::now() <= until).then_some(s)
    }
}

/// The keys as read, each with its public key when it parses.
type Parsed = Vec<(ClientKey, Option<RsaPublicKey>)>;

/// The registered keys' file, with its parsed keys cached by content.
pub struct ClientKeys {
    path: PathBuf,
    cache: Mutex<(Option<Vec<u8>>, Parsed)>,
    /// Writers one at a time (register and revoke read, change, rename).
    write: Mutex<()>,
}

fn parse_file(path: &Path, bytes: &[u8]) -> Result<Vec<ClientKey>, ClientKeyError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ClientKeyError::Malformed {
        path: path.into(),
        line: 0,
        what: "not UTF-8".into(),
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let key = serde_json::from_str(line).map_err(|e| ClientKeyError::Malformed {
            path: path.into(),
            line: i + 1,
            what: e.to_string(),
        })?;
        out.push(key);
    }
    Ok(out)
}

impl ClientKeys {
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, ClientKeyError> {
        let keys = ClientKeys { path: path.into(), cache: Mutex::new((None, Vec::new())), write: Mutex::new(()) };
        keys.all()?;
        Ok(keys)
    }

    /// Every registered key (the file read again if it changed).
    pub fn all(&self) -> Result<Vec<ClientKey>, ClientKeyError> {
        Ok(self.current()?.into_iter().map(|(k, _)| k).collect())
    }

    fn current(&self) -> Result<Parsed, ClientKeyError> {
        let bytes = secret_file::read(&self.path, MAX_FILE)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != bytes {
            let keys = match &bytes {
                Some(b) => parse_file(&self.path, b)?,
                None => Vec::new(),
            };
            // A key that no longer parses is kept (it can still be listed
            // and revoked) but never matches.
            let parsed = keys.into_iter().map(|k| (parse_pub_key(&k.pub_key).ok(), k)).map(|(p, k)| (k, p));
            *cache = (bytes, parsed.collect());
        }
        Ok(cache.1.clone())
    }

    fn save(&self, keys: &[ClientKey]) -> Result<(), ClientKeyError> {
        let mut text = String::from("# iocaged: client keys for rpc/auth_ssl (rpc/settings register_ssl_cert)\n");
        for k in keys {
            let line = serde_json::to_string(k)
                .map_err(|e| SecretFileError::Write { path: self.path.clone(), source: std::io::Error::other(e) })?;
            text.push_str(&line);
            text.push('\n');
        }
        Ok(secret_file::write(&self.path, text.as_bytes(), MAX_FILE, "; revoke keys first")?)
    }

    /// Registers `pub_key` for `user` (again: its labels are replaced).
    pub fn register(&self, user: &str, pub_key: &str, nickname: &str, email: &str) -> Result<(), ClientKeyError> {
        let parsed = parse_pub_key(pub_key)?;
        let key = ClientKey {
            user: user.to_string(),
            pub_key: pub_key.trim().to_string(),
            nickname: label("nickname", nickname)?,
            email: label("email", email)?,
            registered: crate::iocage::names::timestamp_rfc3339(),
        };
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let _held = secret_file::lock(&self.path)?;
        let current = self.current()?;
        // One key, one user: a key (public, after all) registered by
        // another user would make logins ambiguous.
        if current.iter().any(|(k, p)| k.user != user && p.as_ref() == Some(&parsed)) {
            return Err(ClientKeyError::BadKey("pub_key is registered for another user".into()));
        }
        let mut keys: Vec<ClientKey> = current.into_iter().map(|(k, _)| k).collect();
        keys.retain(|k| !(k.user == key.user && k.pub_key == key.pub_key));
        if keys.iter().filter(|k| k.user == user).count() >= MAX_KEYS_PER_USER {
            return Err(ClientKeyError::TooMany { user: user.to_string() });
        }
        keys.push(key);
        self.save(&keys)
    }

    /// Removes `pub_key`: `user`'s, or any user's when `user` is `None`.
    pub fn revoke(&self, user: Option<&str>, pub_key: &str) -> Result<(), ClientKeyError> {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let _held = secret_file::lock(&self.path)?;
        let mut keys = self.all()?;
        let before = keys.len();
        keys.retain(|k| !(k.pub_key == pub_key.trim() && user.is_none_or(|u| k.user == u)));
        if keys.len() == before {
            return Err(ClientKeyError::NotFound { user: user.map(str::to_string) });
        }
        self.save(&keys)
    }

    /// The user whose registered key turns `encrypted` (base64) back into
    /// `challenge`; `None` when no key does.
    pub fn verify(&self, challenge: &str, encrypted: &str) -> Result<Option<String>, ClientKeyError> {
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(encrypted.trim()) else { return Ok(None) };
        let mut users = std::collections::BTreeSet::new();
        for (key, parsed) in self.current()? {
            let Some(public) = parsed else { continue };
            // Type-1 padding around the raw test string: what
            // RSA_public_decrypt(..., RSA_PKCS1_PADDING) accepts.
            if public.verify(Pkcs1v15Sign::new_unprefixed(), challenge.as_bytes(), &sig).is_ok() {
                users.insert(key.user);
            }
        }
        // A key under two users (only a file edited by hand can have it)
        // logs in neither.
        Ok(if users.len() == 1 { users.pop_first() } else { None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::RsaPrivateKey;
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    /// A 2048-bit test key (generated once with `openssl genrsa`; in the
    /// fixtures so that no test waits for a key to be generated).
    pub fn test_key() -> (RsaPrivateKey, String) {
        let pem = include_str!("../../tests/fixtures/client-key.pem");
        let private = RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
        let public = private.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        (private, base64::engine::general_purpose::STANDARD.encode(public))
    }

    fn encrypt(private: &RsaPrivateKey, s: &str) -> String {
        let sig = private.sign(Pkcs1v15Sign::new_unprefixed(), s.as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(sig)
    }

    #[test]
    fn register_verify_revoke() {
        let dir = std::env::temp_dir().join(format!("iocaged-client-keys-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = ClientKeys::open(dir.join("client-keys")).unwrap();
        let (private, pub_key) = test_key();
        let challenge = Challenge::default();
        let test = challenge.issue().unwrap();
        assert_eq!(test.len(), 40);
        assert!(test.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(store.verify(&test, &encrypt(&private, &test)).unwrap(), None, "nothing registered yet");
        store.register("alice", &pub_key, "laptop", "a@example.org").unwrap();
        assert_eq!(store.verify(&test, &encrypt(&private, &test)).unwrap().as_deref(), Some("alice"));
        assert_eq!(store.verify(&test, &encrypt(&private, "another string")).unwrap(), None);
        assert_eq!(store.verify(&test, "not base64 !").unwrap(), None);
        let mode = fs::metadata(dir.join("client-keys")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let listed = store.all().unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].description().starts_with("Nickname: laptop\nEmail: a@example.org\nDate Registered: 20"));
        assert!(matches!(store.revoke(Some("bob"), &pub_key), Err(ClientKeyError::NotFound { .. })));
        store.revoke(Some("alice"), &pub_key).unwrap();
        assert_eq!(store.verify(&test, &encrypt(&private, &test)).unwrap(), None, "revoked");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// What OpenSSL itself makes (the client's RSA_private_encrypt with
    /// PKCS#1 padding, here `openssl pkeyutl -sign -pkeyopt
    /// rsa_padding_mode:pkcs1`) is accepted; a stranger's key is not; a
    /// key belongs to one user.
    #[test]
    fn openssl_encodings_and_strangers() {
        let dir = std::env::temp_dir().join(format!("iocaged-client-keys-ossl-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = ClientKeys::open(dir.join("client-keys")).unwrap();
        let (_, pub_key) = test_key();
        store.register("alice", &pub_key, "", "").unwrap();
        let test = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCd";
        let by_openssl = include_str!("../../tests/fixtures/client-key.openssl-sig");
        assert_eq!(store.verify(test, by_openssl).unwrap().as_deref(), Some("alice"));
        assert_eq!(store.verify("another test string", by_openssl).unwrap(), None);
        let stranger = RsaPrivateKey::from_pkcs8_pem(include_str!("../../tests/fixtures/client-key-2.pem")).unwrap();
        assert_eq!(store.verify(test, &encrypt(&stranger, test)).unwrap(), None, "an unregistered key");
        let e = store.register("eve", &pub_key, "", "").unwrap_err().to_string();
        assert!(e.contains("another user"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_keys_are_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("iocaged-client-keys-bad-{}", std::process::id()));
        let store = ClientKeys::open(dir.join("client-keys")).unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        for (pub_key, want) in [
            (String::new(), "1 to"),
            ("%%%".to_string(), "not base64"),
            (b64("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), "not an RSA public key"),
        ] {
            let e = store.register("alice", &pub_key, "", "").unwrap_err().to_string();
            assert!(e.contains(want), "{pub_key:?}: {e}");
        }
        let (_, pub_key) = test_key();
        assert!(store.register("alice", &pub_key, "a\nb", "").unwrap_err().to_string().contains("control"));
        assert!(!dir.join("client-keys").exists(), "nothing written for refused keys");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_test_string_is_good_once() {
        let c = Challenge::default();
        let s = c.issue().unwrap();
        assert_eq!(c.take().as_deref(), Some(s.as_str()));
        assert_eq!(c.take(), None, "answered once only");
        let s2 = c.issue().unwrap();
        assert_ne!(s, s2);
    }
}
