//! Reading a request's arguments: one key as a string, a required string,
//! a number of seconds, a terminal's side, a flag or a release's name; and
//! createjail's `props` string and `switches`.

use serde_json::{Map, Value};

use super::{CreateKind, PropList};
use crate::iocage::error::ActionError;
use crate::runtime::console::WinSize;

/// The most properties one request may give (iocage has about 130).
pub const MAX_PROPS: usize = 256;

/// Splits a `props` string: whitespace separates `k=v` pairs; single or
/// double quotes group (so a value may hold spaces and `=`), and a backslash
/// takes the next character as it is.
pub fn parse_props(raw: &str) -> Result<PropList, ActionError> {
    let bad = |reason: String| ActionError::BadArgument { key: "props", reason };
    let mut tokens: Vec<String> = Vec::new();
    let mut cur: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                let next = chars.next().ok_or_else(|| bad("it ends with a lone backslash".into()))?;
                cur.get_or_insert_with(String::new).push(next);
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => tokens.extend(cur.take()),
            (None, c) => cur.get_or_insert_with(String::new).push(c),
        }
    }
    if quote.is_some() {
        return Err(bad("a quote is not closed".into()));
    }
    tokens.extend(cur.take());
    if tokens.len() > MAX_PROPS {
        return Err(bad(format!("{} properties given; at most {MAX_PROPS}", tokens.len())));
    }
    let mut out: PropList = Vec::with_capacity(tokens.len());
    let mut seen = std::collections::HashSet::with_capacity(tokens.len());
    for t in tokens {
        let (k, v) = t.split_once('=').ok_or_else(|| bad(format!("{t:?} is not of the form name=value")))?;
        if k.is_empty() {
            return Err(bad(format!("{t:?} has no property name")));
        }
        if !seen.insert(k.to_string()) {
            return Err(bad(format!("property '{k}' is given twice")));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

pub(super) fn parse_switches(raw: &str) -> Result<CreateKind, ActionError> {
    let mut kind = CreateKind::Thick;
    for s in raw.split_whitespace() {
        let k = match s {
            "-e" => CreateKind::Empty,
            "-c" => CreateKind::Clone,
            "-b" => CreateKind::Base,
            other => {
                return Err(ActionError::BadArgument {
                    key: "switches",
                    reason: format!("unknown switch {other:?} (use -e, -c or -b)"),
                });
            }
        };
        if kind != CreateKind::Thick && kind != k {
            return Err(ActionError::BadArgument { key: "switches", reason: "use only one of -e, -c and -b".into() });
        }
        kind = k;
    }
    Ok(kind)
}

pub(super) fn string(args: &Map<String, Value>, key: &'static str) -> Result<Option<String>, ActionError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ActionError::BadArgument { key, reason: "it must be a string".into() }),
    }
}

pub(super) fn required(args: &Map<String, Value>, key: &'static str) -> Result<String, ActionError> {
    match string(args, key)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ActionError::MissingKeys(vec![key])),
    }
}

/// The longest timeout a request may ask for (a day, as `exec_timeout`).
pub const MAX_EXEC_TIMEOUT: u64 = 86_400;

/// A number of seconds from 1 to `max`, as a JSON number or a string.
pub(super) fn seconds(
    args: &Map<String, Value>,
    key: &'static str,
    max: u64,
) -> Result<Option<std::time::Duration>, ActionError> {
    let bad = || ActionError::BadArgument { key, reason: format!("it must be a number of seconds from 1 to {max}") };
    let n = match args.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(bad)?,
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) => s.trim().parse::<u64>().map_err(|_| bad())?,
        Some(_) => return Err(bad()),
    };
    if !(1..=max).contains(&n) {
        return Err(bad());
    }
    Ok(Some(std::time::Duration::from_secs(n)))
}

/// A side of a terminal: a number from 1 to [`WinSize::MAX`]; `default`
/// when absent.
pub(super) fn side(args: &Map<String, Value>, key: &'static str, default: u16) -> Result<u16, ActionError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => WinSize::side(v).ok_or_else(|| ActionError::BadArgument {
            key,
            reason: format!("it must be a number from 1 to {}", WinSize::MAX),
        }),
    }
}

/// `key`: absent (false) or a JSON boolean.
pub(super) fn flag(args: &Map<String, Value>, key: &'static str) -> Result<bool, ActionError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ActionError::BadArgument { key, reason: "it must be true or false".into() }),
    }
}

/// `release`: a release's name, as createjail's `release=` takes it.
pub(super) fn release_name(args: &Map<String, Value>) -> Result<String, ActionError> {
    let release = required(args, "release")?;
    crate::iocage::props::check_format(crate::iocage::props::Format::Name, &release)
        .map_err(|expected| ActionError::BadArgument { key: "release", reason: expected.into() })?;
    Ok(release)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10,000 properties (the review's 709 KB request took 11.8 s of a
    /// worker in the old quadratic check) are refused by count, at once;
    /// the most allowed still parse.
    #[test]
    fn props_are_bounded_in_number() {
        let many: String = (0..10_000).map(|i| format!("p{i}=v ")).collect();
        let e = parse_props(&many).unwrap_err().to_string();
        assert!(e.contains("10000 properties given; at most 256"), "{e}");
        let most: String = (0..MAX_PROPS).map(|i| format!("p{i}=v ")).collect();
        assert_eq!(parse_props(&most).unwrap().len(), MAX_PROPS);
        let twice: String = (0..MAX_PROPS - 1).map(|i| format!("p{i}=v ")).collect::<String>() + "p7=w";
        assert!(parse_props(&twice).unwrap_err().to_string().contains("'p7' is given twice"));
    }

    #[test]
    fn props_strings() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        let p = |s: &str| parse_props(s);
        assert_eq!(
            p("tag=test release=10.2-RELEASE").unwrap(),
            vec![pair("tag", "test"), pair("release", "10.2-RELEASE")]
        );
        assert_eq!(
            p(r#"notes="a b=c"  exec_start='/bin/sh /etc/rc'"#).unwrap(),
            vec![pair("notes", "a b=c"), pair("exec_start", "/bin/sh /etc/rc")]
        );
        assert_eq!(p(r"notes=a\ b").unwrap(), vec![pair("notes", "a b")]);
        assert_eq!(p("  ").unwrap(), vec![]);
        assert_eq!(p("memoryuse=8G:log").unwrap(), vec![pair("memoryuse", "8G:log")]);
        for bad in ["tag", "=x", "tag=a tag=b", r#"notes="open"#, r"x=\"] {
            assert!(matches!(p(bad), Err(ActionError::BadArgument { key: "props", .. })), "{bad}");
        }
    }
}
