//! `rpc/settings`: the keys sysadm clients log in with over
//! `rpc/auth_ssl`, registered, listed and revoked by their users.

use serde_json::{Value, json};

use super::envelope::{Call, ProtocolError, Status};
use super::{Api, str_arg};
use crate::auth::client_keys::ClientKeyError;
use crate::auth::{Identity, Role};

impl Api {
    /// `rpc/settings`: sysadm clients' keys for `rpc/auth_ssl`. Anyone
    /// logged in as a system user registers, lists and revokes their own;
    /// a read/write user sees and revokes everyone's.
    pub(super) fn settings(&self, who: &Identity, call: &Call) -> Result<Value, ProtocolError> {
        let Some(store) = self.auth.client_keys() else {
            return Err(ProtocolError::new(Status::NotFound, "this server keeps no client keys"));
        };
        let failed = |e: ClientKeyError| match e {
            ClientKeyError::BadKey(_) | ClientKeyError::TooMany { .. } | ClientKeyError::NotFound { .. } => {
                ProtocolError::bad_request(e.to_string())
            }
            other => {
                tracing::error!("client keys: {other}");
                ProtocolError::new(Status::Internal, other.to_string())
            }
        };
        let action = str_arg(call, "action").unwrap_or_default();
        if who.user.starts_with("key:") && action != "list_ssl_certs" {
            return Err(ProtocolError::new(
                Status::Forbidden,
                format!("{} is an API key: log in as a user to manage that user's client keys", who.user),
            ));
        }
        match action {
            "register_ssl_cert" => {
                let Some(pub_key) = str_arg(call, "pub_key").filter(|k| !k.is_empty()) else {
                    return Err(ProtocolError::bad_request(
                        "register_ssl_cert needs \"pub_key\" (base64 of the PEM text)",
                    ));
                };
                let (nick, email) = (str_arg(call, "nickname").unwrap_or(""), str_arg(call, "email").unwrap_or(""));
                store.register(&who.user, pub_key, nick, email).map_err(failed)?;
                tracing::info!(user = %who.user, nickname = nick, "client key registered");
                Ok(json!({}))
            }
            "list_ssl_certs" => {
                let mut out = serde_json::Map::new();
                for k in store.all().map_err(failed)? {
                    if who.role == Role::ReadWrite || k.user == who.user {
                        let entry = out.entry(k.user.clone()).or_insert_with(|| json!({}));
                        if let Some(o) = entry.as_object_mut() {
                            o.insert(k.pub_key.clone(), json!(k.description()));
                        }
                    }
                }
                Ok(Value::Object(out))
            }
            "revoke_ssl_cert" => {
                let Some(pub_key) = str_arg(call, "pub_key").filter(|k| !k.is_empty()) else {
                    return Err(ProtocolError::bad_request(
                        "revoke_ssl_cert needs \"pub_key\" as list_ssl_certs gives it",
                    ));
                };
                let user = str_arg(call, "user").filter(|u| !u.is_empty()).unwrap_or(&who.user);
                if user != who.user && who.role != Role::ReadWrite {
                    return Err(ProtocolError::new(
                        Status::Forbidden,
                        format!("{} may revoke only their own keys, not {user}'s", who.user),
                    ));
                }
                store.revoke(Some(user), pub_key).map_err(failed)?;
                tracing::info!(user, by = %who.user, "client key revoked");
                Ok(json!({}))
            }
            "" => Err(ProtocolError::bad_request("rpc/settings needs \"action\"")),
            other => Err(ProtocolError::bad_request(format!(
                "no such rpc/settings action {other:?}: register_ssl_cert, list_ssl_certs or revoke_ssl_cert"
            ))),
        }
    }
}
