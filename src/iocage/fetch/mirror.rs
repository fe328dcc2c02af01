//! What fetchrelease fetches (step 2): the mirror's URL for a release, its
//! `MANIFEST` and the sets wanted from it, or the one tarball a client
//! names; and the releases the mirror offers (listreleases with
//! `"remote": true`).

use crate::iocage::download::{self, Url};
use crate::iocage::error::ActionError;
use crate::iocage::manifest::{self, DistSet};
use crate::iocage::service::Iocage;

use super::{Set, Settings, Wanted, failed};

/// The largest compressed `MANIFEST` or directory listing read.
const MAX_LISTING: u64 = 1 << 20;
/// The longest wait for a mirror's directory listing.
const LISTING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// The most entries one set may hold, whatever its MANIFEST says (FreeBSD
/// 14's base.txz has about 30000).
const MAX_ENTRIES: u64 = 4 << 20;

impl Iocage {
    /// Step 2: the sets to fetch, with their checksums.
    pub(super) async fn sets(&self, settings: &Settings, want: &Wanted) -> Result<Vec<Set>, ActionError> {
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
}

/// `<mirror>/<arch>/<release>/`
fn release_url(settings: &Settings, release: &str) -> Result<Url, download::DownloadError> {
    let mut url = Url::parse(settings.mirror.trim_end_matches('/'))?;
    for part in settings.arch.split('/').filter(|p| !p.is_empty()) {
        url = url.join(part)?;
    }
    url.join(release)
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
                && crate::iocage::props::check_format(crate::iocage::props::Format::Name, name).is_ok()
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
}
