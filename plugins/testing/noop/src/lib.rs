//! Passes every message on unchanged: the per-call overhead of the plugin machinery.
use wyvern_plugin_sdk::{Message, Plugin, PluginError, export_plugin};

struct Noop;

impl Plugin for Noop {
    fn process(msg: Message) -> Result<Vec<Message>, PluginError> {
        Ok(vec![msg])
    }
}

export_plugin!(Noop);
