//! Parsing a request: the action it names (a protocol error when missing
//! or unknown), then the arguments of that action (an in-band error).

use serde_json::{Map, Value};

use super::args::{MAX_EXEC_TIMEOUT, flag, parse_props, parse_switches, release_name, required, seconds, side, string};
use super::{Action, Request, Shown};
use crate::iocage::error::ActionError;
use crate::runtime::console::WinSize;

/// The action a request names. `Err` is the detail of a 400.
pub fn action_of(args: &Map<String, Value>) -> Result<Action, String> {
    match args.get("action") {
        None => Err("missing \"action\"".into()),
        Some(Value::String(s)) => Action::from_name(s).ok_or_else(|| format!("unknown action {s:?}")),
        Some(_) => Err("\"action\" must be a string".into()),
    }
}

/// Parses the arguments of `action`.
pub fn parse(action: Action, args: &Map<String, Value>) -> Result<Request, ActionError> {
    Ok(match action {
        Action::GetDefaultSettings => Request::GetDefaultSettings,
        Action::ListJails => Request::ListJails,
        Action::Df => Request::Df,
        Action::GetJailSettings => {
            let jail = string(args, "jail")?.filter(|s| !s.is_empty());
            let prop = string(args, "prop")?.filter(|s| !s.is_empty());
            let all_jails = match string(args, "switches")?.as_deref().map(str::trim) {
                None | Some("") => false,
                Some("-r") => true,
                Some(other) => {
                    return Err(ActionError::BadArgument {
                        key: "switches",
                        reason: format!("{other:?} is not supported (only \"-r\")"),
                    });
                }
            };
            match (&jail, &prop, all_jails) {
                (None, _, false) => return Err(ActionError::MissingKeys(vec!["jail"])),
                (_, None, true) => return Err(ActionError::MissingKeys(vec!["prop"])),
                _ => {}
            }
            Request::GetJailSettings { jail, prop, all_jails }
        }
        Action::ActivatePool => Request::ActivatePool { pool: string(args, "pool")?.filter(|s| !s.is_empty()) },
        Action::DeactivatePool => Request::DeactivatePool { pool: required(args, "pool")? },
        Action::CreateJail => {
            if !args.contains_key("props") && !args.contains_key("switches") {
                return Err(ActionError::MissingKeys(vec!["props"]));
            }
            let raw_props = string(args, "props")?.unwrap_or_default();
            let raw_switches = string(args, "switches")?.unwrap_or_default();
            Request::CreateJail {
                props: parse_props(&raw_props)?,
                kind: parse_switches(&raw_switches)?,
                raw_props,
                raw_switches,
            }
        }
        Action::CloneJail => {
            let jail = required(args, "jail")?;
            let raw_props = string(args, "props")?.unwrap_or_default();
            Request::CloneJail { jail, props: parse_props(&raw_props)?, raw_props }
        }
        Action::DestroyJail => Request::DestroyJail { jail: required(args, "jail")? },
        Action::CleanJails => Request::CleanJails,
        Action::CleanReleases => Request::CleanReleases,
        Action::CleanTemplates => Request::CleanTemplates,
        Action::CleanAll => Request::CleanAll,
        Action::ListReleases => Request::ListReleases { remote: flag(args, "remote")? },
        Action::DestroyRelease => Request::DestroyRelease { release: release_name(args)? },
        Action::FetchRelease => {
            let release = release_name(args)?;
            let lib32 = flag(args, "lib32")?;
            let direct = match (string(args, "url")?, string(args, "sha256")?) {
                (None, None) => None,
                (Some(url), Some(sha)) => {
                    crate::iocage::download::Url::parse(&url)
                        .map_err(|e| ActionError::BadArgument { key: "url", reason: e.to_string() })?;
                    let sha = crate::iocage::manifest::unhex32(&sha).ok_or_else(|| ActionError::BadArgument {
                        key: "sha256",
                        reason: "it must be a SHA-256 written as 64 hex digits".into(),
                    })?;
                    Some((url, sha))
                }
                (Some(_), None) => return Err(ActionError::MissingKeys(vec!["sha256"])),
                (None, Some(_)) => return Err(ActionError::MissingKeys(vec!["url"])),
            };
            if lib32 && direct.is_some() {
                return Err(ActionError::BadArgument {
                    key: "lib32",
                    reason: "lib32 is a set of the mirror's; a tarball by url has none".into(),
                });
            }
            Request::FetchRelease(crate::iocage::fetch::Wanted { release, lib32, direct })
        }
        Action::Console => Request::Console {
            jail: required(args, "jail")?,
            user: string(args, "user")?.filter(|u| !u.is_empty()).unwrap_or_else(|| "root".into()),
            size: WinSize {
                rows: side(args, "rows", WinSize::DEFAULT.rows)?,
                cols: side(args, "cols", WinSize::DEFAULT.cols)?,
            },
            io: None,
        },
        Action::StartJail => Request::StartJail { jail: required(args, "jail")? },
        Action::StopJail => Request::StopJail { jail: required(args, "jail")? },
        Action::CapJail => Request::CapJail { jail: required(args, "jail")? },
        Action::ExecJail => {
            let missing: Vec<&'static str> = ["jail", "user", "command"]
                .into_iter()
                .filter(|k| matches!(required(args, k), Err(ActionError::MissingKeys(_))))
                .collect();
            if !missing.is_empty() {
                return Err(ActionError::MissingKeys(missing));
            }
            let output = match string(args, "output")?.as_deref() {
                None | Some("" | "lines") => Shown::Lines,
                Some("lossless") => Shown::Lossless,
                Some("stream") => Shown::Stream(None),
                Some(other) => {
                    return Err(ActionError::BadArgument {
                        key: "output",
                        reason: format!("{other:?} is not supported (\"lines\", \"lossless\" or \"stream\")"),
                    });
                }
            };
            Request::ExecJail {
                jail: required(args, "jail")?,
                user: required(args, "user")?,
                command: required(args, "command")?,
                output,
                timeout: seconds(args, "timeout", MAX_EXEC_TIMEOUT)?,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iocage::request::CreateKind;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_console_s_user_and_size_have_defaults_and_bounds() {
        let c = |v: Value| parse(Action::Console, &args(v));
        assert_eq!(
            c(json!({"jail": "j"})),
            Ok(Request::Console { jail: "j".into(), user: "root".into(), size: WinSize::DEFAULT, io: None })
        );
        let Ok(Request::Console { user, size, .. }) =
            c(json!({"jail": "j", "user": "alice", "rows": 40, "cols": 1000}))
        else {
            panic!("not parsed")
        };
        assert_eq!((user.as_str(), size), ("alice", WinSize { rows: 40, cols: 1000 }));
        for (v, key) in [(json!(0), "rows"), (json!("40"), "rows"), (json!(1001), "rows"), (json!(-1), "rows")] {
            let e = c(json!({"jail": "j", key: v})).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("a number from 1 to 1000"), "{e}");
        }
        assert!(matches!(c(json!({"user": "root"})), Err(ActionError::MissingKeys(k)) if k == ["jail"]));
    }

    #[test]
    fn action_names_round_trip_and_are_case_sensitive() {
        for a in Action::ALL {
            assert_eq!(Action::from_name(a.name()), Some(a));
        }
        assert_eq!(Action::from_name("ListJails"), None);
        assert!(action_of(&args(json!({}))).unwrap_err().contains("missing"));
        assert!(action_of(&args(json!({"action": "nope"}))).unwrap_err().contains("nope"));
        assert!(action_of(&args(json!({"action": 3}))).is_err());
    }

    #[test]
    fn destroyrelease_takes_a_release_name_only() {
        let p = |v| parse(Action::DestroyRelease, &args(v));
        assert_eq!(
            p(json!({"release": "14.2-RELEASE"})),
            Ok(Request::DestroyRelease { release: "14.2-RELEASE".into() })
        );
        assert_eq!(p(json!({})), Err(ActionError::MissingKeys(vec!["release"])));
        for bad in ["../jails", "a/b", "x y", ""] {
            assert!(p(json!({"release": bad})).is_err(), "{bad:?}");
        }
        assert_eq!(parse(Action::ListReleases, &args(json!({}))), Ok(Request::ListReleases { remote: false }));
        assert_eq!(
            parse(Action::ListReleases, &args(json!({"remote": true}))),
            Ok(Request::ListReleases { remote: true })
        );
        assert!(parse(Action::ListReleases, &args(json!({"remote": "yes"}))).is_err());
        assert!(!Action::ListReleases.is_write() && Action::DestroyRelease.is_write());
    }

    #[test]
    fn fetchrelease_takes_a_release_and_either_lib32_or_a_tarball_with_its_checksum() {
        let p = |v| parse(Action::FetchRelease, &args(v));
        let sha = "ab".repeat(32);
        let wanted = |lib32, direct| {
            Ok(Request::FetchRelease(crate::iocage::fetch::Wanted { release: "14.2-RELEASE".into(), lib32, direct }))
        };
        assert_eq!(p(json!({"release": "14.2-RELEASE"})), wanted(false, None));
        assert_eq!(p(json!({"release": "14.2-RELEASE", "lib32": true})), wanted(true, None));
        assert_eq!(
            p(json!({"release": "14.2-RELEASE", "url": "https://h/x.tar.xz", "sha256": sha})),
            wanted(false, Some(("https://h/x.tar.xz".into(), [0xab; 32])))
        );
        assert_eq!(p(json!({"release": "r", "url": "https://h/x"})), Err(ActionError::MissingKeys(vec!["sha256"])));
        assert_eq!(p(json!({"release": "r", "sha256": sha})), Err(ActionError::MissingKeys(vec!["url"])));
        for (bad, key) in [
            (json!({"release": "../x"}), "release"),
            (json!({"release": "r", "lib32": "yes"}), "lib32"),
            (json!({"release": "r", "url": "file:///etc/passwd", "sha256": sha}), "url"),
            (json!({"release": "r", "url": "https://u:p@h/x", "sha256": sha}), "url"),
            (json!({"release": "r", "url": "https://h/x", "sha256": "+f".repeat(32)}), "sha256"),
            (json!({"release": "r", "url": "https://h/x", "sha256": "ab"}), "sha256"),
            (json!({"release": "r", "url": "https://h/x", "sha256": sha, "lib32": true}), "lib32"),
        ] {
            match p(bad.clone()) {
                Err(ActionError::BadArgument { key: k, .. }) => assert_eq!(k, key, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(Action::FetchRelease.is_write());
    }

    #[test]
    fn getjailsettings_modes() {
        let p = |v| parse(Action::GetJailSettings, &args(v));
        assert_eq!(
            p(json!({"jail": "test", "prop": "vnet"})),
            Ok(Request::GetJailSettings { jail: Some("test".into()), prop: Some("vnet".into()), all_jails: false })
        );
        assert_eq!(
            p(json!({"switches": "-r", "prop": "vnet"})),
            Ok(Request::GetJailSettings { jail: None, prop: Some("vnet".into()), all_jails: true })
        );
        assert_eq!(
            p(json!({"jail": "test"})),
            Ok(Request::GetJailSettings { jail: Some("test".into()), prop: None, all_jails: false })
        );
        assert_eq!(p(json!({})), Err(ActionError::MissingKeys(vec!["jail"])));
        assert_eq!(p(json!({"prop": "vnet"})), Err(ActionError::MissingKeys(vec!["jail"])));
        assert_eq!(p(json!({"switches": "-r"})), Err(ActionError::MissingKeys(vec!["prop"])));
        assert!(matches!(p(json!({"switches": "-x", "prop": "a"})), Err(ActionError::BadArgument { .. })));
        assert!(matches!(p(json!({"jail": 7})), Err(ActionError::BadArgument { key: "jail", .. })));
    }

    #[test]
    fn createjail_switches() {
        let c = |sw: &str| match parse(Action::CreateJail, &args(json!({"props": "tag=a", "switches": sw}))) {
            Ok(Request::CreateJail { kind, .. }) => Ok(kind),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(c(""), Ok(CreateKind::Thick));
        assert_eq!(c("-e"), Ok(CreateKind::Empty));
        assert_eq!(c("-c"), Ok(CreateKind::Clone));
        assert_eq!(c(" -b "), Ok(CreateKind::Base));
        assert!(c("-x").is_err());
        assert!(c("-e -c").is_err());
        assert_eq!(parse(Action::CreateJail, &args(json!({}))), Err(ActionError::MissingKeys(vec!["props"])));
        assert_eq!(parse(Action::CloneJail, &args(json!({}))), Err(ActionError::MissingKeys(vec!["jail"])));
        assert_eq!(parse(Action::DestroyJail, &args(json!({"jail": ""}))), Err(ActionError::MissingKeys(vec!["jail"])));
    }

    #[test]
    fn execjail_timeouts_are_bounded() {
        let t = |v: Value| match parse(Action::ExecJail, &args(v)) {
            Ok(Request::ExecJail { timeout, .. }) => Ok(timeout.map(|d| d.as_secs())),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        let base = json!({"jail": "j", "user": "root", "command": "true"});
        assert_eq!(t(base.clone()), Ok(None));
        let with = |v: Value| {
            let mut b = base.clone();
            b["timeout"] = v;
            b
        };
        assert_eq!(t(with(json!(30))), Ok(Some(30)));
        assert_eq!(t(with(json!("45"))), Ok(Some(45)));
        for bad in [json!(0), json!(-1), json!(86_401), json!("x"), json!(1.5), json!([1]), json!(u64::MAX)] {
            assert!(matches!(t(with(bad.clone())), Err(ActionError::BadArgument { key: "timeout", .. })), "{bad}");
        }
    }

    #[test]
    fn missing_keys_are_named() {
        let err = parse(Action::DeactivatePool, &args(json!({}))).unwrap_err();
        assert_eq!(err.to_string(), "Missing required keys: pool");
    }
}
