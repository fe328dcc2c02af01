//! The URLs downloads are made from: `http` or `https`, a host, no user
//! information, at most [`MAX_URL`] bytes; a mirror's paths joined to
//! them, redirects followed from them, and how a message shows them.

use hyper::Uri;

use super::DownloadError;

/// The longest URL taken (from a client, a configuration or a `Location`).
const MAX_URL: usize = 2048;

/// A URL as a message may show it: without its query or fragment, at most
/// 256 characters.
fn shown(text: &str) -> String {
    let end = text.find(['?', '#']).unwrap_or(text.len());
    let more = if end < text.len() { "?..." } else { "" };
    text[..end].chars().take(256).chain(more.chars()).collect()
}

/// A URL to fetch from: `http` or `https`, a host, no user information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub(super) uri: Uri,
    pub(super) tls: bool,
    pub(super) host: String,
    pub(super) port: u16,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, DownloadError> {
        let bad = |why| DownloadError::BadUrl { url: shown(text), why };
        if text.len() > MAX_URL {
            return Err(bad("longer than 2048 bytes"));
        }
        if !(text.starts_with("http://") || text.starts_with("https://")) {
            return Err(bad("only http:// and https:// URLs are fetched"));
        }
        let uri: Uri = text.parse().map_err(|_| bad("it does not parse as a URL"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("only http:// and https:// URLs are fetched")),
        };
        let authority = uri.authority().ok_or_else(|| bad("it names no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information (user@host) is not allowed"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        if host.is_empty() {
            return Err(bad("it names no host"));
        }
        // A port written must be one (http's parser turns "99999" into none).
        let written = authority.as_str().rsplit_once(':').is_some_and(|(h, p)| {
            (!h.contains(':') || h.ends_with(']')) && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
        });
        let port = match authority.port_u16() {
            Some(0) => return Err(bad("port 0")),
            Some(p) => p,
            None if written => return Err(bad("its port is not a number from 1 to 65535")),
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
        };
        Ok(Url { uri, tls, host, port })
    }

    /// This URL with `name` appended as one more path component (a base
    /// with a query or fragment is refused when parsed as a mirror).
    pub fn join(&self, name: &str) -> Result<Url, DownloadError> {
        let base = self.uri.to_string();
        let sep = if base.ends_with('/') { "" } else { "/" };
        Url::parse(&format!("{base}{sep}{name}"))
    }

    /// Where a redirect's `Location` points, relative to this URL.
    pub(super) fn redirected(&self, location: &str) -> Result<Url, DownloadError> {
        let next = if location.starts_with("//") {
            return Err(DownloadError::BadUrl {
                url: shown(location),
                why: "a scheme-relative redirect is not followed",
            });
        } else if location.starts_with('/') {
            let scheme = if self.tls { "https" } else { "http" };
            let authority = self.uri.authority().map(|a| a.as_str()).unwrap_or_default();
            Url::parse(&format!("{scheme}://{authority}{location}"))?
        } else {
            Url::parse(location)?
        };
        if self.tls && !next.tls {
            return Err(DownloadError::BadUrl {
                url: shown(location),
                why: "a redirect from https to http is not followed",
            });
        }
        Ok(next)
    }

    /// Whether a mirror here is reached over TLS, or on this host's own
    /// loopback (where no one stands between): a MANIFEST from anywhere
    /// else over plain http vouches for nothing.
    pub fn is_private_channel(&self) -> bool {
        self.tls || self.host == "localhost" || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    pub(super) fn path(&self) -> &str {
        self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    }
}

/// Shown without its query (a presigned URL's signature stays out of
/// messages and logs).
impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        let authority = self.uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let query = if self.uri.query().is_some() { "?..." } else { "" };
        write!(f, "{scheme}://{authority}{}{query}", self.uri.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_a_host_and_no_user() {
        let u = Url::parse("https://download.freebsd.org/releases").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "download.freebsd.org", 443));
        assert_eq!(u.join("amd64").unwrap().to_string(), "https://download.freebsd.org/releases/amd64");
        assert_eq!(Url::parse("http://[::1]:8080/x/").unwrap().join("MANIFEST").unwrap().path(), "/x/MANIFEST");
        assert_eq!(Url::parse("http://[::1]:8080/x").unwrap().port, 8080);
        assert_eq!(Url::parse("https://h/x?sig=secret").unwrap().to_string(), "https://h/x?...");
        let e = Url::parse("https://h:99999/x?sig=secret").unwrap_err().to_string();
        assert!(e.contains("h:99999/x?...") && !e.contains("secret"), "{e}");
        for bad in [
            "ftp://host/x",
            "file:///etc/passwd",
            "https://user:pw@host/x",
            "/relative",
            "http://",
            "http://h:99999/x",
            "http://h:0/x",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
        assert!(Url::parse(&format!("http://h/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn redirects_stay_on_https() {
        let u = Url::parse("https://a.example/x").unwrap();
        assert_eq!(u.redirected("/y").unwrap().to_string(), "https://a.example/y");
        assert!(u.redirected("http://b.example/y").is_err());
        assert!(u.redirected("//b.example/y").is_err());
        let plain = Url::parse("http://a.example:8080/x").unwrap();
        assert_eq!(plain.redirected("/y").unwrap().to_string(), "http://a.example:8080/y");
        assert!(plain.redirected("https://b.example/y").is_ok());
    }
}
