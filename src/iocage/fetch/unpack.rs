//! Step 4 of fetchrelease, on a blocking thread: each set's archive (xz,
//! gzip or plain tar, by its first bytes) extracted into the release's
//! `root` ([`crate::iocage::extract`]: hostile-archive safe) and checked
//! to its end, then the release's directory opened again.

use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use crate::iocage::error::ActionError;
use crate::iocage::extract::{self, Extracted, Limits};
use crate::iocage::progress::Reporter;

use super::datasets::set_mode;
use super::transfer::{Counted, open_regular};
use super::{Set, failed};

/// Memory the xz decoder may use (`xz -9` needs 65 MiB; FreeBSD's sets
/// use less).
const XZ_MEMORY_KIB: u32 = 96 << 10;

/// Step 4 (blocking thread): every set extracted into `<dir>/root`, then
/// the release's directory (`dir`, closed by
/// [`begin`](super::datasets::begin)) opened again.
pub(super) fn extract_all(
    release: &str,
    dir: &Path,
    downloads: &Path,
    sets: &[Set],
    reporters: &[Arc<Reporter>],
    limit: u64,
) -> Result<Extracted, ActionError> {
    let root = dir.join("root");
    let mut total = Extracted::default();
    for (set, report) in sets.iter().zip(reporters) {
        let path = downloads.join(&set.file);
        let file = open_regular(&path).map_err(|e| failed(release, format!("cannot read {}: {e}", path.display())))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let counted = BufReader::with_capacity(
            256 << 10,
            Counted { inner: file, read: 0, total: size, target: &set.file, report },
        );
        let limits = Limits { entries: set.entries, bytes: limit.saturating_sub(total.bytes) };
        let done = extract_set(counted, &root, limits).map_err(|e| {
            let e = failed(release, format!("{}: {e}", set.file));
            report.fail(&e);
            e
        })?;
        report.finish(size);
        total.entries += done.entries;
        total.bytes += done.bytes;
    }
    set_mode(dir, 0o755).map_err(|e| failed(release, format!("cannot open {} again: {e}", dir.display())))?;
    Ok(total)
}

/// The xz magic at the start of a `.txz` (and `.tar.xz`).
const XZ_MAGIC: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0x00];
/// The gzip magic at the start of a `.tar.gz` (Alpine's minirootfs, ...).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Extracts one archive: xz- or gzip-compressed, or a plain tar stream (by
/// its first bytes, not its name).
fn extract_set(mut archive: impl std::io::BufRead, root: &Path, limits: Limits) -> Result<Extracted, String> {
    let head = archive.fill_buf().map_err(|e| e.to_string())?;
    if head.starts_with(&XZ_MAGIC) {
        let mut xz = lzma_rust2::XzReader::new_mem_limit(archive, true, XZ_MEMORY_KIB);
        let done = extract::extract(&mut xz, root, limits).map_err(|e| e.to_string())?;
        to_the_end(&mut xz).map_err(|e| format!("the xz stream is damaged after the archive's end: {e}"))?;
        Ok(done)
    } else if head.starts_with(&GZIP_MAGIC) {
        let mut gz = flate2::bufread::MultiGzDecoder::new(archive);
        let done = extract::extract(&mut gz, root, limits).map_err(|e| e.to_string())?;
        to_the_end(&mut gz).map_err(|e| format!("the gzip stream is damaged after the archive's end: {e}"))?;
        Ok(done)
    } else {
        let done = extract::extract(&mut archive, root, limits).map_err(|e| e.to_string())?;
        to_the_end(&mut archive).map_err(|e| format!("after the archive's end: {e}"))?;
        Ok(done)
    }
}

/// The most bytes taken after a tar stream's end (its last record's
/// padding is at most 10 KiB).
const MAX_TRAILER: u64 = 1 << 20;

/// Reads what follows the tar stream's end: so the xz stream is checked to
/// its end (its index and checksums), and at most [`MAX_TRAILER`] bytes.
fn to_the_end(rest: &mut impl Read) -> std::io::Result<()> {
    let after = std::io::copy(&mut rest.take(MAX_TRAILER + 1), &mut std::io::sink())?;
    if after > MAX_TRAILER {
        return Err(std::io::Error::other(format!("more than {MAX_TRAILER} bytes follow it")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn archive() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..50 {
            let text = format!("file {i}\n").repeat(64);
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1);
            b.append_data(&mut h, format!("d{}/f{i}", i % 4), text.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("iocaged-fetch-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_set_is_read_as_xz_gzip_or_plain_tar_by_its_first_bytes_to_the_end() {
        use std::io::Write as _;
        let tar = archive();
        let mut xz = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
        xz.write_all(&tar).unwrap();
        let xz = xz.finish().unwrap();
        assert!(xz.starts_with(&XZ_MAGIC));
        let limits = Limits { entries: 100, bytes: 1 << 20 };
        for (name, bytes) in [("xz", &xz), ("plain", &tar)] {
            let root = scratch(name);
            let done = extract_set(&bytes[..], &root, limits).unwrap();
            assert_eq!(done.entries, 50, "{name}");
            assert_eq!(std::fs::read_to_string(root.join("d1/f5")).unwrap(), "file 5\n".repeat(64), "{name}");
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let root = scratch("gz");
        assert_eq!(extract_set(&gz[..], &root, limits).unwrap().entries, 50);
        assert_eq!(std::fs::read_to_string(root.join("d1/f5")).unwrap(), "file 5\n".repeat(64));
        let e = extract_set(&gz[..gz.len() - 4], &scratch("gz-cut"), limits).unwrap_err();
        assert!(e.contains("gzip stream is damaged"), "{e}");
        // A damaged stream is an error, not a short release, even where the
        // damage is after the tar stream's end.
        let e = extract_set(&xz[..xz.len() - 20], &scratch("cut"), limits).unwrap_err();
        assert!(e.contains("xz stream is damaged"), "{e}");
        let mut long = tar.clone();
        long.extend(vec![0u8; 2 << 20]);
        let e = extract_set(&long[..], &scratch("long"), limits).unwrap_err();
        assert!(e.contains("follow"), "{e}");
    }
}
