//! A FreeBSD release's `MANIFEST`: the distribution sets a mirror offers
//! for a release, each with its SHA-256 and the number of files it holds,
//! one tab-separated line per set, as FreeBSD's release scripts write it:
//!
//! ```text
//! base.txz <TAB> <sha256> <TAB> 27891 <TAB> base <TAB> "Base system (MANDATORY)" <TAB> on
//! ```
//!
//! The fetch checks a downloaded set against its line before anything is
//! extracted ([`Hashing`]), and bounds the extraction by the number of files
//! the line declares. A set's file name becomes part of a URL and of a path
//! on the host, so only plain names (`[A-Za-z0-9._-]`, ending in `.txz`)
//! are accepted.

use std::io::Read;

use sha2::{Digest, Sha256};

/// One distribution set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistSet {
    /// The archive's file name (`base.txz`).
    pub file: String,
    pub sha256: [u8; 32],
    /// How many files (entries) it holds.
    pub files: u64,
    /// The set's name (`base`).
    pub name: String,
    pub description: String,
    /// Whether the installer selects it by default.
    pub default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("MANIFEST line {line}: {what}")]
    Malformed { line: usize, what: String },
    #[error("MANIFEST has no set {0:?}")]
    NoSuchSet(String),
}

/// Lower-case hex of a checksum.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A SHA-256 written as 64 hex digits.
pub fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

fn plain_file_name(name: &str) -> bool {
    name.len() <= 64
        && name.ends_with(".txz")
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The sets of a MANIFEST's text.
pub fn parse(text: &str) -> Result<Vec<DistSet>, ManifestError> {
    let mut sets: Vec<DistSet> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| ManifestError::Malformed { line: i + 1, what: what.into() };
        let fields: Vec<&str> = line.split('\t').collect();
        let [file, sum, files, name, description, default] = fields.as_slice() else {
            return Err(bad("expected six tab-separated fields: file, sha256, files, set, description, on/off"));
        };
        if !plain_file_name(file) {
            return Err(bad("the file is not a plain name ending in .txz"));
        }
        if sets.iter().any(|s| s.file == *file) {
            return Err(bad("the file is listed twice"));
        }
        let sha256 = unhex32(&sum.to_ascii_lowercase()).ok_or_else(|| bad("the SHA-256 is not 64 hex digits"))?;
        let files = files.parse().map_err(|_| bad("the number of files is not a number"))?;
        let default = match *default {
            "on" => true,
            "off" => false,
            _ => return Err(bad("the last field is neither on nor off")),
        };
        sets.push(DistSet {
            file: file.to_string(),
            sha256,
            files,
            name: name.to_string(),
            description: description.trim_matches('"').to_string(),
            default,
        });
    }
    Ok(sets)
}

/// The set whose file is `file`.
pub fn find<'a>(sets: &'a [DistSet], file: &str) -> Result<&'a DistSet, ManifestError> {
    sets.iter().find(|s| s.file == file).ok_or_else(|| ManifestError::NoSuchSet(file.to_string()))
}

/// A reader that hashes (SHA-256) and counts what passes through it.
pub struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Hashing { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// The SHA-256 of what was read.
    pub fn digest(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SHA-256 of "abc" (FIPS 180-2's example).
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn manifest() -> String {
        format!(
            "base.txz\t{ABC}\t27891\tbase\t\"Base system (MANDATORY)\"\ton\n\
             lib32.txz\t{}\t1021\tlib32\t\"32-bit compatibility libraries\"\ton\n\
             tests.txz\t{}\t12\ttests\t\"Test suite\"\toff\n",
            "0".repeat(64),
            "F".repeat(64)
        )
    }

    #[test]
    fn freebsd_s_manifest_lines_are_read() {
        let sets = parse(&manifest()).unwrap();
        assert_eq!(sets.len(), 3);
        let base = find(&sets, "base.txz").unwrap();
        assert_eq!((base.files, base.name.as_str(), base.default), (27891, "base", true));
        assert_eq!(base.description, "Base system (MANDATORY)");
        assert_eq!(hex(&base.sha256), ABC);
        assert_eq!(hex(&find(&sets, "tests.txz").unwrap().sha256), "f".repeat(64), "upper-case hex is read");
        assert!(!sets[2].default);
        assert_eq!(find(&sets, "src.txz"), Err(ManifestError::NoSuchSet("src.txz".into())));
    }

    #[test]
    fn a_download_is_checked_against_its_line() {
        let sets = parse(&manifest()).unwrap();
        let base = find(&sets, "base.txz").unwrap();
        let mut r = Hashing::new(&b"abc"[..]);
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert_eq!(r.digest(), base.sha256);
        let mut r = Hashing::new(&b"abd"[..]);
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert_ne!(r.digest(), base.sha256);
    }

    #[test]
    fn names_that_could_leave_the_mirror_or_the_host_path_are_refused() {
        for file in ["../base.txz", "/etc/base.txz", "a/b.txz", "base.tgz", ".txz", "base .txz", "base.txz\u{0}"] {
            let text = format!("{file}\t{ABC}\t1\tbase\t\"x\"\ton\n");
            let err = parse(&text).unwrap_err();
            assert!(err.to_string().contains("plain name"), "{file:?}: {err}");
        }
        for (text, needle) in [
            (format!("base.txz\t{}\t1\tbase\t\"x\"\ton", "z".repeat(64)), "SHA-256"),
            (format!("base.txz\t{ABC}\tmany\tbase\t\"x\"\ton"), "number"),
            (format!("base.txz\t{ABC}\t1\tbase\t\"x\"\tyes"), "on nor off"),
            (format!("base.txz\t{ABC}\t1\tbase"), "six"),
            (format!("base.txz\t{ABC}\t1\tb\t\"x\"\ton\nbase.txz\t{ABC}\t1\tb\t\"x\"\ton"), "twice"),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
        }
    }
}
