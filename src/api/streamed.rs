//! Requests whose output comes as it is made (execjail's
//! `"output":"stream"`, the console): the chunks pushed to the socket
//! under the call's id, before the reply.

use super::Api;
use super::auth::WsTurn;
use super::envelope::{self, Call};
use crate::auth::Identity;
use crate::iocage::{ActionError, Body, Request};
use crate::runtime::stream::Outlet;

/// Chunks of streamed output waiting between the command and the socket.
const STREAM_ROOM: usize = 8;

impl Api {
    /// A request that streams its output (execjail's `"output":"stream"`):
    /// each chunk goes to `socket` as an `output` message under the call's
    /// id as it comes, all before the reply. When the socket closes or its
    /// writer gives up, the chunks' receiver goes, and with it the command
    /// (see `runtime::stream`).
    ///
    /// A console's input frames are routed to it by its id meanwhile (see
    /// [`super::console`]).
    pub(super) async fn streamed(
        &self,
        who: &Identity,
        turn: &WsTurn,
        call: &Call,
        mut req: Request,
    ) -> Result<Body, ActionError> {
        let socket = &turn.socket;
        let (outlet, mut chunks) = Outlet::channel(STREAM_ROOM);
        let inlet = match (req.is_console(), turn.take_console()) {
            (true, Some(inlet)) => {
                socket.consoles.own(&call.id, &who.user);
                Some(inlet)
            }
            (true, None) if call.id.is_null() => {
                let reason = "a console needs an id: its input frames are sent under it".into();
                return Err(ActionError::BadArgument { key: "id", reason });
            }
            (true, None) => {
                let reason = format!("a console is already open under id {} on this socket", call.id);
                return Err(ActionError::BadArgument { key: "id", reason });
            }
            (false, _) => None,
        };
        req.stream_to(outlet, inlet);
        let forward = async move {
            loop {
                let chunk = tokio::select! {
                    c = chunks.recv() => match c {
                        Some(c) => c,
                        None => return, // the command ended
                    },
                    () = socket.closed() => return,
                };
                let message = envelope::ws_output(call, &chunk);
                let pushed = tokio::select! {
                    ok = socket.push(&message) => ok,
                    () = socket.closed() => false,
                };
                if !pushed {
                    return;
                }
            }
        };
        let (body, ()) = tokio::join!(self.iocage.run(req), forward);
        body
    }
}
