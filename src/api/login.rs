//! Who a caller is: the credentials a request presents (or its socket's
//! login) checked, `rpc/auth_ssl`'s two stages, and how a refused login
//! is answered.

use serde_json::{Value, json};

use super::auth::{Credentials, Peer, WsTurn};
use super::envelope::{Call, ProtocolError, Status};
use super::{Api, str_arg};
use crate::auth::{AuthError, Identity};

/// The status and words a refused login is answered with.
pub(super) fn refused(e: AuthError) -> ProtocolError {
    match e {
        AuthError::LockedOut => ProtocolError::new(Status::Forbidden, e.to_string()),
        AuthError::NoRole(_) => ProtocolError::new(Status::Forbidden, e.to_string()),
        AuthError::Invalid => ProtocolError::new(Status::Unauthorized, e.to_string()),
        AuthError::Busy(_) => ProtocolError::new(Status::ServiceUnavailable, e.to_string()),
    }
}

impl Api {
    /// Who the caller is, from what the request (or its socket) presents.
    pub(super) async fn identify(
        &self,
        peer: Peer,
        creds: &Credentials,
        session: Option<&WsTurn>,
    ) -> Result<Identity, ProtocolError> {
        let creds = match (creds, session.and_then(WsTurn::token)) {
            (Credentials::None, Some(token)) => Credentials::Bearer(token),
            (c, _) => c.clone(),
        };
        match creds {
            Credentials::None => Err(ProtocolError::new(
                Status::Unauthorized,
                "authenticate first (rpc/auth, or an Authorization header)",
            )),
            Credentials::Malformed(why) => Err(ProtocolError::new(Status::Unauthorized, why)),
            Credentials::Basic { user, password } => {
                self.auth.password(peer.addr, &user, &password).await.map_err(refused)
            }
            Credentials::Bearer(token) => self.auth.bearer(peer.addr, &token).map(|(who, _)| who).map_err(refused),
        }
    }

    /// `rpc/auth_ssl`: with no args, a test string for this socket; with
    /// `encrypted_string`, the login of the registered key that made it.
    pub(super) async fn auth_ssl(
        &self,
        peer: Peer,
        turn: &WsTurn,
        call: &Call,
    ) -> (Result<Value, ProtocolError>, Option<String>) {
        // Either stage ends the socket's login first, as the original did.
        turn.set(None);
        let Some(encrypted) = str_arg(call, "encrypted_string") else {
            return match turn.socket.challenge.issue() {
                Ok(test) => (Ok(json!({ "test_string": test })), None),
                Err(e) => (Err(ProtocolError::new(Status::Internal, format!("cannot make a test string: {e}"))), None),
            };
        };
        let Some(test) = turn.socket.challenge.take() else {
            let why = "no test string is outstanding on this socket: ask rpc/auth_ssl with no args first \
                       (a test string is good once, for 30 s)";
            return (Err(ProtocolError::new(Status::Unauthorized, why)), None);
        };
        // One RSA operation per registered key: off the async threads.
        let (auth, encrypted) = (self.auth.clone(), encrypted.to_string());
        let checked = tokio::task::spawn_blocking(move || auth.key_login(peer.addr, &test, &encrypted)).await;
        match checked.unwrap_or(Err(AuthError::Invalid)) {
            Ok((who, token, secs)) => {
                turn.set(Some(token.clone()));
                (Ok(json!([token, secs])), Some(who.user))
            }
            Err(e) => (Err(refused(e)), None),
        }
    }
}
