//! One GET of a download: the connection (TCP, or rustls with the
//! system's trust store), the request (from a byte on, for a resumed
//! download) and the redirects it follows.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::{Response, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::rustls;

use super::{CONNECT_TIMEOUT, DownloadError, IDLE_TIMEOUT, MAX_REDIRECTS, Url};

/// The client side of TLS: the system's trusted certificates, read once.
/// Read once it works: a store found empty is looked at again by the next
/// https download (so installing certificates needs no restart).
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    #[cfg(test)]
    if let Some(trusting) = tests::TRUST.with(|t| t.borrow().clone()) {
        return Ok(trusting);
    }
    static CONFIG: Mutex<Option<Arc<rustls::ClientConfig>>> = Mutex::new(None);
    let mut config = CONFIG.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = config.as_ref() {
        return Ok(c.clone());
    }
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(format!(
            "no trusted certificate found in the system's store (SSL_CERT_FILE, SSL_CERT_DIR){}",
            found.errors.first().map(|e| format!(": {e}")).unwrap_or_default()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let made = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config.insert(Arc::new(made)).clone())
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Aborts the connection's task when the download is over, however it ends.
pub(super) struct Connection(tokio::task::JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One GET of `url` (bytes from `from` on, when not 0), following redirects.
pub(super) async fn get(url: &Url, from: u64) -> Result<(Response<Incoming>, Connection, Url), DownloadError> {
    let mut url = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let (answer, connection) = get_once(&url, from).await?;
        if answer.status().is_redirection() {
            let location = answer
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| DownloadError::Status { url: url.to_string(), status: answer.status().as_u16() })?;
            url = url.redirected(location)?;
            continue;
        }
        return Ok((answer, connection, url));
    }
    Err(DownloadError::Transfer { url: url.to_string(), bytes: 0, why: format!("more than {MAX_REDIRECTS} redirects") })
}

async fn get_once(url: &Url, from: u64) -> Result<(Response<Incoming>, Connection), DownloadError> {
    let connect_error = |why: String| DownloadError::Connect { url: url.to_string(), why };
    let connect = async {
        let tcp = TcpStream::connect((url.host.as_str(), url.port)).await.map_err(|e| e.to_string())?;
        let io: Box<dyn Io> = if url.tls {
            let connector = tokio_rustls::TlsConnector::from(tls_config()?);
            let name = rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| e.to_string())?;
            Box::new(connector.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?)
        } else {
            Box::new(tcp)
        };
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io)).await.map_err(|e| e.to_string())
    };
    let (mut sender, conn) = timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| connect_error(format!("no connection within {} s", CONNECT_TIMEOUT.as_secs())))?
        .map_err(connect_error)?;
    let connection = Connection(tokio::spawn(async move {
        let _ = conn.await;
    }));
    // host[:port] as written (IPv6 in brackets); never user information.
    let host = url.uri.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
    let mut request = hyper::Request::get(url.path())
        .header(header::HOST, host)
        .header(header::USER_AGENT, concat!("iocaged/", env!("CARGO_PKG_VERSION")));
    if from > 0 {
        request = request.header(header::RANGE, format!("bytes={from}-"));
    }
    let request = request.body(Empty::new()).map_err(|e| connect_error(e.to_string()))?;
    let answer = timeout(IDLE_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| connect_error(format!("no answer within {} s", IDLE_TIMEOUT.as_secs())))?
        .map_err(|e| connect_error(e.to_string()))?;
    Ok((answer, connection))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{answer, run, scratch, server};
    use super::super::{fetch_small, fetch_to_file};
    use super::*;
    use tokio::io::AsyncWriteExt;

    thread_local! {
        /// The certificates this thread's https downloads trust instead of
        /// the system's (tests run their downloads on their own thread).
        pub(super) static TRUST: std::cell::RefCell<Option<Arc<rustls::ClientConfig>>> = const { std::cell::RefCell::new(None) };
    }

    /// A client configuration trusting exactly `cert`.
    fn trusting(cert: &rcgen::Certificate) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    #[test]
    fn https_downloads_check_the_mirror_s_certificate() {
        let server_cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(server_cert.signing_key.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![server_cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        run(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                loop {
                    let (tcp, _) = listener.accept().await.unwrap();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        use tokio::io::AsyncReadExt;
                        let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                        let mut head = Vec::new();
                        let mut b = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") && tls.read(&mut b).await.unwrap_or(0) == 1 {
                            head.push(b[0]);
                        }
                        let _ = tls.write_all(&answer("200 OK", "Content-Length: 6\r\n", "secure")).await;
                        let _ = tls.shutdown().await;
                    });
                }
            });
            let url = Url::parse(&format!("https://localhost:{port}/r/MANIFEST")).unwrap();
            TRUST.with(|t| *t.borrow_mut() = Some(trusting(&server_cert.cert)));
            assert_eq!(fetch_small(&url, 100).await.unwrap(), b"secure");
            TRUST.with(|t| *t.borrow_mut() = Some(trusting(&other.cert)));
            let e = fetch_small(&url, 100).await.unwrap_err();
            assert!(matches!(e, DownloadError::Connect { .. }) && e.to_string().contains("TLS"), "{e}");
            TRUST.with(|t| *t.borrow_mut() = None);
        });
    }

    #[test]
    fn redirects_are_followed_a_few_times_only() {
        let part = scratch("redirects");
        let mut answers = vec![answer("302 Found", "Location: /elsewhere\r\nContent-Length: 0\r\n", "")];
        answers.push(answer("200 OK", "Content-Length: 2\r\n", "ok"));
        answers
            .extend((0..=MAX_REDIRECTS).map(|_| answer("302 Found", "Location: /again\r\nContent-Length: 0\r\n", "")));
        let (url, heads) = server(answers);
        assert_eq!(run(fetch_small(&url, 10)).unwrap(), b"ok");
        assert!(heads.lock().unwrap()[1].starts_with("get /elsewhere "), "{:?}", heads.lock().unwrap());
        let e = run(fetch_to_file(&url, &part, 10, &mut |_, _| {})).unwrap_err();
        assert!(e.to_string().contains("redirects"), "{e}");
    }
}
