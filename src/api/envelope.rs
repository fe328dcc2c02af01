//! The wire format both transports share: the request (`namespace`, `name`,
//! `args`, and on WebSocket an `id`), the reply, and the protocol errors.
//!
//! WebSocket request: `{"id","name","namespace","args"}`; without `"args"`
//! the whole object is the args. `"args"` may also be a string or a list of
//! strings, as sysadm's own client sends them: `rpc/identify` and
//! `rpc/auth_clear` with `""`, `rpc/query` with `"simple-query"`,
//! `events/subscribe` with `"system-state"` or `["dispatcher", ...]`. Reply: `{"args","id","name":"response",
//! "namespace"}`, where an empty id makes `name` echo the request's name.
//! Before its reply, an execjail with `"output":"stream"` pushes its output
//! as `{"args":{"stream":"stdout"|"stderr","data"},"id","name":"output",
//! "namespace"}` messages under the request's id.
//! REST: `PUT|GET|POST /<namespace>/<name>`, the body is the args (or its
//! `"args"` member); reply `{"args": ...}` with the HTTP status.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::iocage::Body;
use crate::iocage::body::{Form, Named};

/// A request, whatever transport it came over.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The client's id (any JSON value; `Null` over REST).
    pub id: Value,
    pub namespace: String,
    pub name: String,
    /// The args when they are an object (empty otherwise).
    pub args: Map<String, Value>,
    /// The args when they are a string or a list of strings (`""` is no
    /// word; empty otherwise).
    pub words: Vec<String>,
}

/// The protocol-level failures, each with its HTTP status and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    /// A bug: the request failed inside the server.
    Internal,
    /// Refused for load (a limit was reached): try again shortly.
    ServiceUnavailable,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::Internal => 500,
            Status::ServiceUnavailable => 503,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Status::BadRequest => "Bad Request",
            Status::Unauthorized => "Unauthorized",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::Internal => "Internal Server Error",
            Status::ServiceUnavailable => "Service Unavailable",
        }
    }
}

/// A protocol error: the status the original API used, and a detail that
/// says what exactly was wrong (clients match on `code`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {}: {detail}", .status.code(), .status.message())]
pub struct ProtocolError {
    pub status: Status,
    pub detail: String,
}

impl ProtocolError {
    pub fn new(status: Status, detail: impl Into<String>) -> Self {
        ProtocolError { status, detail: detail.into() }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(Status::BadRequest, detail)
    }

    /// `{"code":"400","message":"Bad Request","detail":...}`
    pub fn body(&self) -> Value {
        json!({
            "code": self.status.code().to_string(),
            "message": self.status.message(),
            "detail": self.detail,
        })
    }
}

fn non_empty(obj: &Map<String, Value>, key: &str) -> Result<String, ProtocolError> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None => Err(ProtocolError::bad_request(format!("missing or empty \"{key}\""))),
        Some(_) => Err(ProtocolError::bad_request(format!("\"{key}\" must be a string"))),
    }
}

/// The most words a request's args may hold.
const MAX_WORDS: usize = 64;

/// A request's args: an object's members, or a string's or list's words.
fn args_of(obj: &Map<String, Value>) -> Result<(Map<String, Value>, Vec<String>), ProtocolError> {
    let not_words = || ProtocolError::bad_request("\"args\" must be an object, a string or a list of strings");
    match obj.get("args") {
        None => Ok((obj.clone(), Vec::new())),
        Some(Value::Object(a)) => Ok((a.clone(), Vec::new())),
        Some(Value::Null) => Ok((Map::new(), Vec::new())),
        Some(Value::String(s)) if s.is_empty() => Ok((Map::new(), Vec::new())),
        Some(Value::String(s)) => Ok((Map::new(), vec![s.clone()])),
        Some(Value::Array(list)) if list.len() > MAX_WORDS => {
            Err(ProtocolError::bad_request(format!("\"args\" holds more than {MAX_WORDS} words")))
        }
        Some(Value::Array(list)) => {
            let words = list.iter().map(|w| w.as_str().map(str::to_string).ok_or_else(not_words));
            Ok((Map::new(), words.collect::<Result<_, _>>()?))
        }
        Some(_) => Err(not_words()),
    }
}

/// Parses a WebSocket text message. On failure, returns the id (when one
/// could be read) so that the error reply can still carry it.
pub fn parse_ws(text: &str) -> Result<Call, (Value, ProtocolError)> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| (Value::Null, ProtocolError::bad_request(format!("invalid JSON: {e}"))))?;
    let Value::Object(obj) = value else {
        return Err((Value::Null, ProtocolError::bad_request("a request must be a JSON object")));
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    let parsed = (|| {
        let (namespace, name) = (non_empty(&obj, "namespace")?, non_empty(&obj, "name")?);
        let (args, words) = args_of(&obj)?;
        Ok(Call { id: id.clone(), namespace, name, args, words })
    })();
    parsed.map_err(|e| (id, e))
}

/// Parses a REST request: the path's two segments and the body.
pub fn parse_rest(namespace: &str, name: &str, body: &[u8]) -> Result<Call, ProtocolError> {
    let (args, words) = if body.iter().all(u8::is_ascii_whitespace) {
        (Map::new(), Vec::new())
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(obj)) => args_of(&obj)?,
            Ok(_) => return Err(ProtocolError::bad_request("the body must be a JSON object")),
            Err(e) => return Err(ProtocolError::bad_request(format!("invalid JSON: {e}"))),
        }
    };
    Ok(Call { id: Value::Null, namespace: namespace.to_string(), name: name.to_string(), args, words })
}

fn id_is_empty(id: &Value) -> bool {
    match id {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// What a call answers: the `args` of its reply.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Made by the API itself (logins, queries, subscriptions).
    Value(Value),
    /// An iocage action's: `{ACTION: body}`.
    Action(&'static str, Body),
}

impl From<Value> for Reply {
    fn from(v: Value) -> Reply {
        Reply::Value(v)
    }
}

impl Reply {
    /// The iocage action's in-band error, if it reports one.
    pub fn action_error(&self) -> Option<&str> {
        match self {
            Reply::Action(_, body) => body.error(),
            Reply::Value(_) => None,
        }
    }

    fn written(&self, form: Form) -> Args<'_> {
        Args { reply: self, form }
    }
}

/// A reply's `args` as one transport writes them.
struct Args<'a> {
    reply: &'a Reply,
    form: Form,
}

impl Serialize for Args<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.reply {
            Reply::Value(v) => v.serialize(s),
            Reply::Action(name, body) => Named { name, body: body.written(self.form) }.serialize(s),
        }
    }
}

/// A reply that could not be written (a bug): said as an error instead.
fn unwritable(id: &Value, e: &serde_json::Error) -> String {
    let err = ProtocolError::new(Status::Internal, format!("the reply could not be written: {e}"));
    ws_error(id, &err).to_string()
}

/// The WebSocket reply to `call`, as sent (keys in the order the original
/// server wrote them).
pub fn ws_reply(call: &Call, out: &Reply) -> String {
    #[derive(Serialize)]
    struct WsReply<'a> {
        args: Args<'a>,
        id: &'a Value,
        name: &'a str,
        namespace: &'a str,
    }
    let name = if id_is_empty(&call.id) { call.name.as_str() } else { "response" };
    let reply = WsReply { args: out.written(Form::Compact), id: &call.id, name, namespace: &call.namespace };
    serde_json::to_string(&reply).unwrap_or_else(|e| unwritable(&call.id, &e))
}

/// A message pushed under `call`'s id before its reply (streamed output).
pub fn ws_output(call: &Call, args: impl serde::Serialize) -> Value {
    json!({ "args": args, "id": call.id, "name": "output", "namespace": call.namespace })
}

/// The WebSocket error reply.
pub fn ws_error(id: &Value, err: &ProtocolError) -> Value {
    json!({ "args": err.body(), "id": id, "name": "error", "namespace": "error" })
}

/// The REST reply body of an error.
pub fn rest_body(out: Value) -> Value {
    json!({ "args": out })
}

/// The REST reply body of an answered call, as sent: `{"args": ...}`,
/// pretty-printed as the original server did. An error (a bug: values and
/// kept texts always print) is answered as such, with its status.
pub fn rest_reply(out: &Reply) -> Result<String, ProtocolError> {
    #[derive(Serialize)]
    struct RestReply<'a> {
        args: Args<'a>,
    }
    serde_json::to_string_pretty(&RestReply { args: out.written(Form::Indented) })
        .map_err(|e| ProtocolError::new(Status::Internal, format!("the reply could not be written: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_request_with_and_without_args() {
        let c = parse_ws(r#"{"id":"x","name":"iocage","namespace":"sysadm","args":{"action":"listjails"}}"#).unwrap();
        assert_eq!((c.namespace.as_str(), c.name.as_str()), ("sysadm", "iocage"));
        assert_eq!(c.args["action"], "listjails");
        // Without "args", the whole object is the args.
        let c = parse_ws(r#"{"id":"x","name":"iocage","namespace":"sysadm","action":"df"}"#).unwrap();
        assert_eq!(c.args["action"], "df");
        assert_eq!(c.args["id"], "x");
    }

    #[test]
    fn args_as_the_sysadm_client_sends_them() {
        let c = parse_ws(r#"{"id":"sysadm-client-identify","namespace":"rpc","name":"identify","args":""}"#).unwrap();
        assert!(c.args.is_empty() && c.words.is_empty());
        let c = parse_ws(r#"{"id":"q","namespace":"rpc","name":"query","args":"simple-query"}"#).unwrap();
        assert_eq!(c.words, ["simple-query"]);
        let c =
            parse_ws(r#"{"id":"e","namespace":"events","name":"subscribe","args":["dispatcher","iocage"]}"#).unwrap();
        assert_eq!(c.words, ["dispatcher", "iocage"]);
        assert!(parse_ws(r#"{"id":"e","namespace":"events","name":"subscribe","args":[]}"#).unwrap().words.is_empty());
        let many = format!(r#"{{"id":"e","namespace":"events","name":"subscribe","args":{:?}}}"#, vec!["x"; 65]);
        assert!(parse_ws(&many).unwrap_err().1.detail.contains("more than 64"));
        assert_eq!(parse_rest("rpc", "query", br#"{"args":"simple-query"}"#).unwrap().words, ["simple-query"]);
    }

    #[test]
    fn ws_bad_requests_keep_the_id() {
        for (text, want) in [
            ("not json", "invalid JSON"),
            ("[1,2]", "JSON object"),
            (r#"{"id":"7","namespace":"sysadm"}"#, "\"name\""),
            (r#"{"id":"7","name":"","namespace":"sysadm"}"#, "\"name\""),
            (r#"{"id":"7","name":"iocage","namespace":3}"#, "\"namespace\""),
            (r#"{"id":"7","name":"iocage","namespace":"sysadm","args":3}"#, "\"args\""),
            (r#"{"id":"7","name":"iocage","namespace":"sysadm","args":["a",1]}"#, "\"args\""),
            (r#"{"id":"7","name":"iocage","namespace":"sysadm","args":true}"#, "\"args\""),
        ] {
            let (id, err) = parse_ws(text).unwrap_err();
            assert_eq!(err.status, Status::BadRequest, "{text}");
            assert!(err.detail.contains(want), "{text}: {}", err.detail);
            if text.contains("\"7\"") {
                assert_eq!(id, "7");
            }
        }
    }

    #[test]
    fn rest_body_forms() {
        assert_eq!(parse_rest("sysadm", "iocage", br#"{"action":"df"}"#).unwrap().args["action"], "df");
        assert_eq!(parse_rest("sysadm", "iocage", br#"{"args":{"action":"df"}}"#).unwrap().args["action"], "df");
        assert!(parse_rest("sysadm", "iocage", b"").unwrap().args.is_empty());
        assert_eq!(parse_rest("sysadm", "iocage", b"[1]").unwrap_err().status, Status::BadRequest);
        assert_eq!(parse_rest("sysadm", "iocage", b"{").unwrap_err().status, Status::BadRequest);
        assert_eq!(parse_rest("sysadm", "iocage", br#"{"args":3}"#).unwrap_err().status, Status::BadRequest);
    }

    #[test]
    fn reply_shapes() {
        let mut c = parse_ws(r#"{"id":"fooid","name":"iocage","namespace":"sysadm","args":{}}"#).unwrap();
        assert_eq!(
            ws_reply(&c, &json!({"a": 1}).into()),
            r#"{"args":{"a":1},"id":"fooid","name":"response","namespace":"sysadm"}"#
        );
        c.id = json!("");
        let echoed: Value = serde_json::from_str(&ws_reply(&c, &json!({}).into())).unwrap();
        assert_eq!(echoed["name"], "iocage", "an empty id echoes the request name");
        let e = ws_error(&json!("fooid"), &ProtocolError::new(Status::NotFound, "no such"));
        assert_eq!(e["args"]["code"], "404");
        assert_eq!(e["args"]["message"], "Not Found");
        assert_eq!((e["name"].as_str(), e["namespace"].as_str()), (Some("error"), Some("error")));
    }

    #[test]
    fn a_kept_action_reply_is_sent_as_a_made_one_would_be() {
        use crate::iocage::body::Kept;
        let value = json!({"aaa": {"boot": "on", "ip4": "-", "tag": "web"}, "bbb": {"tag": "db"}});
        let made = Reply::Action("listjails", Body::Made(value.clone()));
        let kept = Reply::Action("listjails", Body::Kept(std::sync::Arc::new(Kept::new(&value).unwrap())));
        let c = parse_ws(r#"{"id":"q","name":"iocage","namespace":"sysadm","args":{}}"#).unwrap();
        assert_eq!(ws_reply(&c, &kept), ws_reply(&c, &made));
        assert_eq!(rest_reply(&kept).unwrap(), rest_reply(&made).unwrap());
        assert_eq!(
            rest_reply(&made).unwrap(),
            serde_json::to_string_pretty(&json!({"args": {"listjails": value}})).unwrap()
        );
        let kept_rest = rest_reply(&kept).unwrap();
        assert!(kept_rest.contains("\n      \"aaa\": {\n        \"boot\""), "{kept_rest}");
    }
}
