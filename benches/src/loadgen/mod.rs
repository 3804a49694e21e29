//! The end-to-end load generator: simulated Pusher clients on mio, spread over worker
//! processes; a signed HTTP publisher; scenarios; and floor servers that do only what the
//! kernel makes unavoidable, to compare the server's costs with.

pub mod args;
pub mod client;
pub mod fanout;
pub mod floor;
pub mod histogram;
pub mod http_pub;
pub mod ipc;
pub mod report;
pub mod rig;
pub mod scenarios;
pub mod spawn;
pub mod sys;
pub mod worker;
pub mod ws_client;
