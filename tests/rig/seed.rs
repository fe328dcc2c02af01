//! The request/reply examples of the sysadm iocage API document, and the
//! normalisation that conformance comparisons apply.

use serde_json::Value;

const DOC: &str = include_str!("../fixtures/sysadm-iocage-api.readable.txt");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Rest,
    WebSocket,
}

/// One request of the document with the reply it shows for it.
#[derive(Debug, Clone)]
pub struct Example {
    pub action: String,
    pub transport: Transport,
    pub request: Value,
    pub reply: Value,
}

impl Example {
    /// The request's args (the REST body, or the WebSocket `args`).
    pub fn args(&self) -> &serde_json::Map<String, Value> {
        let v = if self.transport == Transport::WebSocket { &self.request["args"] } else { &self.request };
        v.as_object().expect("request args are an object")
    }
}

/// Every example, in document order. A reply answers the requests that
/// precede it since the previous reply (the document shows one "Response"
/// for a REST and a WebSocket request in several places).
pub fn examples() -> Vec<Example> {
    let lines: Vec<&str> = DOC.lines().collect();
    let mut out = Vec::new();
    let mut pending: Vec<(Transport, Value)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i] != "{" {
            i += 1;
            continue;
        }
        let end = (i..lines.len()).find(|&j| lines[j] == "}").expect("unterminated JSON block");
        let block: Value = serde_json::from_str(&lines[i..=end].join("\n")).expect("JSON example parses");
        i = end + 1;
        let ws_request = block.get("namespace").is_some() && block["name"] == "iocage";
        let rest_request = block.get("action").is_some();
        if ws_request || rest_request {
            let t = if ws_request { Transport::WebSocket } else { Transport::Rest };
            pending.push((t, block));
        } else {
            for (transport, request) in pending.drain(..) {
                let args = if transport == Transport::WebSocket { &request["args"] } else { &request };
                let action = args["action"].as_str().expect("action").to_string();
                out.push(Example { action, transport, request, reply: block.clone() });
            }
        }
    }
    out
}

/// Examples of one action.
pub fn of(action: &str) -> Vec<Example> {
    examples().into_iter().filter(|e| e.action == action).collect()
}

fn is_uuid(s: &str) -> bool {
    let g: Vec<&str> = s.split('-').collect();
    g.iter().map(|x| x.len()).eq([8, 4, 4, 4, 12]) && g.iter().all(|x| x.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Replaces every UUID inside `s` with `<uuid>`.
fn mask_uuids(s: &str) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < s.len() {
        if i + 36 <= s.len() && s.is_char_boundary(i + 36) && is_uuid(&s[i..i + 36]) {
            out.push_str("<uuid>");
            i += 36;
        } else {
            let c = s[i..].chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8().max(1);
        }
    }
    out
}

/// Replaces dates (`2016-01-29@14...`, `2016-02-10_20...`: a tag's
/// default, last_started) with `<date>`, wherever they stand.
fn mask_dates(s: &str) -> String {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let is_date = digits(i..i + 4)
            && b.get(i + 4) == Some(&b'-')
            && digits(i + 5..i + 7)
            && b.get(i + 7) == Some(&b'-')
            && digits(i + 8..i + 10)
            && matches!(b.get(i + 10), Some(b'@' | b'_'));
        if is_date {
            out.push_str("<date>");
            i += 11;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b':') {
                i += 1;
            }
        } else {
            let c = s[i..].chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8().max(1);
        }
    }
    out
}

fn is_size(s: &str) -> bool {
    let num = s.trim_end_matches(['B', 'K', 'M', 'G', 'T', 'P', 'E']);
    num.len() + 1 == s.len() && !num.is_empty() && num.parse::<f64>().is_ok()
}

fn is_ratio(s: &str) -> bool {
    s.strip_suffix('x').is_some_and(|n| n.contains('.') && n.parse::<f64>().is_ok())
}

/// The normalisation conformance allows, applied to a string: UUIDs, dates
/// and sizes are masked, and the original server's two parsing accidents
/// are applied to both sides (a value cut at its first colon, a leading
/// space), so that whole, clean values compare equal to the document's.
pub fn normalise_str(s: &str) -> String {
    let s = s.trim_start();
    let s = s.split(':').next().unwrap_or_default();
    if is_size(s) {
        return "<size>".into();
    }
    if is_ratio(s) {
        return "<ratio>".into();
    }
    mask_uuids(&mask_dates(s))
}

/// [`normalise_str`] over every string and object key of a JSON value.
pub fn normalise(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(normalise_str(s)),
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (normalise_str(k), normalise(v))).collect()),
        other => other.clone(),
    }
}

/// An example's reply body under its action (`args.<action>`).
pub fn body(ex: &Example) -> &Value {
    &ex.reply["args"][ex.action.as_str()]
}

fn strings(v: &Value) -> Vec<(String, String)> {
    let o = v.as_object().expect("an object of strings");
    o.iter().map(|(k, v)| (k.clone(), v.as_str().expect("a string").to_string())).collect()
}

/// Native ZFS properties the document's replies show: ZFS's own, not set
/// by a fixture.
pub const NATIVE: [&str; 9] =
    ["available", "compression", "compressratio", "dedup", "mountpoint", "origin", "quota", "reservation", "used"];

/// The properties on `.defaults` a getdefaultsettings example shows (the
/// iocage ones, which a fixture sets).
pub fn defaults_shown(ex: &Example) -> Vec<(String, String)> {
    strings(&body(ex)["defaults"]).into_iter().filter(|(k, _)| !NATIVE.contains(&k.as_str())).collect()
}

/// The jails a listjails, df or getjailsettings example shows, as
/// (UUID, iocage properties) a fixture makes for the reply to show them.
pub fn jails_shown(ex: &Example) -> Vec<(String, Vec<(String, String)>)> {
    let reply = body(ex).as_object().expect("the reply is an object");
    let prop = |j: &Value, k: &str| (k.to_string(), j[k].as_str().expect("a string").to_string());
    match ex.action.as_str() {
        "listjails" => reply
            .iter()
            .map(|(uuid, j)| (uuid.clone(), vec![prop(j, "tag"), prop(j, "type"), prop(j, "boot")]))
            .collect(),
        "df" => reply.iter().map(|(uuid, j)| (uuid.clone(), vec![prop(j, "tag")])).collect(),
        "getjailsettings" if ex.args().get("switches").is_some() => reply
            .iter()
            .map(|(uuid, j)| {
                let props = strings(j).into_iter().map(|(k, v)| if k == "TAG" { ("tag".into(), v) } else { (k, v) });
                (uuid.clone(), props.collect())
            })
            .collect(),
        "getjailsettings" => reply
            .iter()
            .map(|(query, j)| {
                let mut props: Vec<(String, String)> =
                    strings(j).into_iter().filter(|(k, _)| !NATIVE.contains(&k.as_str())).collect();
                if !props.iter().any(|(k, _)| k == "tag") {
                    props.push(("tag".into(), query.clone()));
                }
                let uuid = props
                    .iter()
                    .find(|(k, _)| k == "host_hostuuid")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| "0bf985de-ca0f-11e5-8d45-d05099728dbf".into());
                (uuid, props)
            })
            .collect(),
        other => panic!("{other}: its examples show no jails"),
    }
}

/// The request as a client sends it: the document's, with the id its
/// reply shows where the request omits it (its activatepool example).
pub fn sent(ex: &Example) -> Value {
    let mut req = ex.request.clone();
    if ex.transport == Transport::WebSocket && req.get("id").is_none() {
        req["id"] = ex.reply["id"].clone();
    }
    req
}

/// The reply the document shows, normalised, as a transport's whole
/// reply compares with it: a REST body's `args`, a WebSocket message.
pub fn expected(ex: &Example) -> Value {
    match ex.transport {
        Transport::Rest => normalise(&serde_json::json!({"args": ex.reply["args"]})),
        Transport::WebSocket => normalise(&ex.reply),
    }
}

/// Collects the examples whose reply differs from the document's and
/// fails with all of them at once (a conformance run's end).
#[derive(Default)]
pub struct Mismatches(Vec<String>);

impl Mismatches {
    /// Example `i`: `want` and `got`, both normalised.
    pub fn compare(&mut self, i: usize, ex: &Example, want: &Value, got: &Value) {
        if want != got {
            let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
            self.0.push(format!(
                "example {i} ({:?}) {}\nwant {}\ngot  {}",
                ex.transport,
                ex.request,
                pretty(want),
                pretty(got)
            ));
        }
    }

    /// Fails naming every example of `action` that differed.
    pub fn assert_none(self, action: &str, of: usize) {
        assert!(self.0.is_empty(), "{action}: {} of {of} examples differ:\n{}", self.0.len(), self.0.join("\n\n"));
    }
}

#[cfg(test)]
mod tests {
    // (In the harness-less benchmark these tests are compiled, not run.)
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalise_str("https://github.com"), "https");
        assert_eq!(normalise_str(" tank"), "tank");
        assert_eq!(normalise_str("8G:log"), "<size>");
        assert_eq!(normalise_str("2016-02-10_20"), "<date>");
        assert_eq!(normalise_str("2016-01-29@14:19:49"), "<date>");
        assert_eq!(normalise_str("1.76M"), "<size>");
        assert_eq!(normalise_str("2.27x"), "<ratio>");
        assert_eq!(normalise_str("0"), "0");
        assert_eq!(normalise_str("iocage/jails/9b7f1420-d065-11e5-8209-d05099728dbf/data"), "iocage/jails/<uuid>/data");
        // The document's reply, cut at its colon, and a whole value compare equal.
        assert_eq!(
            normalise_str(" 89e78032-cfba-11e5-8209-d05099728dbf (2016-02-09@23"),
            normalise_str("9b7f1420-d065-11e5-8209-d05099728dbf (2026-11-29@00:21:33)")
        );
    }
}
