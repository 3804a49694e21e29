//! The bytes on the wire, without any I/O: WebSocket framing both ways, and the Pusher JSON
//! envelope the frames carry.
//!
//! [`websocket`] is the transport: the shell decodes client frames with its [`Decoder`] and
//! writes the engine's pre-encoded [`Frame`]s. The crate-private `pusher` module is the protocol's message shape,
//! built and parsed only by the engine.
//!
//! [`Decoder`]: websocket::Decoder
//! [`Frame`]: websocket::Frame

pub(crate) mod pusher;
pub mod websocket;
