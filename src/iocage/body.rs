//! What an action answers, as the API sends it: a value made for the
//! request, or a reply kept between requests as JSON text made once.
//!
//! A repeated listjails answers with the reply kept for the listing (see
//! `replies::ListCache`). Kept as a value, every request copied it and
//! printed it again (in a guest's profile of 8 clients, copying was about
//! a quarter of the daemon's time); kept as its text, in the two forms the
//! transports send (compact for a WebSocket message, indented for a REST
//! body), a repeated listing is written into its envelope as it is.

use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// How deep a REST body holds an action's reply: `{"args": {"NAME": reply}}`.
/// Its indented text is made for that depth, so that written there as it is
/// it reads exactly as if the whole body had been printed at once (`api`'s
/// envelope tests hold the two to that).
pub const REST_DEPTH: usize = 2;

/// An action's reply: what goes under the action's name.
#[derive(Debug, Clone)]
pub enum Body {
    /// Made for this request.
    Made(Value),
    /// Kept between requests and shared, never copied.
    Kept(Arc<Kept>),
}

/// A reply's text in both the forms the transports send.
#[derive(Debug)]
pub struct Kept {
    compact: Box<RawValue>,
    indented: Box<RawValue>,
}

impl Kept {
    /// `value`'s texts; `None` only if it cannot be printed (it always can:
    /// a `Value`'s keys are strings).
    pub fn new(value: &Value) -> Option<Kept> {
        let compact = serde_json::value::to_raw_value(value).ok()?;
        let pretty = serde_json::to_string_pretty(value).ok()?;
        // JSON strings hold no raw line break, so every one is the
        // printer's own, followed by its indentation.
        let indented = pretty.replace('\n', &format!("\n{}", "  ".repeat(REST_DEPTH)));
        Some(Kept { compact, indented: RawValue::from_string(indented).ok()? })
    }
}

impl From<Value> for Body {
    fn from(v: Value) -> Body {
        Body::Made(v)
    }
}

/// Which transport's form a body is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// One line (a WebSocket message).
    Compact,
    /// Indented for a REST body (see [`REST_DEPTH`]).
    Indented,
}

impl Body {
    /// The action's in-band error, if it reports one (`{"error": ...}`).
    pub fn error(&self) -> Option<&str> {
        match self {
            Body::Made(v) => v.get("error")?.as_str(),
            Body::Kept(_) => None,
        }
    }

    /// The body as a value (for tests that look inside).
    #[cfg(test)]
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Body::Made(v) => v.clone(),
            Body::Kept(k) => serde_json::from_str(k.compact.get()).unwrap_or(Value::Null),
        }
    }

    /// The body, to be written by a serializer in `form`.
    pub(crate) fn written(&self, form: Form) -> Written<'_> {
        Written { body: self, form }
    }
}

/// A body to be written in one transport's form ([`Body::written`]); the
/// form must be the printer's (compact text in a pretty body, or the
/// reverse, is valid JSON spaced wrongly).
pub(crate) struct Written<'a> {
    body: &'a Body,
    form: Form,
}

impl Serialize for Written<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.body, self.form) {
            (Body::Made(v), _) => v.serialize(s),
            (Body::Kept(k), Form::Compact) => k.compact.serialize(s),
            (Body::Kept(k), Form::Indented) => k.indented.serialize(s),
        }
    }
}

/// `{name: body}`, the `args` of an action's reply, written in `form`.
pub(crate) struct Named<'a> {
    pub(crate) name: &'a str,
    pub(crate) body: Written<'a>,
}

impl Serialize for Named<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(self.name, &self.body)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_kept_body_is_written_as_its_value_would_be_in_both_forms() {
        let value = json!({"b": {"tag": "web", "ip4": ["10.0.0.1", "a\nb"]}, "a": {}, "c": [] });
        let (made, kept) = (Body::Made(value.clone()), Body::Kept(Arc::new(Kept::new(&value).unwrap())));
        let rest = |b: &Body| {
            let named = Named { name: "listjails", body: b.written(Form::Indented) };
            serde_json::to_string_pretty(&json!({"args": serde_json::to_value(&named).unwrap()})).unwrap()
        };
        // The REST body printed whole from the value, against the kept text
        // written into it as it is.
        let kept_rest = {
            let named = Named { name: "listjails", body: kept.written(Form::Indented) };
            let mut out = Vec::new();
            let mut ser = serde_json::Serializer::pretty(&mut out);
            let mut map = ser.serialize_map(Some(1)).unwrap();
            map.serialize_entry("args", &named).unwrap();
            SerializeMap::end(map).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(kept_rest, rest(&made));
        let ws =
            |b: &Body| serde_json::to_string(&Named { name: "listjails", body: b.written(Form::Compact) }).unwrap();
        assert_eq!(ws(&kept), ws(&made));
        assert_eq!(kept.to_value(), value);
        assert_eq!((kept.error(), Body::from(json!({"error": "no"})).error()), (None, Some("no")));
    }
}
