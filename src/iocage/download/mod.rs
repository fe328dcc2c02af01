//! fetchrelease's downloads: one HTTP/1.1 GET at a time (hyper's client,
//! over TCP or rustls with the system's trust store) into memory (a
//! `MANIFEST`, bounded) or into a file, resumed where an earlier attempt
//! stopped (`Range: bytes=N-`).
//!
//! Everything is bounded: connecting ([`CONNECT_TIMEOUT`]), the wait for the
//! answer's headers and for each piece of its body ([`IDLE_TIMEOUT`]), the
//! pace (a body slower than [`MIN_RATE`] over any [`IDLE_TIMEOUT`] is given
//! up: a mirror sending a byte a minute cannot hold a fetch for ever), the
//! size of what is kept, and redirects ([`MAX_REDIRECTS`], never from
//! https to http). A download given up keeps its bytes for the next
//! attempt. URLs carry no user information (`user:password@`), query or
//! fragment is never shown in messages (it may be a signature), and only
//! `http` and `https` are fetched.
//!
//! Its parts: `url` (what is fetched from, and how a URL is shown) and
//! `connect` (one GET: the connection, over TCP or TLS, and its
//! redirects); here: the answer's body taken into memory or a file.

mod connect;
mod url;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Response, StatusCode, header};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use connect::get;
pub use url::Url;

/// The longest wait for a connection (TCP and TLS handshake together).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait for the answer's headers, and for each piece of its body.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The slowest pace a body may keep up, in bytes per second, measured
/// over each [`IDLE_TIMEOUT`].
pub const MIN_RATE: u64 = 1024;
/// Redirects followed for one download.
pub const MAX_REDIRECTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{url:?} is not a URL iocaged fetches from: {why}")]
    BadUrl { url: String, why: &'static str },
    #[error("cannot reach {url}: {why}")]
    Connect { url: String, why: String },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url} is larger than the {limit} bytes allowed")]
    TooLarge { url: String, limit: u64 },
    #[error("downloading {url} failed after {bytes} bytes: {why}")]
    Transfer { url: String, bytes: u64, why: String },
    #[error("cannot write {path}: {source}")]
    File { path: String, source: std::io::Error },
}

/// The next piece of a body; `None` at its end.
async fn next_piece(body: &mut Incoming, url: &Url, bytes: u64) -> Result<Option<Bytes>, DownloadError> {
    let transfer = |why: String| DownloadError::Transfer { url: url.to_string(), bytes, why };
    loop {
        let frame = timeout(IDLE_TIMEOUT, body.frame())
            .await
            .map_err(|_| transfer(format!("nothing arrived for {} s", IDLE_TIMEOUT.as_secs())))?;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(transfer(e.to_string())),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

fn content_length(answer: &Response<Incoming>) -> Option<u64> {
    answer.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Gives a body up when it comes slower than [`MIN_RATE`]: each
/// [`IDLE_TIMEOUT`] must have brought `MIN_RATE * IDLE_TIMEOUT` bytes.
struct Pace {
    since: Instant,
    at: u64,
}

impl Pace {
    fn new(at: u64) -> Pace {
        Pace { since: Instant::now(), at }
    }

    fn check(&mut self, now_at: u64) -> Result<(), String> {
        self.check_at(Instant::now(), now_at)
    }

    fn check_at(&mut self, now: Instant, now_at: u64) -> Result<(), String> {
        if now.saturating_duration_since(self.since) < IDLE_TIMEOUT {
            return Ok(());
        }
        let least = MIN_RATE * IDLE_TIMEOUT.as_secs();
        if now_at.saturating_sub(self.at) < least {
            return Err(format!("slower than {MIN_RATE} bytes/s for {} s", IDLE_TIMEOUT.as_secs()));
        }
        (self.since, self.at) = (now, now_at);
        Ok(())
    }
}

/// The longest a small document may take, all in all.
pub const SMALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A small document (a `MANIFEST`), at most `limit` bytes, within
/// [`SMALL_TIMEOUT`].
pub async fn fetch_small(url: &Url, limit: u64) -> Result<Vec<u8>, DownloadError> {
    timeout(SMALL_TIMEOUT, fetch_small_untimed(url, limit)).await.map_err(|_| DownloadError::Transfer {
        url: url.to_string(),
        bytes: 0,
        why: format!("not complete within {} s", SMALL_TIMEOUT.as_secs()),
    })?
}

async fn fetch_small_untimed(url: &Url, limit: u64) -> Result<Vec<u8>, DownloadError> {
    let (answer, _connection, url) = get(url, 0).await?;
    if answer.status() != StatusCode::OK {
        return Err(DownloadError::Status { url: url.to_string(), status: answer.status().as_u16() });
    }
    let too_large = || DownloadError::TooLarge { url: url.to_string(), limit };
    if content_length(&answer).is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = answer.into_body();
    let mut out = Vec::new();
    while let Some(piece) = next_piece(&mut body, &url, out.len() as u64).await? {
        if (out.len() + piece.len()) as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&piece);
    }
    Ok(out)
}

/// What [`fetch_to_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// The file's size now (the whole document).
    pub bytes: u64,
    /// Bytes that were already there and kept (a resumed download).
    pub resumed_from: u64,
}

/// Called with the bytes the file holds and the document's size (0: unknown).
pub type OnBytes<'a> = &'a mut (dyn FnMut(u64, u64) + Send);

/// Downloads `url` into `path` (a partial file: bytes already there are
/// kept and the rest asked for), at most `limit` bytes in all. The file is
/// opened without following a link, must be a regular file, and is synced
/// before this returns. A failure leaves the bytes received so far in
/// place for the next attempt.
pub async fn fetch_to_file(
    url: &Url,
    path: &Path,
    limit: u64,
    on_bytes: OnBytes<'_>,
) -> Result<Fetched, DownloadError> {
    let file_error = |source| DownloadError::File { path: path.display().to_string(), source };
    let mut file = tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .await
        .map_err(file_error)?;
    let meta = file.metadata().await.map_err(file_error)?;
    if !meta.is_file() {
        return Err(file_error(std::io::Error::other("not a regular file")));
    }
    let mut have = meta.len();
    if have > limit {
        file.set_len(0).await.map_err(file_error)?;
        have = 0;
    }
    let (answer, _connection, url) = get(url, have).await?;
    let (start, total) = match answer.status() {
        StatusCode::PARTIAL_CONTENT if have > 0 => match content_range(&answer) {
            Some((first, total)) if first == have => (have, total),
            _ => {
                return Err(DownloadError::Transfer {
                    url: url.to_string(),
                    bytes: have,
                    why: "the mirror answered a range it was not asked for".into(),
                });
            }
        },
        StatusCode::OK => (0, content_length(&answer).unwrap_or(0)),
        // Asked for bytes past the end: what is there is kept as it is and
        // the checksum decides (a longer or different file fails it, and the
        // caller then removes it).
        StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => return Ok(Fetched { bytes: have, resumed_from: have }),
        status => return Err(DownloadError::Status { url: url.to_string(), status: status.as_u16() }),
    };
    if total > limit {
        return Err(DownloadError::TooLarge { url: url.to_string(), limit });
    }
    if start == 0 {
        file.set_len(0).await.map_err(file_error)?;
    }
    use tokio::io::AsyncSeekExt;
    file.seek(std::io::SeekFrom::Start(start)).await.map_err(file_error)?;
    let mut done = start;
    on_bytes(done, total);
    let mut body = answer.into_body();
    let mut pace = Pace::new(done);
    while let Some(piece) = next_piece(&mut body, &url, done).await? {
        done += piece.len() as u64;
        pace.check(done).map_err(|why| DownloadError::Transfer { url: url.to_string(), bytes: done, why })?;
        if done > limit {
            file.flush().await.map_err(file_error)?;
            return Err(DownloadError::TooLarge { url: url.to_string(), limit });
        }
        file.write_all(&piece).await.map_err(file_error)?;
        on_bytes(done, total);
    }
    file.flush().await.map_err(file_error)?;
    file.sync_all().await.map_err(file_error)?;
    if total > 0 && done != total {
        return Err(DownloadError::Transfer {
            url: url.to_string(),
            bytes: done,
            why: format!("the document ended after {done} of {total} bytes"),
        });
    }
    Ok(Fetched { bytes: done, resumed_from: start })
}

/// `Content-Range: bytes FIRST-LAST/TOTAL`: (FIRST, TOTAL); TOTAL 0 when `*`.
fn content_range(answer: &Response<Incoming>) -> Option<(u64, u64)> {
    parse_content_range(answer.headers().get(header::CONTENT_RANGE)?.to_str().ok()?)
}

fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
    let total = if total == "*" { 0 } else { total.parse().ok()? };
    (first <= last && (total == 0 || last < total)).then_some((first, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::io::{Read as _, Write as _};
    use std::sync::{Arc, Mutex};

    /// A server answering its connections, in turn, with `answers` (raw
    /// HTTP), and keeping each request's head.
    pub(super) fn server(answers: Vec<Vec<u8>>) -> (Url, Arc<Mutex<Vec<String>>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/r/base.txz", listener.local_addr().unwrap())).unwrap();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let h = heads.clone();
        std::thread::spawn(move || {
            for answer in answers {
                let (mut conn, _) = listener.accept().unwrap();
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut b).unwrap_or(0) == 1 {
                    head.push(b[0]);
                }
                h.lock().unwrap().push(String::from_utf8_lossy(&head).to_lowercase());
                let _ = conn.write_all(&answer);
            }
        });
        (url, heads)
    }

    pub(super) fn answer(status: &str, headers: &str, body: &str) -> Vec<u8> {
        format!("HTTP/1.1 {status}\r\n{headers}Connection: close\r\n\r\n{body}").into_bytes()
    }

    pub(super) fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    pub(super) fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("iocaged-download-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("base.txz.part")
    }

    #[test]
    fn a_download_cut_off_is_resumed_with_a_range_and_its_bytes_kept() {
        let part = scratch("resume");
        let (url, heads) = server(vec![
            answer("200 OK", "Content-Length: 10\r\n", "01234"),
            answer("206 Partial Content", "Content-Length: 5\r\nContent-Range: bytes 5-9/10\r\n", "56789"),
        ]);
        let mut seen = Vec::new();
        let e = run(fetch_to_file(&url, &part, 100, &mut |d, t| seen.push((d, t)))).unwrap_err();
        assert!(matches!(e, DownloadError::Transfer { bytes: 5, .. }), "{e}");
        assert_eq!(std::fs::read(&part).unwrap(), b"01234", "the bytes so far stay");
        assert_eq!((seen.first(), seen.last()), (Some(&(0, 10)), Some(&(5, 10))));
        let got = run(fetch_to_file(&url, &part, 100, &mut |_, _| {})).unwrap();
        assert_eq!(got, Fetched { bytes: 10, resumed_from: 5 });
        assert_eq!(std::fs::read(&part).unwrap(), b"0123456789");
        let heads = heads.lock().unwrap();
        assert!(!heads[0].contains("range:") && heads[1].contains("range: bytes=5-"), "{heads:?}");
    }

    #[test]
    fn a_mirror_ignoring_the_range_starts_the_file_over_and_a_wrong_range_is_refused() {
        let part = scratch("ranges");
        std::fs::write(&part, b"XXXXX").unwrap();
        let (url, _) = server(vec![
            answer("206 Partial Content", "Content-Length: 10\r\nContent-Range: bytes 0-9/10\r\n", "0123456789"),
            answer("200 OK", "Content-Length: 10\r\n", "0123456789"),
        ]);
        let e = run(fetch_to_file(&url, &part, 100, &mut |_, _| {})).unwrap_err();
        assert!(e.to_string().contains("a range it was not asked for"), "{e}");
        assert_eq!(std::fs::read(&part).unwrap(), b"XXXXX", "left as it was");
        let got = run(fetch_to_file(&url, &part, 100, &mut |_, _| {})).unwrap();
        assert_eq!(
            (got, std::fs::read(&part).unwrap()),
            (Fetched { bytes: 10, resumed_from: 0 }, b"0123456789".to_vec())
        );
        // Asked for bytes past the end: the file is kept as it is, for the
        // checksum to judge.
        let (url, _) =
            server(vec![answer("416 Range Not Satisfiable", "Content-Range: bytes */10\r\nContent-Length: 0\r\n", "")]);
        let got = run(fetch_to_file(&url, &part, 100, &mut |_, _| {})).unwrap();
        assert_eq!(got, Fetched { bytes: 10, resumed_from: 10 });
        assert_eq!(std::fs::read(&part).unwrap(), b"0123456789");
    }

    #[test]
    fn sizes_are_bounded_whether_announced_or_not() {
        let part = scratch("sizes");
        let (url, _) = server(vec![
            answer("200 OK", "Content-Length: 10\r\n", "0123456789"),
            answer("200 OK", "Transfer-Encoding: chunked\r\n", "a\r\n0123456789\r\n0\r\n\r\n"),
            answer("200 OK", "Content-Length: 10\r\n", "0123456789"),
        ]);
        for _ in 0..2 {
            let e = run(fetch_to_file(&url, &part, 4, &mut |_, _| {})).unwrap_err();
            assert!(matches!(e, DownloadError::TooLarge { limit: 4, .. }), "{e}");
        }
        let e = run(fetch_small(&url, 4)).unwrap_err();
        assert!(matches!(e, DownloadError::TooLarge { limit: 4, .. }), "{e}");
    }

    #[test]
    fn the_partial_file_is_never_a_link() {
        let part = scratch("link");
        let target = part.with_file_name("target");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, &part).unwrap();
        let (url, _) = server(vec![answer("200 OK", "Content-Length: 2\r\n", "no")]);
        let e = run(fetch_to_file(&url, &part, 10, &mut |_, _| {})).unwrap_err();
        assert!(matches!(e, DownloadError::File { .. }), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn a_body_slower_than_the_least_pace_is_given_up() {
        let start = Instant::now();
        let mut pace = Pace { since: start, at: 100 };
        let window = MIN_RATE * IDLE_TIMEOUT.as_secs();
        assert!(pace.check_at(start + IDLE_TIMEOUT / 2, 101).is_ok(), "judged only after a whole window");
        assert!(pace.check_at(start + IDLE_TIMEOUT, 100 + window).is_ok(), "the least pace is enough");
        let next = start + IDLE_TIMEOUT * 2;
        let e = pace.check_at(next, 100 + window + window - 1).unwrap_err();
        assert!(e.contains("slower than"), "{e}");
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, 200)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 0)));
        assert_eq!(parse_content_range("bytes 100-99/200"), None);
        assert_eq!(parse_content_range("bytes 100-200/200"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
