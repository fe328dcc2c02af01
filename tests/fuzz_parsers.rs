//! Property-based fuzzing (proptest) of everything that reads client input
//! before an action runs: the WebSocket and REST envelopes, the
//! Authorization header, action and argument parsing, `props` strings and
//! the property validators. Inputs are arbitrary JSON, arbitrary bytes, and
//! the API document's own requests with bytes flipped, inserted or cut.
//! The property: nothing panics, and what parses is well-formed. A fixed
//! number of cases keeps the run bounded (a few seconds).

#[path = "rig/seed.rs"]
#[allow(dead_code)]
mod seed;

use proptest::prelude::*;
use serde_json::{Map, Value};

use iocaged::api::auth::parse_authorization;
use iocaged::api::envelope::{parse_rest, parse_ws, ws_error};
use iocaged::iocage::props::{CATALOGUE, validate_client_value};
use iocaged::iocage::request::{self, Action};

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(vec!["action", "listjails", "getjailsettings", "-r", "all", "tag=x", "sysadm", "iocage"])
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "id",
                        "name",
                        "namespace",
                        "args",
                        "action",
                        "jail",
                        "prop",
                        "switches",
                        "props",
                        "pool",
                        "user",
                        "command",
                        "token",
                        "username",
                        "password",
                        "x",
                    ]),
                    inner
                ),
                0..8
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// The document's requests as text, to mutate.
fn seed_requests() -> Vec<String> {
    seed::examples().into_iter().map(|e| e.request.to_string()).collect()
}

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (prop::sample::select(seed_requests()), prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8))
        .prop_map(|(text, edits)| {
            let mut b = text.into_bytes();
            for (pos, byte, kind) in edits {
                let i = if b.is_empty() { 0 } else { pos % b.len() };
                match kind {
                    0 if !b.is_empty() => b[i] = byte,
                    1 => b.insert(i, byte),
                    _ if !b.is_empty() => {
                        b.remove(i);
                    }
                    _ => {}
                }
            }
            b
        })
}

/// What the API does with a request's args, short of running the action.
fn exercise_args(args: &Map<String, Value>) {
    if let Ok(action) = request::action_of(args) {
        let _ = request::parse(action, args);
    }
    for a in Action::ALL {
        let _ = request::parse(a, args);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn websocket_envelope_never_panics(v in json()) {
        let text = v.to_string();
        match parse_ws(&text) {
            Ok(call) => {
                prop_assert!(!call.namespace.is_empty() && !call.name.is_empty());
                exercise_args(&call.args);
            }
            Err((id, e)) => {
                let reply = ws_error(&id, &e);
                prop_assert_eq!(reply["args"]["code"].as_str(), Some("400"));
            }
        }
    }

    #[test]
    fn mutated_document_requests_never_panic(bytes in mutated()) {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(call) = parse_ws(&text) {
            exercise_args(&call.args);
        }
        if let Ok(call) = parse_rest("sysadm", "iocage", &bytes) {
            exercise_args(&call.args);
        }
    }

    #[test]
    fn rest_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), v in json()) {
        let _ = parse_rest("sysadm", "iocage", &bytes);
        if let Ok(call) = parse_rest("sysadm", "iocage", v.to_string().as_bytes()) {
            exercise_args(&call.args);
        }
    }

    #[test]
    fn authorization_headers_never_panic(s in ".{0,80}", b in prop::collection::vec(any::<u8>(), 0..60)) {
        let _ = parse_authorization(Some(&s));
        let basic = format!("Basic {}", String::from_utf8_lossy(&b));
        let _ = parse_authorization(Some(&basic));
    }

    #[test]
    fn props_strings_never_panic_and_yield_named_pairs(s in "[ a-z_=\"'\\\\0-9.:|/@#\\t\\n-]{0,80}") {
        if let Ok(pairs) = request::parse_props(&s) {
            for (k, v) in pairs {
                prop_assert!(!k.is_empty());
                let _ = validate_client_value(&k, &v);
            }
        }
    }

    #[test]
    fn validators_never_panic(i in 0..CATALOGUE.len(), v in ".{0,64}") {
        let _ = validate_client_value(CATALOGUE[i].name, &v);
    }
}
