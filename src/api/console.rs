//! Consoles over a WebSocket: where a socket's input frames go.
//!
//! A console is opened by the iocage action `console` (a request like any
//! other; its reply comes when the console ends). What it shows comes as
//! `output` messages under the request's id, as a streamed execjail's.
//! The client's frames are `sysadm/console` messages under the same id:
//!
//! ```json
//! {"namespace":"sysadm","name":"console","id":"c1","args":{"input":"ls\n"}}
//! {"namespace":"sysadm","name":"console","id":"c1","args":{"resize":{"rows":40,"cols":120}}}
//! {"namespace":"sysadm","name":"console","id":"c1","args":{"close":true}}
//! ```
//!
//! They are not requests: the session hands them to the console at once,
//! without taking a request slot, and answers only a frame it refuses
//! (with an error under the frame's id). A console whose [`ROOM`] frames
//! are all waiting holds the socket's reading up to [`INPUT_WAIT`]; past
//! that it is hung up.
//!
//! [`ROOM`]: crate::runtime::console::ROOM

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::auth::WsSocket;
use super::envelope::{self, ProtocolError, Status};
use crate::runtime::console::{INPUT_MAX, Inlet, Input, Keys, WinSize};

/// How long a frame waits for room in its console before the console is
/// hung up.
pub const INPUT_WAIT: Duration = Duration::from_secs(10);

/// The consoles open on a socket, by their request's id (its JSON text).
///
/// The session registers a console when it reads the request that opens
/// it ([`Consoles::reserve`]), before the request runs, so that frames
/// sent right after it are not refused: they wait in the console's input
/// until it starts. The console's input goes with that request (its
/// turn); the entry goes when the request's task ends.
///
/// A frame is taken only while the socket's login still stands, checked
/// (and renewed) as a request's would be, with the write role, and is the
/// login of the user who opened the console ([`Consoles::own`]); anything
/// else hangs the console up.
#[derive(Debug, Default)]
pub struct Consoles(Mutex<HashMap<String, Entry>>);

#[derive(Debug)]
struct Entry {
    /// None once hung up: the id stays taken (its request still ends and
    /// replies under it) until the request's task ends.
    keys: Option<Keys>,
    /// The user the console runs for, once it runs.
    owner: Option<String>,
}

/// A console's place in [`Consoles`], given back when dropped.
pub struct Reserved {
    socket: Arc<WsSocket>,
    key: String,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.socket.consoles.map().remove(&self.key);
    }
}

impl Consoles {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a console for `text` when it is a request that opens one
    /// (the iocage action `console`) under an id not taken on `socket`; its
    /// input goes with the request.
    pub fn reserve(socket: &Arc<WsSocket>, text: &str) -> Option<(Reserved, Inlet)> {
        if !text.contains("console") {
            return None;
        }
        let call = envelope::parse_ws(text).ok()?;
        let opens = (call.namespace.as_str(), call.name.as_str()) == ("sysadm", "iocage")
            && call.args.get("action").and_then(Value::as_str) == Some("console");
        if !opens || call.id.is_null() {
            return None;
        }
        let key = call.id.to_string();
        let mut map = socket.consoles.map();
        if map.contains_key(&key) {
            return None;
        }
        let (keys, inlet) = Inlet::channel();
        map.insert(key.clone(), Entry { keys: Some(keys), owner: None });
        Some((Reserved { socket: socket.clone(), key }, inlet))
    }

    /// The console `id` runs for `user`: frames of another login are
    /// refused.
    pub fn own(&self, id: &Value, user: &str) {
        if let Some(e) = self.map().get_mut(&id.to_string()) {
            e.owner = Some(user.to_string());
        }
    }

    fn entry(&self, id: &Value) -> Option<(Option<Keys>, Option<String>)> {
        self.map().get(&id.to_string()).map(|e| (e.keys.clone(), e.owner.clone()))
    }

    /// Hangs the console up: its input ends (the id stays taken until its
    /// request ends).
    fn remove(&self, key: &str) {
        if let Some(e) = self.map().get_mut(key) {
            e.keys = None;
        }
    }

    /// Forgets every console (the socket goes): they are hung up.
    pub fn clear(&self) {
        self.map().clear();
    }

    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
}

/// What the session does with a message.
pub enum Frame {
    /// Not a frame of an open console: a request.
    Request,
    /// Handed to its console; nothing to answer.
    Taken,
    /// Refused: this error goes back.
    Refused(Value),
}

/// Hands `text` to its console when it is a `sysadm/console` frame for
/// one open on the socket, waiting up to `wait` (the session:
/// [`INPUT_WAIT`]) for room. `login` checks the socket's login now: the
/// user, or why not.
pub async fn route(
    consoles: &Consoles,
    login: impl FnOnce() -> Result<String, ProtocolError>,
    text: &str,
    wait: Duration,
) -> Frame {
    if consoles.is_empty() {
        return Frame::Request;
    }
    let Ok(call) = envelope::parse_ws(text) else { return Frame::Request };
    if (call.namespace.as_str(), call.name.as_str()) != ("sysadm", "console") {
        return Frame::Request;
    }
    let Some((keys, owner)) = consoles.entry(&call.id) else { return Frame::Request };
    let refuse = |status, why: String| Frame::Refused(envelope::ws_error(&call.id, &ProtocolError::new(status, why)));
    let Some(keys) = keys else {
        return refuse(Status::NotFound, format!("the console under id {} has ended", call.id));
    };
    let hang_up = |e: ProtocolError| {
        consoles.remove(&call.id.to_string());
        let why = format!("{}; the console was hung up", e.detail);
        Frame::Refused(envelope::ws_error(&call.id, &ProtocolError::new(e.status, why)))
    };
    match login() {
        Ok(user) if owner.as_ref().is_none_or(|o| *o == user) => {}
        Ok(user) => {
            return hang_up(ProtocolError::new(
                Status::Forbidden,
                format!("the socket is now logged in as {user}, not as the console's user"),
            ));
        }
        Err(e) => return hang_up(e),
    }
    let input = match input(&call.args) {
        Ok(Some(i)) => i,
        Ok(None) => {
            consoles.remove(&call.id.to_string());
            return Frame::Taken;
        }
        Err(why) => return refuse(Status::BadRequest, why),
    };
    match keys.send(input, wait).await {
        Ok(()) => Frame::Taken,
        Err(why) => {
            consoles.remove(&call.id.to_string());
            refuse(Status::NotFound, format!("{why}; it was hung up"))
        }
    }
}

/// A frame's args: `input`, `resize` or `close` (`None`).
fn input(args: &serde_json::Map<String, Value>) -> Result<Option<Input>, String> {
    let keys = "a console frame has one of \"input\" (text), \"resize\" ({\"rows\", \"cols\"}) or \"close\" (true)";
    match (args.get("input"), args.get("resize"), args.get("close")) {
        (Some(Value::String(s)), None, None) if s.len() <= INPUT_MAX => Ok(Some(Input::Data(s.clone()))),
        (Some(Value::String(_)), None, None) => Err(format!("an input frame carries at most {INPUT_MAX} bytes")),
        (None, Some(r), None) => {
            let side = |k: &str| {
                r.get(k)
                    .and_then(WinSize::side)
                    .ok_or_else(|| format!("resize needs \"{k}\", a number from 1 to {}", WinSize::MAX))
            };
            Ok(Some(Input::Resize(WinSize { rows: side("rows")?, cols: side("cols")? })))
        }
        (None, None, Some(Value::Bool(true))) => Ok(None),
        _ => Err(keys.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::sync::{mpsc, watch};

    const W: Duration = Duration::from_millis(50);

    fn socket() -> Arc<WsSocket> {
        let (pushes, _) = mpsc::channel(1);
        let (writer, _) = mpsc::channel(1);
        let (_, closed) = watch::channel(false);
        Arc::new(WsSocket::new(pushes, writer.downgrade(), closed))
    }

    fn root() -> Result<String, ProtocolError> {
        Ok("root".into())
    }

    fn opens(id: Value) -> String {
        json!({"namespace": "sysadm", "name": "iocage", "id": id, "args": {"action": "console", "jail": "j"}})
            .to_string()
    }

    fn frame(id: &str, args: Value) -> String {
        json!({"namespace": "sysadm", "name": "console", "id": id, "args": args}).to_string()
    }

    fn detail(f: Frame) -> (String, String) {
        let Frame::Refused(e) = f else { panic!("not refused") };
        (e["args"]["code"].as_str().unwrap().to_string(), e["args"]["detail"].as_str().unwrap().to_string())
    }

    #[tokio::test]
    async fn frames_go_to_their_console_and_bad_ones_are_refused_by_name() {
        let s = socket();
        let consoles = &s.consoles;
        assert!(matches!(route(consoles, root, &frame("c1", json!({"input": "x"})), W).await, Frame::Request));
        // Only a request that opens a console, under an id, registers one.
        let listjails = json!({"namespace": "sysadm", "name": "iocage", "id": "c1", "args": {"action": "listjails"}});
        assert!(Consoles::reserve(&s, &listjails.to_string()).is_none());
        assert!(Consoles::reserve(&s, &opens(Value::Null)).is_none());
        let (reserved, inlet) = Consoles::reserve(&s, &opens(json!("c1"))).unwrap();
        assert!(Consoles::reserve(&s, &opens(json!("c1"))).is_none(), "an id open once");
        // Frames before the console runs wait in its input.
        assert!(matches!(route(consoles, root, &frame("c1", json!({"input": "ls\n"})), W).await, Frame::Taken));
        let mut rx = inlet.take().unwrap();
        consoles.own(&json!("c1"), "root");
        assert!(matches!(
            route(consoles, root, &frame("c1", json!({"resize": {"rows": 40, "cols": 120}})), W).await,
            Frame::Taken
        ));
        assert_eq!(rx.try_recv().unwrap(), Input::Data("ls\n".into()));
        assert_eq!(rx.try_recv().unwrap(), Input::Resize(WinSize { rows: 40, cols: 120 }));
        // Another id, or another call: requests as any other.
        assert!(matches!(route(consoles, root, &frame("c2", json!({"input": "x"})), W).await, Frame::Request));
        assert!(matches!(route(consoles, root, &listjails.to_string(), W).await, Frame::Request));
        for (args, says) in [
            (json!({"resize": {"rows": 0, "cols": 80}}), "\"rows\", a number from 1 to 1000"),
            (json!({"input": "x".repeat(INPUT_MAX + 1)}), "at most 65536 bytes"),
            (json!({"input": 3}), "one of \"input\""),
            (json!({"input": "a", "close": true}), "one of \"input\""),
        ] {
            let (code, d) = detail(route(consoles, root, &frame("c1", args), W).await);
            assert!(code == "400" && d.contains(says), "{d}");
        }
        assert!(rx.try_recv().is_err(), "nothing refused reached the console");
        // close: its input ends; the id stays taken until its request ends.
        assert!(matches!(route(consoles, root, &frame("c1", json!({"close": true})), W).await, Frame::Taken));
        assert!(rx.recv().await.is_none(), "the console's input ended");
        let (code, d) = detail(route(consoles, root, &frame("c1", json!({"input": "x"})), W).await);
        assert_eq!((code.as_str(), d.as_str()), ("404", "the console under id \"c1\" has ended"));
        assert!(Consoles::reserve(&s, &opens(json!("c1"))).is_none(), "its id is still taken");
        drop(reserved);
        assert!(consoles.is_empty());
        // The request's end forgets it too.
        let (reserved, _inlet) = Consoles::reserve(&s, &opens(json!(2))).unwrap();
        assert!(!consoles.is_empty());
        drop(reserved);
        assert!(consoles.is_empty());
    }

    #[tokio::test]
    async fn a_login_that_lapsed_or_changed_hangs_the_console_up() {
        let s = socket();
        for (id, login, says) in [
            ("a", Err(ProtocolError::new(Status::Unauthorized, "the token expired")), "401 the token expired"),
            ("b", Ok("bob".to_string()), "403 the socket is now logged in as bob"),
        ] {
            let (_reserved, inlet) = Consoles::reserve(&s, &opens(json!(id))).unwrap();
            let mut rx = inlet.take().unwrap();
            s.consoles.own(&json!(id), "root");
            let (code, d) = detail(route(&s.consoles, || login, &frame(id, json!({"input": "x"})), W).await);
            assert!(format!("{code} {d}").starts_with(says) && d.ends_with("the console was hung up"), "{d}");
            assert!(rx.recv().await.is_none(), "hung up: its input ended");
        }
    }

    #[tokio::test]
    async fn a_console_that_takes_nothing_is_hung_up() {
        let s = socket();
        let (_reserved, inlet) = Consoles::reserve(&s, &opens(json!(7))).unwrap();
        let _rx = inlet.take();
        let frame = json!({"namespace": "sysadm", "name": "console", "id": 7, "args": {"input": "y"}}).to_string();
        for _ in 0..crate::runtime::console::ROOM {
            assert!(matches!(route(&s.consoles, root, &frame, W).await, Frame::Taken));
        }
        let (_, d) = detail(route(&s.consoles, root, &frame, W).await);
        assert!(d.contains("took no input"), "{d}");
        let (_, d) = detail(route(&s.consoles, root, &frame, W).await);
        assert!(d.contains("has ended"), "{d}");
    }
}
