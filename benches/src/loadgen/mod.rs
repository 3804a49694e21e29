//! The end-to-end load generator: simulated Pusher clients on mio, spread over worker
//! processes; a signed HTTP publisher; scenarios; and floor servers that do only what the
//! kernel makes unavoidable, to compare the server's costs with.

pub(crate) mod app_store;
pub(crate) mod args;
pub(crate) mod client;
pub(crate) mod cluster;
pub(crate) mod cluster_scenarios;
pub(crate) mod fanout;
pub(crate) mod figures;
pub(crate) mod floor;
pub(crate) mod floor_http;
pub(crate) mod histogram;
pub(crate) mod http_pub;
pub(crate) mod ipc;
pub(crate) mod pipeline_pub;
pub(crate) mod plot;
pub(crate) mod report;
pub(crate) mod rig;
pub(crate) mod scenarios;
pub(crate) mod soak;
pub(crate) mod spawn;
pub(crate) mod sustained;
pub(crate) mod sys;
pub(crate) mod tls;
pub(crate) mod worker;
pub(crate) mod ws_client;
