//! REST: `PUT|GET|POST /<namespace>/<name>` with a JSON body; the reply is
//! `{"args": ...}` (pretty-printed, as the original server did) with status
//! 200, or the protocol error's status and `{"args":{"code","message",...}}`.

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::Value;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::auth::{Peer, parse_authorization};
use super::envelope::{self, ProtocolError, Status};
use super::{Api, Transport};

/// Largest request body accepted.
pub const MAX_BODY: u64 = 1 << 20;

/// The REST routes; unmatched requests become JSON errors via [`recover`].
pub fn routes(api: Arc<Api>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let method = warp::put().or(warp::get()).unify().or(warp::post()).unify();
    warp::path!(String / String)
        .and(method)
        .and(warp::ext::get::<Peer>())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .then(
            move |namespace: String,
                  name: String,
                  peer: Peer,
                  authz: Option<String>,
                  body: warp::hyper::body::Bytes| {
                let api = api.clone();
                async move {
                    let creds = parse_authorization(authz.as_deref());
                    let result = match envelope::parse_rest(&namespace, &name, &body) {
                        Ok(call) => api.handle(Transport::Rest, peer, &creds, None, &call).await,
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(out) => json_reply(StatusCode::OK, &envelope::rest_body(out)),
                        Err(e) => error_reply(&e),
                    }
                }
            },
        )
}

fn json_reply(status: StatusCode, body: &Value) -> warp::reply::Response {
    let text = serde_json::to_string_pretty(body).unwrap_or_else(|_| "{}".into());
    let mut resp = warp::reply::with_status(text, status).into_response();
    resp.headers_mut()
        .insert(warp::http::header::CONTENT_TYPE, warp::http::HeaderValue::from_static("application/json"));
    resp
}

fn error_reply(e: &ProtocolError) -> warp::reply::Response {
    let status = StatusCode::from_u16(e.status.code()).unwrap_or(StatusCode::BAD_REQUEST);
    json_reply(status, &envelope::rest_body(e.body()))
}

/// Turns warp's rejections (no route, wrong method, body too large) into
/// the API's JSON errors.
pub async fn recover(r: Rejection) -> Result<warp::reply::Response, Infallible> {
    let e = if r.is_not_found() {
        ProtocolError::new(Status::NotFound, "use PUT, GET or POST /<namespace>/<name>")
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        ProtocolError::bad_request(format!("the body is larger than {MAX_BODY} bytes"))
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ProtocolError::bad_request("use PUT, GET or POST")
    } else {
        ProtocolError::bad_request(format!("{r:?}"))
    };
    Ok(error_reply(&e))
}
