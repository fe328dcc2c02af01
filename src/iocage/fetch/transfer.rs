//! Step 3 of fetchrelease: each set downloaded into the release's download
//! directory (or resumed, or found already there) and verified against
//! its SHA-256; a download directory a failure left empty removed again.
//! Also the reading of a downloaded file, for the check and the extraction.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::iocage::download;
use crate::iocage::error::ActionError;
use crate::iocage::layout::Layout;
use crate::iocage::manifest::{self, Hashing};
use crate::iocage::progress::Reporter;
use crate::iocage::service::Iocage;

use super::datasets::forget_downloads;
use super::{Set, blocking, failed};

impl Iocage {
    /// A download directory left with nothing in it (the mirror had no such
    /// release, or nothing arrived) is removed; one holding bytes stays for
    /// the next attempt to resume.
    pub(super) async fn forget_empty_downloads(&self, layout: &Layout, release: &str, dir: &Path) {
        // A `.part` the failed attempt opened and nothing was written to
        // holds nothing to resume.
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let empty_part = name.to_string_lossy().ends_with(".part")
                && entry.metadata().is_ok_and(|m| m.is_file() && m.len() == 0);
            if empty_part {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none()) {
            let (l, rel) = (layout.clone(), release.to_string());
            if let Err(e) = self.on_owner(move |lib| forget_downloads(lib, &l, &rel)).await {
                tracing::warn!(release, "could not remove the empty download dataset: {e}");
            }
        }
    }

    /// Step 3: one set downloaded (or resumed, or found already there) and
    /// verified: (its size, the bytes an earlier attempt had left).
    pub(super) async fn download(
        &self,
        release: &str,
        set: &Set,
        dir: &Path,
        limit: u64,
    ) -> Result<(u64, u64), ActionError> {
        let done = dir.join(&set.file);
        let part = dir.join(format!("{}.part", set.file));
        // A set downloaded before (a fetch whose extraction failed, or was
        // cut off) is checked again, quietly: a mismatch only means
        // downloading it anew.
        let (s, d, rel) = (set.clone(), done.clone(), release.to_string());
        let quiet = Reporter::new(None, "fetchrelease", "verify", "bytes");
        if blocking(release, move || Ok(exists(&d) && verify_file(&rel, &d, &s, &quiet).is_ok())).await? {
            let size = std::fs::metadata(&done).map(|m| m.len()).unwrap_or(0);
            return Ok((size, size));
        }
        let _ = std::fs::remove_file(&done);
        let report = self.reporter("fetchrelease", "download", "bytes");
        let r = report.clone();
        let target = set.file.clone();
        let on_bytes = &mut move |done, total| r.report(done, total, &target);
        let fetched = download::fetch_to_file(&set.url, &part, limit, on_bytes).await.map_err(|e| failed(release, e));
        let fetched = match fetched {
            Ok(f) => f,
            Err(e) => {
                report.fail(&e);
                return Err(e);
            }
        };
        report.finish(fetched.bytes);
        let verify = self.reporter("fetchrelease", "verify", "bytes");
        let (s, p, r, rel) = (set.clone(), part.clone(), verify.clone(), release.to_string());
        let checked = blocking(release, move || verify_file(&rel, &p, &s, &r)).await;
        if let Err(e) = checked {
            verify.fail(&e);
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        verify.finish(fetched.bytes);
        std::fs::rename(&part, &done).map_err(|e| failed(release, format!("cannot rename {}: {e}", part.display())))?;
        Ok((fetched.bytes, fetched.resumed_from))
    }
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

/// Opens a file of the download directory: never through a link, and only
/// a regular file.
pub(super) fn open_regular(path: &Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Whether the file at `path` is `set`'s archive, by its SHA-256.
fn verify_file(release: &str, path: &Path, set: &Set, report: &Reporter) -> Result<(), ActionError> {
    let unreadable = |e: std::io::Error| failed(release, format!("cannot read {}: {e}", path.display()));
    let file = open_regular(path).map_err(unreadable)?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut hashing = Hashing::new(Counted { inner: file, read: 0, total, target: &set.file, report });
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(unreadable)?;
    let got = hashing.digest();
    if got == set.sha256 {
        return Ok(());
    }
    Err(failed(
        release,
        format!(
            "{}: SHA-256 {}, but {} says {}: the download is damaged or not the release's; it was removed",
            set.file,
            manifest::hex(&got),
            set.vouched_by,
            manifest::hex(&set.sha256)
        ),
    ))
}

/// A reader that reports how far into a file it is.
pub(super) struct Counted<'a, R> {
    pub(super) inner: R,
    pub(super) read: u64,
    pub(super) total: u64,
    pub(super) target: &'a str,
    pub(super) report: &'a Reporter,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.report.report(self.read, self.total, self.target);
        Ok(n)
    }
}
