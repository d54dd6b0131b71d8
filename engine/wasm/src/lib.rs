//! The WebAssembly plugin host. A plugin is a component implementing the `wyvern:plugin`
//! world (`plugins/wit/plugin.wit`); this crate loads it, refuses it if it imports anything
//! beyond the small host interface, compiles it once (cached on disk by content hash and
//! engine), keeps warm instances, and runs each call under a wall-clock deadline (epoch
//! interruption), a memory cap (`StoreLimits`) and optional fuel.
//!
//! A trap, a timeout or a limit breach fails closed: the call returns [`CallError::Failed`]
//! with the plugin's name and the reason, the instance is thrown away (the next call gets a
//! fresh one), and the caller sends the message down its error path.
//!
//! wasmtime is heavy to compile, so only this crate (and the binary) depend on it.

mod bindings;
mod cache;
mod error;
pub mod guest;
pub mod guest_js;
mod host;
mod plugin;
mod ticker;

pub use bindings::wyvern::plugin::types::{Message, PluginError};
pub use error::{CallError, LoadError};
pub use host::CodeTables;
pub use plugin::{Limits, Plugin, PluginEngine, PluginOptions};
