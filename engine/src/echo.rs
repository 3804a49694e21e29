//! An echo protocol: every text or binary message goes back to its sender unchanged.
//!
//! It exists so that an outside WebSocket test suite (Autobahn|Testsuite) can drive the
//! shell's accept, handshake, read, frame, write and close paths, which a Pusher engine
//! cannot show because it never echoes. It has the [`crate::Engine`]'s shape (inputs in,
//! outputs drained) and nothing of Pusher: no `pusher:connection_established`, no timers,
//! no apps. Only a feature-gated test binary of the shell runs it.

use crate::interface::{ApiMisuse, Input, Moment, Output};
use crate::{CloseCode, ConnId, Frame};
use std::collections::{BTreeSet, VecDeque};

/// Echoes each message to its sender; answers HTTP requests with 404.
#[derive(Debug, Default)]
pub struct EchoEngine {
    open: BTreeSet<ConnId>,
    outputs: VecDeque<Output>,
    shutting_down: bool,
}

impl EchoEngine {
    /// An echo engine with no connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one input; its outputs are then drained with [`EchoEngine::poll_output`].
    pub fn handle_input(&mut self, _at: Moment, input: Input) -> Result<(), ApiMisuse> {
        match input {
            Input::Opened { conn, .. } => {
                if !self.open.insert(conn) {
                    return Err(ApiMisuse::DuplicateConnection(conn));
                }
                if self.shutting_down {
                    self.close(conn);
                }
            }
            Input::Text { conn, text } => self.echo(conn, Frame::text(&text))?,
            Input::Binary { conn, data } => self.echo(conn, Frame::binary(&data))?,
            Input::Activity { conn } => self.known(conn)?,
            Input::Oversized { conn } | Input::SlowConsumer { conn } => {
                self.known(conn)?;
                self.open.remove(&conn);
                self.outputs.push_back(Output::Close {
                    conn,
                    code: CloseCode::MESSAGE_TOO_BIG,
                    reason: "message too large".into(),
                });
            }
            Input::Closed { conn } => {
                if !self.open.remove(&conn) {
                    return Err(ApiMisuse::UnknownConnection(conn));
                }
            }
            Input::Http { req, .. } | Input::AdminPublish { req, .. } => {
                self.outputs.push_back(Output::HttpResponse {
                    req,
                    status: 404,
                    body: br#"{"error":"an echo server has no HTTP API"}"#.to_vec(),
                })
            }
            Input::Shutdown => {
                self.shutting_down = true;
                let open: Vec<ConnId> = self.open.iter().copied().collect();
                for conn in open {
                    self.close(conn);
                }
            }
            Input::Tick
            | Input::Reload(_)
            | Input::Bus(_)
            | Input::BusUp
            | Input::BusDown
            | Input::Watch { .. }
            | Input::App { .. } => {}
        }
        Ok(())
    }

    /// The next output; `Timeout(None)` once there is nothing more (no timers exist).
    pub fn poll_output(&mut self) -> Output {
        self.outputs.pop_front().unwrap_or(Output::Timeout(None))
    }

    fn known(&self, conn: ConnId) -> Result<(), ApiMisuse> {
        if self.open.contains(&conn) {
            Ok(())
        } else {
            Err(ApiMisuse::UnknownConnection(conn))
        }
    }

    fn echo(&mut self, conn: ConnId, frame: Frame) -> Result<(), ApiMisuse> {
        self.known(conn)?;
        self.outputs.push_back(Output::Send { conn, frame });
        Ok(())
    }

    fn close(&mut self, conn: ConnId) {
        self.open.remove(&conn);
        self.outputs.push_back(Output::Close {
            conn,
            code: CloseCode::GOING_AWAY,
            reason: "server shutting down".into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WsRequest;
    use std::time::Instant;

    #[allow(clippy::disallowed_methods)] // the echo engine ignores time: any instant will do
    fn at() -> Moment {
        Moment::new(Instant::now(), 0)
    }

    fn drain(engine: &mut EchoEngine) -> Vec<Output> {
        std::iter::from_fn(|| match engine.poll_output() {
            Output::Timeout(None) => None,
            output => Some(output),
        })
        .collect()
    }

    fn opened(engine: &mut EchoEngine, conn: ConnId) {
        let request = WsRequest::default();
        engine
            .handle_input(at(), Input::Opened { conn, request })
            .unwrap();
    }

    #[test]
    fn text_and_binary_come_back_to_the_sender_only() {
        let mut engine = EchoEngine::new();
        let (a, b) = (ConnId(1), ConnId(2));
        opened(&mut engine, a);
        opened(&mut engine, b);
        assert_eq!(
            drain(&mut engine),
            vec![],
            "no greeting: this is not Pusher"
        );
        let text = b"hello".to_vec();
        engine
            .handle_input(at(), Input::Text { conn: a, text })
            .unwrap();
        let data = vec![0, 255, 7];
        engine
            .handle_input(at(), Input::Binary { conn: b, data })
            .unwrap();
        assert_eq!(
            drain(&mut engine),
            vec![
                Output::Send {
                    conn: a,
                    frame: Frame::text(b"hello")
                },
                Output::Send {
                    conn: b,
                    frame: Frame::binary(&[0, 255, 7])
                },
            ]
        );
    }

    #[test]
    fn unknown_connections_are_misuse_and_closed_ones_are_forgotten() {
        let mut engine = EchoEngine::new();
        let conn = ConnId(3);
        let text = b"x".to_vec();
        assert_eq!(
            engine.handle_input(at(), Input::Text { conn, text }),
            Err(ApiMisuse::UnknownConnection(conn))
        );
        opened(&mut engine, conn);
        let request = WsRequest::default();
        assert_eq!(
            engine.handle_input(at(), Input::Opened { conn, request }),
            Err(ApiMisuse::DuplicateConnection(conn))
        );
        engine.handle_input(at(), Input::Closed { conn }).unwrap();
        assert_eq!(
            engine.handle_input(at(), Input::Activity { conn }),
            Err(ApiMisuse::UnknownConnection(conn))
        );
    }

    #[test]
    fn oversized_closes_with_1009_and_shutdown_with_1001() {
        let mut engine = EchoEngine::new();
        let (a, b) = (ConnId(4), ConnId(5));
        opened(&mut engine, a);
        opened(&mut engine, b);
        engine
            .handle_input(at(), Input::Oversized { conn: a })
            .unwrap();
        engine.handle_input(at(), Input::Shutdown).unwrap();
        let codes: Vec<_> = drain(&mut engine)
            .into_iter()
            .map(|output| match output {
                Output::Close { conn, code, .. } => (conn, code),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            codes,
            vec![(a, CloseCode::MESSAGE_TOO_BIG), (b, CloseCode::GOING_AWAY)]
        );
        // Opened during the shutdown: closed at once.
        let c = ConnId(6);
        opened(&mut engine, c);
        assert!(matches!(
            drain(&mut engine)[..],
            [Output::Close { conn, code: CloseCode::GOING_AWAY, .. }] if conn == c
        ));
    }

    #[test]
    fn http_requests_get_404_and_ticks_nothing() {
        let mut engine = EchoEngine::new();
        let req = crate::ReqId(9);
        let request = crate::HttpRequest::default();
        engine
            .handle_input(at(), Input::Http { req, request })
            .unwrap();
        engine.handle_input(at(), Input::Tick).unwrap();
        assert!(matches!(
            drain(&mut engine)[..],
            [Output::HttpResponse { status: 404, .. }]
        ));
    }
}
