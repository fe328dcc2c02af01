//! REST: `PUT|GET|POST /<namespace>/<name>` with a JSON body; the reply is
//! `{"args": ...}` (pretty-printed, as the original server did) with status
//! 200, or the protocol error's status and `{"args":{"code","message",...}}`.
//!
//! The body is read here, not by warp's filters: with or without a
//! `Content-Length` (chunked, or none on a GET), at most [`MAX_BODY`]
//! bytes, within the `request_timeout` once the headers are in.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use serde_json::Value;
use warp::http::StatusCode;
use warp::{Buf, Filter, Rejection, Reply};

use super::auth::{Peer, parse_authorization};
use super::envelope::{self, ProtocolError, Status};
use super::{Api, Transport};

/// Largest request body accepted.
pub const MAX_BODY: u64 = 1 << 20;

/// The REST routes; unmatched requests become JSON errors via [`recover`].
pub fn routes(
    api: Arc<Api>,
    body_timeout: Duration,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let method = warp::put().or(warp::get()).unify().or(warp::post()).unify();
    warp::path!(String / String)
        .and(method)
        .and(warp::ext::get::<Peer>())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .then(move |namespace: String, name: String, peer: Peer, authz: Option<String>, length: Option<u64>, body| {
            let api = api.clone();
            async move {
                // A body announced too large is refused before a byte of it is read.
                let body = match length {
                    Some(n) if n > MAX_BODY => Err(too_large()),
                    _ => read_body(body, MAX_BODY, body_timeout).await,
                };
                let result = match body {
                    Ok(body) => {
                        let creds = parse_authorization(authz.as_deref());
                        match envelope::parse_rest(&namespace, &name, &body) {
                            Ok(call) => api.handle(Transport::Rest, peer, &creds, None, &call).await,
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                };
                match result.and_then(|out| envelope::rest_reply(&out)) {
                    Ok(text) => text_reply(StatusCode::OK, text),
                    Err(e) => error_reply(&e),
                }
            }
        })
}

/// `GET /metrics` (see `api::metrics`): `open` counts the connections open.
pub fn metrics_route(
    api: Arc<Api>,
    open: impl Fn() -> usize + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(warp::ext::get::<Peer>())
        .and(warp::header::optional::<String>("authorization"))
        .then(move |peer: Peer, authz: Option<String>| {
            let (api, open) = (api.clone(), open.clone());
            async move {
                let creds = parse_authorization(authz.as_deref());
                match api.metrics(peer, &creds, open()).await {
                    Ok(text) => {
                        let mut resp = warp::reply::with_status(text, StatusCode::OK).into_response();
                        resp.headers_mut().insert(
                            warp::http::header::CONTENT_TYPE,
                            warp::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                        );
                        resp
                    }
                    Err(e) => error_reply(&e),
                }
            }
        })
}

/// The whole body: at most `limit` bytes, all of it within `timeout`.
pub async fn read_body<S, B, E>(body: S, limit: u64, timeout: Duration) -> Result<Vec<u8>, ProtocolError>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
    E: std::fmt::Display,
{
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|e| ProtocolError::bad_request(format!("cannot read the body: {e}")))?;
            if (out.len() + chunk.remaining()) as u64 > limit {
                return Err(too_large());
            }
            while chunk.has_remaining() {
                let part = chunk.chunk();
                out.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
        }
        Ok(out)
    };
    tokio::time::timeout(timeout, read).await.unwrap_or_else(|_| {
        Err(ProtocolError::bad_request(format!(
            "the body did not arrive within {} s (request_timeout)",
            timeout.as_secs()
        )))
    })
}

fn too_large() -> ProtocolError {
    ProtocolError::bad_request(format!("the body is larger than {MAX_BODY} bytes"))
}

fn json_reply(status: StatusCode, body: &Value) -> warp::reply::Response {
    text_reply(status, serde_json::to_string_pretty(body).unwrap_or_else(|_| "{}".into()))
}

fn text_reply(status: StatusCode, text: String) -> warp::reply::Response {
    let mut resp = warp::reply::with_status(text, status).into_response();
    resp.headers_mut()
        .insert(warp::http::header::CONTENT_TYPE, warp::http::HeaderValue::from_static("application/json"));
    resp
}

fn error_reply(e: &ProtocolError) -> warp::reply::Response {
    let status = StatusCode::from_u16(e.status.code()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = json_reply(status, &envelope::rest_body(e.body()));
    if e.status == Status::ServiceUnavailable {
        resp.headers_mut().insert(warp::http::header::RETRY_AFTER, warp::http::HeaderValue::from_static("1"));
    }
    resp
}

/// Turns warp's rejections (no route, wrong method, a WebSocket upgrade
/// gone wrong, ...) into the API's JSON errors, each with a detail a person
/// can act on; never warp's debug text.
pub async fn recover(r: Rejection) -> Result<warp::reply::Response, Infallible> {
    Ok(error_reply(&rejection(&r)))
}

fn rejection(r: &Rejection) -> ProtocolError {
    use warp::reject;
    if r.is_not_found() {
        return ProtocolError::new(Status::NotFound, "use PUT, GET or POST /<namespace>/<name>");
    }
    if r.find::<reject::PayloadTooLarge>().is_some() {
        return too_large();
    }
    if r.find::<reject::MethodNotAllowed>().is_some() {
        return ProtocolError::bad_request("use PUT, GET or POST");
    }
    if let Some(h) = r.find::<reject::MissingHeader>() {
        return ProtocolError::bad_request(format!("the request needs a {} header", h.name()));
    }
    if let Some(h) = r.find::<reject::InvalidHeader>() {
        return ProtocolError::bad_request(format!("the {} header is not valid", h.name()));
    }
    if r.find::<reject::LengthRequired>().is_some() {
        return ProtocolError::bad_request("the request needs a Content-Length header");
    }
    if r.find::<reject::UnsupportedMediaType>().is_some() {
        return ProtocolError::bad_request("send the body as JSON");
    }
    ProtocolError::bad_request(
        "the request could not be read: send PUT, GET or POST /<namespace>/<name> with a JSON body, or a WebSocket upgrade",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<&'static [u8], Infallible>> {
        futures_util::stream::iter(parts.iter().map(|p| Ok(*p)).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn a_body_is_read_whole_without_a_length_and_bounded() {
        let t = Duration::from_secs(5);
        assert_eq!(read_body(chunks(&[b"{\"a\"", b":1}"]), 100, t).await.unwrap(), b"{\"a\":1}");
        assert_eq!(read_body(chunks(&[]), 100, t).await.unwrap(), b"");
        let e = read_body(chunks(&[b"0123456789", b"0"]), 10, t).await.unwrap_err();
        assert!(e.detail.contains("larger than"), "{e}");
    }

    #[tokio::test]
    async fn a_body_that_never_ends_times_out() {
        let never = futures_util::stream::pending::<Result<&'static [u8], Infallible>>();
        let e = read_body(never, 100, Duration::from_millis(50)).await.unwrap_err();
        assert!(e.detail.contains("did not arrive within") && e.detail.contains("(request_timeout)"), "{e}");
    }

    #[test]
    fn rejections_read_as_sentences_not_debug_text() {
        for r in [warp::reject::not_found(), warp::reject::reject()] {
            let e = rejection(&r);
            assert!(!e.detail.contains("Rejection") && !e.detail.contains('{'), "{e}");
        }
    }
}
