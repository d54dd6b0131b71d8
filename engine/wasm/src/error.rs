//! What can go wrong loading a plugin or calling it, each saying which plugin and why.

use std::path::PathBuf;

/// The plugin cannot be used (the route does not start).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin {path}: cannot read it: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin {name}: not a WebAssembly component of the wyvern:plugin world: {reason}")]
    Compile { name: String, reason: String },
    #[error(
        "plugin {name} imports {imports}, which the plugin world does not offer (only wyvern:plugin/host: log, lookup, now-millis, new-id; no files, network or environment)"
    )]
    ForbiddenImports { name: String, imports: String },
    #[error("plugin {name}: {reason}")]
    Link { name: String, reason: String },
    #[error("plugin {name} refused its config: {reason}")]
    Init { name: String, reason: String },
}

/// A call that did not produce messages. The first three are the plugin's own verdicts; the
/// last is the host stopping it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("plugin {plugin} rejected the message: {reason}")]
    Reject { plugin: String, reason: String },
    #[error("plugin {plugin} failed on the message: {reason}")]
    Error { plugin: String, reason: String },
    #[error("plugin {plugin} could not process the message now: {reason}")]
    Transient { plugin: String, reason: String },
    /// Trap, timeout, memory or fuel limit: the instance was discarded.
    #[error("plugin {plugin} {reason}; the message was not passed on")]
    Failed { plugin: String, reason: String },
}
