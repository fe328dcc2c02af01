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
//!
//! Its parts, besides the claims and the steps in order here: `mirror`
//! (step 2, and the releases a mirror offers), `transfer` (step 3),
//! `unpack` (step 4's extraction) and `datasets` (the steps on the pool,
//! on the owner thread).
//!
//! [`INCOMPLETE_PROP`]: super::jails::INCOMPLETE_PROP

mod datasets;
mod mirror;
mod transfer;
mod unpack;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::download::Url;
use super::error::ActionError;
use super::manifest;
use super::progress::Reporter;
use super::service::Iocage;

use datasets::{begin, finish, prepare, refuse_existing, undo};
pub use mirror::remote_releases;
use unpack::extract_all;

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
}

async fn blocking<R: Send + 'static>(
    release: &str,
    f: impl FnOnce() -> Result<R, ActionError> + Send + 'static,
) -> Result<R, ActionError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(failed(release, format!("a blocking step stopped: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

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
