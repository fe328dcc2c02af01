//! The API layer on the host, in seconds: the real server, transports,
//! envelopes, authentication, roles and lockout, in front of a fake
//! iocage layer (`api::Actions`) that records what reached it. What an
//! action does to ZFS and the kernel is the guest suite's (`guest_*.rs`);
//! here, whether a request gets to an action at all, and how its outcome
//! comes back.

#[path = "rig/client.rs"]
#[allow(dead_code)]
mod client;
mod host;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use client::{Ws, http_anonymous};
use iocaged::api::{Actions, PoolStates};
use iocaged::config::Limits;
use iocaged::iocage::body::Kept;
use iocaged::iocage::request::Shown;
use iocaged::iocage::{ActionError, Body, JailUsage, Request, ServiceMetrics};
use iocaged::runtime::Usage;
use iocaged::runtime::console::Input;
use iocaged::runtime::stream::{Chunk, Stream};

/// The fake iocage layer: answers by the request, and records the name of
/// every action that reached it.
#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<String>>,
    /// Scrapes take this long.
    scrape_delay: Mutex<Duration>,
}

impl Actions for Fake {
    fn run(&self, req: Request) -> BoxFuture<'_, Result<Body, ActionError>> {
        self.seen.lock().unwrap().push(req.action().name().to_string());
        Box::pin(async move {
            let made = match req {
                // As the daemon's: a listing kept as its text.
                Request::ListJails => {
                    let kept = Kept::new(&json!({"uuid-1": {"tag": "one"}})).expect("printable");
                    return Ok(Body::Kept(Arc::new(kept)));
                }
                Request::StartJail { jail } if jail == "slow" => {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    Ok(json!({"slow": {"+ Started OK": ""}}))
                }
                Request::StartJail { jail } if jail == "missing" => Err(ActionError::JailNotFound(jail)),
                Request::StopJail { .. } => Err(ActionError::Overloaded("the fake is busy".into())),
                // Two chunks, then (command "forever") until the receiver
                // goes, which the fake records.
                Request::ExecJail { command, output: Shown::Stream(Some(outlet)), .. } => {
                    for (stream, data) in [(Stream::Stdout, "one\n"), (Stream::Stderr, "two\n")] {
                        outlet.send(Chunk { stream, data: data.into() }).await;
                    }
                    if command == "forever" {
                        outlet.closed().await;
                        self.seen.lock().unwrap().push("outlet closed".into());
                    }
                    Ok(json!({"success": {}, "exit_code": 0}))
                }
                // Says its size, then echoes each frame, until the client
                // hangs up, which the fake records.
                Request::Console { size, io: Some((outlet, inlet)), .. } => {
                    let show = |data: String| outlet.send(Chunk { stream: Stream::Stdout, data });
                    show(format!("size:{}x{}", size.rows, size.cols)).await;
                    let mut inlet = inlet.take().expect("the inlet, once");
                    while let Some(input) = inlet.recv().await {
                        match input {
                            Input::Data(d) => show(format!("echo:{d}")).await,
                            Input::Resize(s) => show(format!("size:{}x{}", s.rows, s.cols)).await,
                        };
                    }
                    self.seen.lock().unwrap().push("console hung up".into());
                    Ok(json!({"success": "hung up"}))
                }
                other => Ok(json!({ "done": other.action().name() })),
            };
            made.map(Body::Made)
        })
    }

    fn pool_states(&self) -> BoxFuture<'_, Result<PoolStates, ActionError>> {
        Box::pin(async { Ok(vec![("tank".to_string(), "ONLINE".to_string(), 7)]) })
    }

    fn metrics(&self) -> BoxFuture<'_, ServiceMetrics> {
        let usage = Usage {
            cpu_seconds: 1.5,
            memory_bytes: 1 << 20,
            processes: 3,
            memory_limit_bytes: Some(64 << 20),
            processes_limit: None,
        };
        // A tag is the client's: quotes, backslashes and newlines in it
        // must not break the exposition.
        let jail = JailUsage { uuid: "u-1".into(), tag: "we\"b\\x\ny".into(), usage };
        let delay = *self.scrape_delay.lock().unwrap();
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            ServiceMetrics { jails: vec![jail], listed: true, zfs_queue: 4, ..ServiceMetrics::default() }
        })
    }
}

type Server = host::server::Server<Fake>;

/// The real server in front of a new [`Fake`].
fn start(name: &str, limits: Limits) -> Server {
    Server::start(name, limits, Arc::new(Fake::default()))
}

/// The actions that reached the fake, in order.
fn reached(s: &Server) -> Vec<String> {
    s.actions.seen.lock().unwrap().clone()
}

/// A protocol error's explanation (`args.detail`, where sysadm's server
/// put it; `args.message` is the status's name).
fn detail(reply: &Value) -> String {
    reply["args"]["detail"].as_str().unwrap_or_default().to_string()
}

/// A protocol error's code, as the string the original sent.
fn code(reply: &Value) -> String {
    match &reply["args"]["code"] {
        Value::String(c) => c.clone(),
        other => other.to_string(),
    }
}

fn iocage(id: &str, args: Value) -> Value {
    json!({"id": id, "namespace": "sysadm", "name": "iocage", "args": args})
}

#[test]
fn roles_decide_which_actions_reach_the_service() {
    let s = start("roles", Limits::default());
    let read = json!({"action": "listjails"});
    let write = json!({"action": "startjail", "jail": "web"});
    // Nobody, and a key nobody issued: not even a read gets through.
    for key in [None, Some("not-a-key")] {
        for body in [&read, &write] {
            let r = s.rest(key, &[], body);
            assert_eq!(r.status, 401, "{key:?} {body}: {}", r.raw);
        }
    }
    assert!(reached(&s).is_empty(), "nothing reached the service: {:?}", reached(&s));
    // A read key reads, and is refused a write, which never reaches it.
    let r = s.rest(Some(&s.read_key), &[], &read);
    assert_eq!((r.status, &r.body["args"]["listjails"]["uuid-1"]["tag"]), (200, &json!("one")), "{}", r.raw);
    let r = s.rest(Some(&s.read_key), &[], &write);
    assert_eq!(r.status, 403, "{}", r.raw);
    assert!(detail(&r.body).contains("startjail"), "names the action: {}", r.raw);
    assert_eq!(reached(&s), ["listjails"]);
    // A read/write key does both.
    assert_eq!(s.rest(Some(&s.write_key), &[], &write).status, 200);
    assert_eq!(s.rest(Some(&s.write_key), &[], &read).status, 200);
    assert_eq!(reached(&s), ["listjails", "startjail", "listjails"]);

    // The same over a WebSocket: the refusal keeps the request's id.
    let mut ws = s.ws(&s.read_key);
    let r = ws.call(&iocage("w1", write.clone()));
    assert_eq!((r["id"].as_str(), r["name"].as_str()), (Some("w1"), Some("error")), "{r}");
    assert_eq!(code(&r), "403", "{r}");
    let r = ws.call(&iocage("r1", read.clone()));
    assert_eq!((r["id"].as_str(), r["name"].as_str()), (Some("r1"), Some("response")), "{r}");
    let mut ws = s.ws(&s.write_key);
    assert_eq!(ws.call(&iocage("w2", write.clone()))["name"], "response");
    assert_eq!(reached(&s), ["listjails", "startjail", "listjails", "listjails", "startjail"]);

    // A socket that never logged in is asked to.
    let mut anon = Ws::connect_anonymous(s.addr);
    let r = anon.call(&iocage("a1", read));
    assert_eq!((r["name"].as_str(), code(&r).as_str()), (Some("error"), "401"), "{r}");
    let r = anon.call(&json!({"id": "i", "namespace": "rpc", "name": "identify", "args": ""}));
    assert_eq!(r["args"]["type"], "server", "identify needs no login: {r}");
}

#[test]
fn outcomes_come_back_in_band_or_as_protocol_errors() {
    let s = start("outcomes", Limits::default());
    let key = Some(s.write_key.as_str());
    // An action's own failure is a 200 with its error under its name.
    let r = s.rest(key, &[], &json!({"action": "startjail", "jail": "missing"}));
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(r.body["args"]["startjail"]["error"].as_str().is_some_and(|e| e.contains("missing")), "{}", r.raw);
    // Refused for load: 503, which a client may retry.
    let r = s.rest(key, &[], &json!({"action": "stopjail", "jail": "web"}));
    assert_eq!(r.status, 503, "{}", r.raw);
    // Bad input never reaches the service, and the error names it: no
    // action known is a 400; an action's bad arguments are its in-band
    // error (as the original answered them).
    let seen = reached(&s).len();
    for (body, names) in [(json!({"action": "nosuchaction"}), "nosuchaction"), (json!({}), "action")] {
        let r = s.rest(key, &[], &body);
        assert_eq!(r.status, 400, "{body}: {}", r.raw);
        assert!(detail(&r.body).contains(names), "{body}: the error names {names:?}: {}", r.raw);
    }
    for (body, names) in [
        (json!({"action": "startjail"}), "jail"),
        (json!({"action": "execjail", "jail": "web", "user": "root", "command": "true", "timeout": 0}), "timeout"),
    ] {
        let r = s.rest(key, &[], &body);
        let action = body["action"].as_str().unwrap_or_default();
        let error = r.body["args"][action]["error"].as_str().unwrap_or_default();
        assert_eq!(r.status, 200, "{body}: {}", r.raw);
        assert!(error.contains(names), "{body}: the error names {names:?}: {}", r.raw);
    }
    let put = |path: &str, body: &[u8]| {
        http_anonymous(s.addr, "PUT", path, &[("Authorization", &format!("Bearer {}", s.write_key))], body)
    };
    let r = put("/sysadm/iocage", b"{not json");
    assert_eq!(r.status, 400, "{}", r.raw);
    let r = s.rest(key, &[], &json!({"action": "listjails"}));
    assert_eq!(r.status, 200);
    let r = put("/sysadm/nosuch", b"{}");
    assert_eq!(r.status, 404, "{}", r.raw);
    assert_eq!(reached(&s).len(), seen + 1, "only the good listjails reached the service: {:?}", reached(&s));

    // Over a WebSocket: a message that is not JSON, or has no id, is
    // answered without one; an error otherwise carries the request's id.
    let mut ws = s.ws(&s.write_key);
    ws.send_text("{not json");
    let r = ws.recv_within(Duration::from_secs(10)).expect("an answer to a bad message");
    assert_eq!(r["name"], "error", "{r}");
    let r = ws.call(&iocage("bad", json!({"action": "nosuchaction"})));
    assert_eq!((r["id"].as_str(), code(&r).as_str()), (Some("bad"), "400"), "{r}");
    let r = ws.call(&json!({"id": "ns", "namespace": "nosuch", "name": "thing", "args": {}}));
    assert_eq!((r["id"].as_str(), code(&r).as_str()), (Some("ns"), "404"), "{r}");
}

#[test]
fn a_socket_answers_its_requests_as_they_finish() {
    let s = start("pipelining", Limits::default());
    let mut ws = s.ws(&s.write_key);
    // A slow action first, then a fast one, without waiting: the fast one
    // is not held up behind the slow one, and each reply keeps its id.
    ws.send(&iocage("slow", json!({"action": "startjail", "jail": "slow"})));
    ws.send(&iocage("fast", json!({"action": "listjails"})));
    let first = ws.recv_within(Duration::from_secs(10)).expect("a reply");
    let second = ws.recv_within(Duration::from_secs(10)).expect("a reply");
    assert_eq!((first["id"].as_str(), second["id"].as_str()), (Some("fast"), Some("slow")), "{first} {second}");
    assert_eq!(second["args"]["startjail"]["slow"]["+ Started OK"], "", "{second}");

    // At most max_requests_per_socket in flight: the rest wait to be read,
    // and all are answered.
    let s = start("pipelining-bound", Limits { max_requests_per_socket: 2, ..Limits::default() });
    let mut ws = s.ws(&s.write_key);
    for i in 0..6 {
        ws.send(&iocage(&format!("s{i}"), json!({"action": "startjail", "jail": "slow"})));
    }
    let started = std::time::Instant::now();
    let mut ids: Vec<String> = (0..6)
        .map(|_| ws.recv_within(Duration::from_secs(20)).expect("every request is answered")["id"].to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["\"s0\"", "\"s1\"", "\"s2\"", "\"s3\"", "\"s4\"", "\"s5\""]);
    // Six 600 ms actions two at a time take three rounds, not one.
    assert!(started.elapsed() >= Duration::from_millis(1700), "two at a time: {:?}", started.elapsed());
}

#[test]
fn streamed_output_comes_before_the_reply_and_stops_with_the_socket() {
    // One request at a time per socket: the stream below holds the only
    // slot while the client leaves.
    let s = start("stream", Limits { max_requests_per_socket: 1, ..Limits::default() });
    let mut ws = s.ws(&s.write_key);
    let exec = |command: &str| {
        json!({"action": "execjail", "jail": "j", "user": "root", "command": command,
                                      "output": "stream"})
    };
    ws.send(&iocage("x1", exec("echo")));
    let got: Vec<Value> = (0..3).map(|_| ws.recv_within(Duration::from_secs(10)).expect("a message")).collect();
    assert_eq!(
        got[0],
        json!({"args": {"stream": "stdout", "data": "one\n"}, "id": "x1", "name": "output",
                              "namespace": "sysadm"})
    );
    assert_eq!(got[1]["args"], json!({"stream": "stderr", "data": "two\n"}), "{}", got[1]);
    assert_eq!((got[2]["id"].as_str(), got[2]["name"].as_str()), (Some("x1"), Some("response")), "{}", got[2]);
    assert_eq!(got[2]["args"]["execjail"]["exit_code"], 0, "{}", got[2]);

    // Closing the socket mid-stream closes the command's outlet (the
    // real one then stops the command).
    ws.send(&iocage("x2", exec("forever")));
    assert_eq!(ws.recv_within(Duration::from_secs(10)).expect("a chunk")["name"], "output");
    // A keep-alive ping first: it must not stop the server from reading on.
    ws.ping();
    ws.close();
    let gone = std::time::Instant::now();
    while !s.actions.seen.lock().unwrap().iter().any(|a| a == "outlet closed") {
        assert!(gone.elapsed() < Duration::from_secs(10), "the outlet stayed open after the socket closed");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Over REST there is no socket to stream to: no outlet is attached
    // (the real service then refuses, naming "output").
    let reply = s.rest(Some(&s.write_key), &[], &exec("forever"));
    assert_eq!(reply.body["args"]["execjail"], json!({"done": "execjail"}), "{}", reply.body);
}

#[test]
fn console_frames_reach_their_console_even_with_every_slot_taken() {
    // The console holds the socket's only request slot.
    let s = start("console", Limits { max_requests_per_socket: 1, ..Limits::default() });
    let open = json!({"action": "console", "jail": "j", "rows": 30, "cols": 100});
    let frame = |args: Value| json!({"id": "c1", "namespace": "sysadm", "name": "console", "args": args});
    // A read key may not open one.
    let mut ro = s.ws(&s.read_key);
    let r = ro.call(&iocage("c0", open.clone()));
    assert_eq!(r["args"]["code"], "403", "{r}");

    let mut ws = s.ws(&s.write_key);
    let shown = |ws: &mut Ws| {
        let m = ws.recv_within(Duration::from_secs(10)).expect("a message");
        assert_eq!((m["id"].as_str(), m["name"].as_str()), (Some("c1"), Some("output")), "{m}");
        m["args"]["data"].as_str().unwrap().to_string()
    };
    ws.send(&iocage("c1", open));
    assert_eq!(shown(&mut ws), "size:30x100");
    // A request now waits for the slot; frames do not.
    ws.send(&iocage("l1", json!({"action": "listjails"})));
    ws.send(&frame(json!({"input": "ls\n"})));
    assert_eq!(shown(&mut ws), "echo:ls\n");
    ws.send(&frame(json!({"resize": {"rows": 40, "cols": 120}})));
    assert_eq!(shown(&mut ws), "size:40x120");
    ws.send(&frame(json!({"input": 7})));
    let r = ws.recv_within(Duration::from_secs(10)).expect("the refusal");
    assert_eq!((r["id"].as_str(), r["args"]["code"].as_str()), (Some("c1"), Some("400")), "{r}");
    // close: the console ends and replies; then the request runs.
    ws.send(&frame(json!({"close": true})));
    let r = ws.recv_within(Duration::from_secs(10)).expect("the console's reply");
    assert_eq!((r["id"].as_str(), r["name"].as_str()), (Some("c1"), Some("response")), "{r}");
    assert_eq!(r["args"]["console"]["success"], "hung up", "{r}");
    let r = ws.recv_within(Duration::from_secs(10)).expect("the request's reply");
    assert_eq!(r["id"], "l1", "{r}");
    // A frame for a console that is not open: 404, naming the id.
    let r = ws.call(&frame(json!({"input": "x"})));
    assert_eq!(r["args"]["code"], "404", "{r}");
    assert!(r["args"]["detail"].as_str().unwrap().contains("no console is open under id \"c1\""), "{r}");

    // The socket goes mid-console: the console is hung up.
    ws.send(&iocage("c2", json!({"action": "console", "jail": "j"})));
    assert_eq!(ws.recv_within(Duration::from_secs(10)).expect("its size")["args"]["data"], "size:24x80");
    ws.close();
    let gone = std::time::Instant::now();
    while s.actions.seen.lock().unwrap().iter().filter(|a| *a == "console hung up").count() < 2 {
        assert!(gone.elapsed() < Duration::from_secs(10), "the console outlived its socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Over REST: no socket, no input: nothing is attached.
    let reply = s.rest(Some(&s.write_key), &[], &json!({"action": "console", "jail": "j"}));
    assert_eq!(reply.body["args"]["console"], json!({"done": "console"}), "{}", reply.body);
}

#[test]
fn an_address_that_keeps_failing_is_locked_out_and_others_are_not() {
    let proxy: iocaged::config::Network = "127.0.0.1/32".parse().unwrap();
    let s = start("lockout", Limits { trusted_proxies: vec![proxy], ..Limits::default() });
    let from = |ip: &'static str| [("X-Forwarded-For", ip)];
    let list = json!({"action": "listjails"});
    for _ in 0..iocaged::auth::lockout::MAX_FAILURES {
        assert_eq!(s.rest(Some("wrong"), &from("192.0.2.7"), &list).status, 401);
    }
    // Now even the right key is refused from there, before it is looked at.
    let r = s.rest(Some(&s.read_key), &from("192.0.2.7"), &list);
    assert_eq!(r.status, 403, "{}", r.raw);
    assert!(r.raw.contains("locked") || r.raw.contains("blocked"), "says why: {}", r.raw);
    // Whatever the client puts before the proxy's own hop changes nothing:
    // the address the proxy saw is the one counted.
    let r = s.rest(Some(&s.read_key), &from("10.9.9.9, 192.0.2.7"), &list);
    assert_eq!(r.status, 403, "{}", r.raw);
    // Another client behind the same proxy is not.
    assert_eq!(s.rest(Some(&s.read_key), &from("192.0.2.8"), &list).status, 200);
    assert_eq!(reached(&s), ["listjails"], "the locked-out address reached nothing");
}

#[test]
fn system_state_comes_from_the_service_s_pools() {
    let s = start("state", Limits::default());
    let mut ws = s.ws(&s.read_key);
    ws.send(&json!({"id": "sub", "namespace": "events", "name": "subscribe", "args": "system-state"}));
    // The reply and the state as of now, which may come first.
    let mut two: Vec<Value> = (0..2).map(|_| ws.recv_within(Duration::from_secs(10)).expect("a message")).collect();
    two.sort_by_key(|m| m["id"].as_str() != Some("sub"));
    assert_eq!(two[0]["args"]["subscribe"], "system-state", "{two:?}");
    let state = &two[1];
    assert_eq!(state["name"], "system-state", "{state}");
    assert_eq!(state["args"]["zpools"]["tank"]["health"], "ONLINE", "{state}");
}

#[test]
fn metrics_need_a_key_and_pass_promtool() {
    let s = start("metrics", Limits::default());
    let get = |key: Option<&str>| {
        let auth = key.map(|k| format!("Bearer {k}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        http_anonymous(s.addr, "GET", "/metrics", &headers, b"")
    };
    assert_eq!(get(None).status, 401);
    assert_eq!(get(Some("not-a-key")).status, 401);
    assert_eq!(s.rest(Some(&s.read_key), &[], &json!({"action": "listjails"})).status, 200);
    assert_eq!(s.rest(Some(&s.read_key), &[], &json!({"action": "startjail", "jail": "web"})).status, 403);
    let r = get(Some(&s.read_key));
    assert_eq!(r.status, 200, "{}", r.raw);
    let (head, text) = r.raw.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    for line in [
        "iocaged_requests_total{call=\"sysadm/iocage\",action=\"listjails\",outcome=\"ok\"} 1",
        "iocaged_requests_total{call=\"sysadm/iocage\",action=\"startjail\",outcome=\"403\"} 1",
        "iocaged_request_duration_seconds_count{call=\"sysadm/iocage\",action=\"listjails\"} 1",
        "iocaged_jail_memory_bytes{uuid=\"u-1\",tag=\"we\\\"b\\\\x\\ny\"} 1048576",
        "iocaged_jail_memory_limit_bytes{uuid=\"u-1\",tag=\"we\\\"b\\\\x\\ny\"} 67108864",
        "iocaged_jail_cpu_seconds_total{uuid=\"u-1\",tag=\"we\\\"b\\\\x\\ny\"} 1.5",
        "iocaged_zfs_queue_depth 4",
        "iocaged_jails_listed 1",
        "iocaged_jails_running 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    let open =
        text.lines().find_map(|l| l.strip_prefix("iocaged_connections_open ")).and_then(|n| n.parse::<u32>().ok());
    assert!(open.is_some_and(|n| n >= 1), "the scrape's own connection is open:\n{text}");
    assert!(!text.contains("iocaged_jail_processes_limit{"), "no limit, no sample:\n{text}");
    // Prometheus' own checker: the format, and its naming conventions.
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = promtool.unwrap_or_else(|e| panic!("promtool ({e}): tests/vm/setup.sh installs it"));
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The scrape itself is counted, under its own call.
    let text = get(Some(&s.read_key)).raw;
    assert!(text.contains("iocaged_requests_total{call=\"metrics\",action=\"-\",outcome=\"ok\"} 1"), "{text}");

    // At most two scrapes at once: a third is refused, not queued.
    *s.actions.scrape_delay.lock().unwrap() = Duration::from_millis(1500);
    let (addr, key) = (s.addr, s.read_key.clone());
    let scrapes: Vec<_> = (0..3)
        .map(|i| {
            let key = key.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100 * i));
                let auth = format!("Bearer {key}");
                http_anonymous(addr, "GET", "/metrics", &[("Authorization", &auth)], b"").status
            })
        })
        .collect();
    let mut statuses: Vec<u16> = scrapes.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503]);
}
