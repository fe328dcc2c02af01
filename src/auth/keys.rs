//! API keys for automation: a client holds a key instead of a password and
//! presents it as a Bearer token. The daemon stores only a salted SHA-256
//! of each key's secret, in a file readable by root alone:
//!
//! ```text
//! # name role salt sha256(salt || secret)
//! backup read 3f9c... 8a1e...
//! ```
//! A key reads `iok.<name>.<64 hex digits>`. The file is read again when it
//! changes, so `iocaged key revoke` takes effect at once.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::roles::Role;
use super::secret::{constant_time_eq, hex, random_bytes, unhex};
use super::secret_file::{self, SecretFileError};
use super::tokens::Identity;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error("cannot make a key: no random bytes: {0}")]
    Random(std::io::Error),
    #[error("{path}, line {line}: {what}")]
    Malformed { path: PathBuf, line: usize, what: String },
    #[error("invalid key name {0:?}: use letters, digits, - and _ (at most 64)")]
    BadName(String),
    #[error("a key named {0:?} exists already")]
    Exists(String),
    #[error("no key named {0:?}")]
    NotFound(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub name: String,
    pub role: Role,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

fn digest(salt: &[u8], secret: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret);
    h.finalize().to_vec()
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The largest key file read (about 5,000 keys).
const MAX_KEY_FILE: u64 = 1 << 20;

/// Reads the key file; a missing file holds no keys.
pub fn load(path: &Path) -> Result<Vec<KeyEntry>, KeyError> {
    match secret_file::read(path, MAX_KEY_FILE)? {
        Some(bytes) => parse(path, &bytes),
        None => Ok(Vec::new()),
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<KeyEntry>, KeyError> {
    let text = std::str::from_utf8(bytes).map_err(|_| KeyError::Malformed {
        path: path.into(),
        line: 0,
        what: "not UTF-8".into(),
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: &str| KeyError::Malformed { path: path.into(), line: i + 1, what: what.into() };
        let f: Vec<&str> = line.split_whitespace().collect();
        let [name, role, salt, hash] = f.as_slice() else { return Err(bad("expected: name role salt hash")) };
        out.push(KeyEntry {
            name: name.to_string(),
            role: Role::parse(role).ok_or_else(|| bad("role must be read or write"))?,
            salt: unhex(salt).ok_or_else(|| bad("salt is not hex"))?,
            hash: unhex(hash).ok_or_else(|| bad("hash is not hex"))?,
        });
    }
    Ok(out)
}

fn save(path: &Path, entries: &[KeyEntry]) -> Result<(), KeyError> {
    let mut text = String::from("# iocaged API keys: name role salt sha256(salt||secret). Managed by `iocaged key`.\n");
    for e in entries {
        let role = if e.role == Role::Read { "read" } else { "write" };
        text.push_str(&format!("{} {role} {} {}\n", e.name, hex(&e.salt), hex(&e.hash)));
    }
    Ok(secret_file::write(path, text.as_bytes(), MAX_KEY_FILE, "; revoke keys first")?)
}

/// Adds a key and returns it (the only time it is shown).
pub fn add(path: &Path, name: &str, role: Role) -> Result<String, KeyError> {
    if !valid_name(name) {
        return Err(KeyError::BadName(name.into()));
    }
    let _held = secret_file::lock(path)?;
    let mut entries = load(path)?;
    if entries.iter().any(|e| e.name == name) {
        return Err(KeyError::Exists(name.into()));
    }
    let secret = random_bytes(32).map_err(KeyError::Random)?;
    let salt = random_bytes(16).map_err(KeyError::Random)?;
    entries.push(KeyEntry { name: name.into(), role, hash: digest(&salt, &secret), salt });
    save(path, &entries)?;
    Ok(format!("iok.{name}.{}", hex(&secret)))
}

/// Removes a key.
pub fn revoke(path: &Path, name: &str) -> Result<(), KeyError> {
    let _held = secret_file::lock(path)?;
    let mut entries = load(path)?;
    let before = entries.len();
    entries.retain(|e| e.name != name);
    if entries.len() == before {
        return Err(KeyError::NotFound(name.into()));
    }
    save(path, &entries)
}

/// The keys the daemon accepts. The file is read on every key check (it
/// is small; a check is a few microseconds) and parsed again when its
/// bytes differ from last time: a revoke takes effect at the next request,
/// even one in the same clock tick as the change (an mtime would miss it).
pub struct KeyStore {
    path: PathBuf,
    cache: Mutex<(Option<Vec<u8>>, Vec<KeyEntry>)>,
}

impl KeyStore {
    /// Opens the store, failing on a file with unsafe permissions.
    pub fn open(path: &Path) -> Result<KeyStore, KeyError> {
        let bytes = secret_file::read(path, MAX_KEY_FILE)?;
        let entries = match &bytes {
            Some(b) => parse(path, b)?,
            None => Vec::new(),
        };
        Ok(KeyStore { path: path.into(), cache: Mutex::new((bytes, entries)) })
    }

    /// The identity a key stands for; `None` for anything else.
    pub fn verify(&self, key: &str) -> Option<Identity> {
        let rest = key.strip_prefix("iok.")?;
        let (name, secret) = rest.rsplit_once('.')?;
        let secret = unhex(secret)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let now = match secret_file::read(&self.path, MAX_KEY_FILE) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!("API keys disabled: {e}");
                *cache = (None, Vec::new());
                return None;
            }
        };
        if now != cache.0 {
            let parsed = match &now {
                Some(bytes) => parse(&self.path, bytes),
                None => Ok(Vec::new()),
            };
            match parsed {
                Ok(entries) => *cache = (now, entries),
                Err(e) => {
                    tracing::error!("API keys disabled: {e}");
                    *cache = (None, Vec::new());
                    return None;
                }
            }
        }
        let e = cache.1.iter().find(|e| e.name == name)?;
        constant_time_eq(&digest(&e.salt, &secret), &e.hash)
            .then(|| Identity { user: format!("key:{}", e.name), role: e.role })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("iocaged-keys-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d.join("keys")
    }

    #[test]
    fn add_verify_revoke() {
        let path = tmp("avr");
        let key = add(&path, "backup", Role::Read).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(key.rsplit('.').next().unwrap()), "only a hash is stored");
        let store = KeyStore::open(&path).unwrap();
        assert_eq!(store.verify(&key), Some(Identity { user: "key:backup".into(), role: Role::Read }));
        let mut forged = key.clone();
        forged.pop();
        forged.push(if key.ends_with('0') { '1' } else { '0' });
        assert_eq!(store.verify(&forged), None);
        assert_eq!(store.verify("iok.backup.zz"), None);
        assert!(matches!(add(&path, "backup", Role::Read), Err(KeyError::Exists(_))));
        assert!(matches!(add(&path, "bad name", Role::Read), Err(KeyError::BadName(_))));
        // Revocation takes effect without reopening the store, even when
        // the file's modification time does not change (a revoke in the
        // same clock tick as the last change).
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        revoke(&path, "backup").unwrap();
        fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        assert_eq!(store.verify(&key), None);
        assert!(matches!(revoke(&path, "backup"), Err(KeyError::NotFound(_))));
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let path = tmp("perm");
        add(&path, "k", Role::ReadWrite).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(KeyStore::open(&path), Err(KeyError::File(SecretFileError::Permissions { .. }))));
    }
}
