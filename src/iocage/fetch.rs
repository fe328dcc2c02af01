//! fetchrelease: a release from a mirror (or a root filesystem tarball by
//! URL and SHA-256) made into `POOL/iocage/releases/<REL>/root`, so that
//! createjail needs no other tool.
//!
//! The steps, and what each leaves when it fails:
//! 1. **claim** the release name in this daemon (a second fetch of it is
//!    refused while one runs; at most [`MAX_FETCHES`] run at once) and
//!    check the pool (owner thread): no release of that name yet.
//! 2. **what to fetch**: the mirror's `MANIFEST` for the release (bounded),
//!    the sets wanted from it (`base.txz`, and `lib32.txz` on request), each
//!    with its SHA-256 and number of entries; or the one tarball a client
//!    names with its SHA-256.
//! 3. **download** each set into `<set>.part` in `POOL/iocage/download/<REL>`
//!    (made and mounted now; removed again if a failure leaves nothing in
//!    it), resumed where an earlier attempt stopped (HTTP range), then
//!    **verify** it against its SHA-256 before anything is extracted. A
//!    set that fails the check is removed (the next attempt starts over); a
//!    download cut off is kept (the next attempt resumes it). A set already
//!    downloaded and still matching is not fetched again.
//! 4. **extract**: the release's datasets are made marked incomplete
//!    ([`INCOMPLETE_PROP`] on `releases/<REL>`: createjail refuses it,
//!    listreleases hides it, the daemon's start-up recovery removes it) and
//!    with `setuid=off`, its directory closed to other users (0700) while the archive's owners and
//!    modes (setuid bits too) land in it, and each set extracted
//!    ([`super::extract`]: hostile-archive safe) on a blocking thread. A
//!    failure destroys the release's datasets; the downloads stay.
//! 5. **finish**: the directory opened again (0755), the marker removed.
//!
//! Each step reports its progress on the `iocage` event stream (`download`,
//! `verify` and `extract`, in bytes of the set's archive, `target` the set).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::download::{self, Url};
use super::error::ActionError;
use super::extract::{self, Extracted, Limits};
use super::jails::INCOMPLETE_PROP;
use super::layout::Layout;
use super::manifest::{self, DistSet, Hashing};
use super::progress::Reporter;
use super::service::Iocage;
use crate::zfs::Libzfs;

/// Where releases come from (the configuration's `release_mirror`,
/// `release_arch`, `max_release_bytes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The mirror's releases directory: `<mirror>/<arch>/<release>/` holds
    /// a release's `MANIFEST` and sets.
    pub mirror: String,
    /// The path under the mirror for this host's architecture
    /// (`amd64`, `arm64/aarch64`).
    pub arch: String,
    /// The most bytes one release may hold: each downloaded set, and all
    /// files extracted from its sets together.
    pub max_release_bytes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mirror: "https://download.freebsd.org/releases".into(),
            arch: default_arch().into(),
            max_release_bytes: 16 << 30,
        }
    }
}

/// FreeBSD's mirror path for the architecture this daemon was built for.
pub fn default_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64/aarch64",
        "x86" => "i386",
        "powerpc64" => "powerpc/powerpc64",
        "riscv64" => "riscv/riscv64",
        _ => "amd64",
    }
}

/// The largest compressed `MANIFEST` or directory listing read.
const MAX_LISTING: u64 = 1 << 20;
/// The longest wait for a mirror's directory listing.
const LISTING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// Memory the xz decoder may use (`xz -9` needs 65 MiB; FreeBSD's sets
/// use less).
const XZ_MEMORY_KIB: u32 = 96 << 10;
/// The most entries one set may hold, whatever its MANIFEST says (FreeBSD
/// 14's base.txz has about 30000).
const MAX_ENTRIES: u64 = 4 << 20;
/// Fetches running at once (each holds a download, an xz decoder and an
/// extraction): more are refused until one ends.
pub const MAX_FETCHES: usize = 2;

/// What a client asked fetchrelease for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub release: String,
    /// `lib32.txz` too.
    pub lib32: bool,
    /// A tarball by URL and SHA-256 instead of the mirror's sets.
    pub direct: Option<(String, [u8; 32])>,
}

/// The fetches running in this daemon, by release, and the settings.
#[derive(Debug, Default)]
pub struct Fetches {
    pub settings: Settings,
    running: Mutex<HashSet<String>>,
}

impl Fetches {
    pub fn new(settings: Settings) -> Self {
        Fetches { settings, running: Mutex::default() }
    }

    /// Claims `release` for one fetch until the claim is dropped.
    fn claim(self: &Arc<Self>, release: &str) -> Result<Claim, ActionError> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.contains(release) {
            return Err(ActionError::FetchRunning(release.to_string()));
        }
        if running.len() >= MAX_FETCHES {
            return Err(ActionError::Overloaded(format!(
                "{MAX_FETCHES} releases are being fetched (the most at once)"
            )));
        }
        running.insert(release.to_string());
        Ok(Claim { fetches: self.clone(), release: release.to_string() })
    }
}

impl Fetches {
    /// Refuses while `release` (any release, when `None`) is being fetched:
    /// destroyrelease and the clean actions do not pull a release from under
    /// its extraction.
    pub fn refuse_while_fetching(&self, release: Option<&str>) -> Result<(), ActionError> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut busy: Vec<&String> = running.iter().filter(|r| release.is_none_or(|want| want == r.as_str())).collect();
        busy.sort();
        match busy.is_empty() {
            true => Ok(()),
            false => Err(ActionError::FetchRunning(busy.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))),
        }
    }
}

struct Claim {
    fetches: Arc<Fetches>,
    release: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.fetches.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.release);
    }
}

/// One archive to download, check and extract.
#[derive(Debug, Clone)]
struct Set {
    /// Its name in the download directory (and in progress events).
    file: String,
    url: Url,
    sha256: [u8; 32],
    /// Who gave the SHA-256 (for messages).
    vouched_by: &'static str,
    /// The most entries it may hold.
    entries: u64,
}

fn failed(release: &str, message: impl ToString) -> ActionError {
    ActionError::FetchFailed { release: release.to_string(), message: message.to_string() }
}

impl Iocage {
    /// fetchrelease (see the module's doc).
    pub(super) async fn fetch_release(&self, want: Wanted) -> Result<Value, ActionError> {
        let fetches = self.fetches();
        let _claim = fetches.claim(&want.release)?;
        let release = want.release.as_str();
        let rel = want.release.clone();
        let layout = self.on_pool(move |lib, layout| refuse_existing(lib, &layout, &rel).map(|()| layout)).await?;
        let sets = self.sets(&fetches.settings, &want).await?;
        let (rel, l) = (want.release.clone(), layout.clone());
        let downloads = self.on_owner(move |lib| prepare(lib, &l, &rel)).await?;
        let limit = fetches.settings.max_release_bytes;
        let mut fetched = Vec::new();
        for set in &sets {
            match self.download(release, set, &downloads, limit).await {
                Ok((bytes, resumed_from)) => fetched.push(json!({
                    "file": set.file, "bytes": bytes, "resumed_from": resumed_from,
                    "sha256": manifest::hex(&set.sha256),
                })),
                Err(e) => {
                    self.forget_empty_downloads(&layout, release, &downloads).await;
                    return Err(e);
                }
            }
        }

        // Step 4: the release's datasets, marked incomplete until the end.
        let (rel, l) = (want.release.clone(), layout.clone());
        let dir = self.on_owner(move |lib| begin(lib, &l, &rel)).await?;
        let reporters: Vec<Arc<Reporter>> =
            sets.iter().map(|_| self.reporter("fetchrelease", "extract", "bytes")).collect();
        let (work_sets, rel) = (sets.clone(), want.release.clone());
        let extracted =
            blocking(release, move || extract_all(&rel, &dir, &downloads, &work_sets, &reporters, limit)).await;
        let (rel, l) = (want.release.clone(), layout.clone());
        let done = match extracted {
            Ok(done) => self.on_owner(move |lib| finish(lib, &l, &rel)).await.map(|()| done),
            Err(e) => Err(e),
        };
        let done = match done {
            Ok(done) => done,
            Err(cause) => {
                // Undone on the pool it was made on, whichever is active
                // now; the cause is what the client hears either way.
                let (rel, l) = (want.release.clone(), layout.clone());
                if let Err(e) = self.on_owner(move |lib| undo(lib, &l, &rel)).await {
                    tracing::error!(release, "could not remove the half-made release: {e}; start-up removes it");
                }
                return Err(cause);
            }
        };
        Ok(json!({
            "success": format!("release {} fetched.", want.release),
            "release": want.release,
            "sets": fetched,
            "extracted": { "entries": done.entries, "bytes": done.bytes },
        }))
    }

    /// A download directory left with nothing in it (the mirror had no such
    /// release, or nothing arrived) is removed; one holding bytes stays for
    /// the next attempt to resume.
    async fn forget_empty_downloads(&self, layout: &Layout, release: &str, dir: &Path) {
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

    /// Step 2: the sets to fetch, with their checksums.
    async fn sets(&self, settings: &Settings, want: &Wanted) -> Result<Vec<Set>, ActionError> {
        let bad = |e: download::DownloadError| failed(&want.release, e);
        if let Some((url, sha256)) = &want.direct {
            let file = format!("rootfs-{}", &manifest::hex(sha256)[..16]);
            let entries = MAX_ENTRIES;
            let url = Url::parse(url).map_err(bad)?;
            return Ok(vec![Set { file, url, sha256: *sha256, vouched_by: "the request's sha256", entries }]);
        }
        let base = release_url(settings, &want.release).map_err(bad)?;
        let text = download::fetch_small(&base.join("MANIFEST").map_err(bad)?, MAX_LISTING).await.map_err(bad)?;
        let text = String::from_utf8(text).map_err(|_| failed(&want.release, "its MANIFEST is not text"))?;
        let listed = manifest::parse(&text).map_err(|e| failed(&want.release, e))?;
        let mut files = vec!["base.txz"];
        if want.lib32 {
            files.push("lib32.txz");
        }
        files
            .into_iter()
            .map(|file| {
                let set: &DistSet = manifest::find(&listed, file).map_err(|e| failed(&want.release, e))?;
                // Extension records (long names, PAX headers) count as
                // entries in the extractor, not in the MANIFEST.
                let entries = set.files.saturating_mul(2).saturating_add(64).min(MAX_ENTRIES);
                Ok(Set {
                    file: set.file.clone(),
                    url: base.join(&set.file).map_err(bad)?,
                    sha256: set.sha256,
                    vouched_by: "the MANIFEST",
                    entries,
                })
            })
            .collect()
    }

    /// Step 3: one set downloaded (or resumed, or found already there) and
    /// verified: (its size, the bytes an earlier attempt had left).
    async fn download(&self, release: &str, set: &Set, dir: &Path, limit: u64) -> Result<(u64, u64), ActionError> {
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

/// `<mirror>/<arch>/<release>/`
fn release_url(settings: &Settings, release: &str) -> Result<Url, download::DownloadError> {
    let mut url = Url::parse(settings.mirror.trim_end_matches('/'))?;
    for part in settings.arch.split('/').filter(|p| !p.is_empty()) {
        url = url.join(part)?;
    }
    url.join(release)
}

async fn blocking<R: Send + 'static>(
    release: &str,
    f: impl FnOnce() -> Result<R, ActionError> + Send + 'static,
) -> Result<R, ActionError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(failed(release, format!("a blocking step stopped: {e}"))))
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

/// Opens a file of the download directory: never through a link, and only
/// a regular file.
fn open_regular(path: &Path) -> std::io::Result<File> {
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
struct Counted<'a, R> {
    inner: R,
    read: u64,
    total: u64,
    target: &'a str,
    report: &'a Reporter,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.report.report(self.read, self.total, self.target);
        Ok(n)
    }
}

/// Step 1 (owner thread): no release of that name yet.
fn refuse_existing(lib: &Libzfs, layout: &Layout, release: &str) -> Result<(), ActionError> {
    let dataset = format!("{}/{release}", layout.releases());
    if lib.exists(&dataset) {
        return Err(ActionError::ReleaseExists(release.to_string(), dataset));
    }
    Ok(())
}

/// Step 3 (owner thread): the download dataset there and mounted; its path.
fn prepare(lib: &Libzfs, layout: &Layout, release: &str) -> Result<PathBuf, ActionError> {
    super::create::ensure(lib, &layout.root(), &[("mountpoint", "/iocage")])?;
    super::create::ensure(lib, &layout.download(), &[])?;
    let dl = format!("{}/{release}", layout.download());
    super::create::ensure(lib, &dl, &[])?;
    lib.mount(&dl)?;
    mountpoint(lib, &dl)
}

/// The download dataset of `release`, removed (it holds nothing).
fn forget_downloads(lib: &Libzfs, layout: &Layout, release: &str) -> Result<(), ActionError> {
    let dl = format!("{}/{release}", layout.download());
    if layout.contains(&dl) && lib.exists(&dl) {
        lib.destroy(&dl)?;
    }
    Ok(())
}

fn mountpoint(lib: &Libzfs, dataset: &str) -> Result<PathBuf, ActionError> {
    let props = lib.native_props(dataset, &["mountpoint"])?;
    match props.get("mountpoint").and_then(|m| m.printed.as_deref()) {
        Some(m) if m.starts_with('/') => Ok(PathBuf::from(m)),
        other => Err(ActionError::Io {
            what: format!("use {dataset}"),
            message: format!("it has no mountpoint to work in ({})", other.unwrap_or("none")),
        }),
    }
}

/// Step 4 (owner thread): `releases/<REL>` marked incomplete, with
/// `setuid=off` (the release's setuid programs never run on the host; a
/// jail's clone of it takes its properties from its own parent), its
/// directory closed to other users (0700) before its `root` is made in it;
/// the directory's path.
fn begin(lib: &Libzfs, layout: &Layout, release: &str) -> Result<PathBuf, ActionError> {
    let dataset = format!("{}/{release}", layout.releases());
    refuse_existing(lib, layout, release)?;
    super::create::ensure(lib, &layout.releases(), &[])?;
    lib.create_filesystem(&dataset, &[(INCOMPLETE_PROP, "yes"), ("setuid", "off")])?;
    let made = (|| {
        lib.mount(&dataset)?;
        let dir = mountpoint(lib, &dataset)?;
        set_mode(&dir, 0o700).map_err(|e| failed(release, format!("cannot close {}: {e}", dir.display())))?;
        let root = format!("{dataset}/root");
        lib.create_filesystem(&root, &[])?;
        lib.mount(&root)?;
        Ok(dir)
    })();
    if made.is_err() {
        if let Err(e) = undo(lib, layout, release) {
            tracing::error!(release, "could not remove the half-made release: {e}; start-up removes it");
        }
    }
    made
}

/// chmod of a directory, never through a link.
fn set_mode(dir: &Path, mode: u32) -> std::io::Result<()> {
    let d = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)?;
    nix::sys::stat::fchmod(d.as_fd(), nix::sys::stat::Mode::from_bits_truncate(mode as nix::sys::stat::mode_t))?;
    Ok(())
}

/// Step 5 (owner thread): the marker removed.
fn finish(lib: &Libzfs, layout: &Layout, release: &str) -> Result<(), ActionError> {
    Ok(lib.inherit(&format!("{}/{release}", layout.releases()), INCOMPLETE_PROP)?)
}

/// What a failed fetch made of the release: destroyed.
fn undo(lib: &Libzfs, layout: &Layout, release: &str) -> Result<(), ActionError> {
    super::destroy::destroy_incomplete_release(lib, layout, release)
}

/// Step 4 (blocking thread): every set extracted into `<dir>/root`, then
/// the release's directory (`dir`, closed by [`begin`]) opened again.
fn extract_all(
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

/// listreleases with `"remote": true`: the releases the mirror offers for
/// this host's architecture (the names in its directory listing).
pub async fn remote_releases(settings: &Settings) -> Result<Vec<String>, ActionError> {
    let bad = |e: download::DownloadError| ActionError::Io {
        what: "list the mirror's releases".into(),
        message: e.to_string(),
    };
    let mut url = Url::parse(settings.mirror.trim_end_matches('/')).map_err(bad)?;
    for part in settings.arch.split('/').filter(|p| !p.is_empty()) {
        url = url.join(part).map_err(bad)?;
    }
    // Within a read's deadline (`request_timeout`, 30 s by default), so
    // that a slow mirror is reported as such.
    let page = tokio::time::timeout(LISTING_TIMEOUT, download::fetch_small(&url.join("").map_err(bad)?, MAX_LISTING))
        .await
        .map_err(|_| ActionError::Io {
            what: "list the mirror's releases".into(),
            message: format!("{url} did not answer within {} s", LISTING_TIMEOUT.as_secs()),
        })?
        .map_err(bad)?;
    Ok(listed_releases(&String::from_utf8_lossy(&page)))
}

/// The release names linked from a mirror's directory listing
/// (`href="14.2-RELEASE/"`), sorted, each once.
fn listed_releases(page: &str) -> Vec<String> {
    let mut out: Vec<String> = page
        .split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next()?.strip_suffix('/'))
        .filter(|name| {
            name.contains('-')
                && name.chars().next().is_some_and(|c| c.is_ascii_digit())
                && super::props::check_format(super::props::Format::Name, name).is_ok()
        })
        .map(String::from)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_s_layout() {
        let s = Settings {
            mirror: "https://m.example/releases/".into(),
            arch: "arm64/aarch64".into(),
            ..Settings::default()
        };
        assert_eq!(
            release_url(&s, "14.2-RELEASE").unwrap().to_string(),
            "https://m.example/releases/arm64/aarch64/14.2-RELEASE"
        );
    }

    #[test]
    fn a_directory_listing_s_releases() {
        let page = r#"<a href="../">../</a><a href="13.5-RELEASE/">13.5-RELEASE/</a>
            <a href="14.2-RELEASE/">x</a><a href="ISO-IMAGES/">y</a><a href="14.2-RELEASE/">again</a>
            <a href="15.0-BETA1/">z</a><a href="README.TXT">r</a><a href="1.0-x%2f/">w</a>"#;
        assert_eq!(listed_releases(page), ["13.5-RELEASE", "14.2-RELEASE", "15.0-BETA1"]);
    }

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

    #[test]
    fn one_fetch_of_a_release_at_a_time() {
        let f = Arc::new(Fetches::default());
        let first = f.claim("14.2-RELEASE").unwrap();
        assert_eq!(f.claim("14.2-RELEASE").err(), Some(ActionError::FetchRunning("14.2-RELEASE".into())));
        let _other = f.claim("13.5-RELEASE").unwrap();
        drop(first);
        assert!(f.claim("14.2-RELEASE").is_ok());
    }
}
