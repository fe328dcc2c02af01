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

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::roles::Role;
use super::secret::{constant_time_eq, hex, random_bytes, unhex};
use super::tokens::Identity;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is readable or writable by others than root (mode {mode:o}): chmod 600 it")]
    Permissions { path: PathBuf, mode: u32 },
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

/// Reads the key file; a missing file holds no keys.
pub fn load(path: &Path) -> Result<Vec<KeyEntry>, KeyError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(KeyError::Read { path: path.into(), source }),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions { path: path.into(), mode });
    }
    let text = fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.into(), source })?;
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
    let werr = |source| KeyError::Write { path: path.into(), source };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(werr)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(werr)?;
    let mut text = String::from("# iocaged API keys: name role salt sha256(salt||secret). Managed by `iocaged key`.\n");
    for e in entries {
        let role = if e.role == Role::Read { "read" } else { "write" };
        text.push_str(&format!("{} {role} {} {}\n", e.name, hex(&e.salt), hex(&e.hash)));
    }
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(werr)?;
    fs::rename(&tmp, path).map_err(werr)
}

/// Adds a key and returns it (the only time it is shown).
pub fn add(path: &Path, name: &str, role: Role) -> Result<String, KeyError> {
    if !valid_name(name) {
        return Err(KeyError::BadName(name.into()));
    }
    let mut entries = load(path)?;
    if entries.iter().any(|e| e.name == name) {
        return Err(KeyError::Exists(name.into()));
    }
    let io = |source| KeyError::Write { path: path.into(), source };
    let secret = random_bytes(32).map_err(io)?;
    let salt = random_bytes(16).map_err(io)?;
    entries.push(KeyEntry { name: name.into(), role, hash: digest(&salt, &secret), salt });
    save(path, &entries)?;
    Ok(format!("iok.{name}.{}", hex(&secret)))
}

/// Removes a key.
pub fn revoke(path: &Path, name: &str) -> Result<(), KeyError> {
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

/// The largest key file read (about 5,000 keys).
const MAX_KEY_FILE: u64 = 1 << 20;

/// The key file's bytes; `None` when there is none.
fn read_bounded(path: &Path) -> Result<Option<Vec<u8>>, KeyError> {
    use std::io::Read;
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(KeyError::Read { path: path.into(), source }),
    };
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| KeyError::Read { path: path.into(), source })?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(KeyError::Malformed {
            path: path.into(),
            line: 0,
            what: format!("larger than {MAX_KEY_FILE} bytes"),
        });
    }
    Ok(Some(bytes))
}

impl KeyStore {
    /// Opens the store, failing on a file with unsafe permissions.
    pub fn open(path: &Path) -> Result<KeyStore, KeyError> {
        let entries = load(path)?;
        let bytes = read_bounded(path)?;
        Ok(KeyStore { path: path.into(), cache: Mutex::new((bytes, entries)) })
    }

    /// The identity a key stands for; `None` for anything else.
    pub fn verify(&self, key: &str) -> Option<Identity> {
        let rest = key.strip_prefix("iok.")?;
        let (name, secret) = rest.rsplit_once('.')?;
        let secret = unhex(secret)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let now = match read_bounded(&self.path) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!("API keys disabled: {e}");
                *cache = (None, Vec::new());
                return None;
            }
        };
        if now != cache.0 {
            // Parsed (and its permissions checked) from the file again.
            match load(&self.path) {
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
        assert!(matches!(KeyStore::open(&path), Err(KeyError::Permissions { .. })));
    }
}
