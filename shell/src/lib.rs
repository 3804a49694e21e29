//! The Ferrocast server shell: sockets, time, signals and configuration around the sans-IO
//! [`ferrocast_engine`]. The shell holds no protocol rules; it frames bytes and moves them.
#![warn(missing_docs)]

pub mod bus;
pub mod cli;
pub mod cluster;
pub mod conn;
pub mod door;
pub mod engine_thread;
pub mod http;
pub mod out_queue;
pub mod queue;
pub mod route;
pub mod server;
pub mod settings;
pub mod slots;
pub mod supervisor;
pub mod wake;
pub mod webhook;
pub mod webhook_delivery;
pub mod worker;

pub use server::Server;
pub use settings::{Overrides, ServerSettings, Settings};
