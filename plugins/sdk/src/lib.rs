//! The guest side of Wyvern's plugin contract (`plugins/wit/plugin.wit`). A plugin is a type
//! implementing [`Plugin`], exported with [`export_plugin!`]:
//!
//! ```ignore
//! use wyvern_plugin_sdk::{Message, Plugin, PluginError, export_plugin};
//!
//! struct Upper;
//! impl Plugin for Upper {
//!     fn process(msg: Message) -> Result<Vec<Message>, PluginError> {
//!         Ok(vec![msg])
//!     }
//! }
//! export_plugin!(Upper);
//! ```
//!
//! The engine's own HL7v2 core is re-exported as [`hl7`] (zero-copy parsing, paths such as
//! `PID-3(*).4`, escapes, NHS numbers, edits), so a mapper reads and edits messages exactly as
//! the engine's route steps do.

pub use wyvern_hl7 as hl7;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "wyvern_plugin_sdk::bindings",
    });
}

pub mod fhir;
pub mod host;

pub use bindings::wyvern::plugin::types::{Message, PluginError};

/// What a plugin does. `configure` runs once per instance with the route's `config:` block.
pub trait Plugin {
    /// Checks and keeps the configuration; an error refuses the plugin when the route loads.
    fn configure(config: &Config) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Transforms one message: `Ok(vec![])` filters it, several messages split it.
    fn process(msg: Message) -> Result<Vec<Message>, PluginError>;
}

/// The route's `config:` block.
#[derive(Debug, Clone)]
pub struct Config(pub serde_json::Value);

impl Config {
    /// The block as a typed struct (serde), or why not.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(self.0.clone()).map_err(|e| format!("config: {e}"))
    }

    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.get(key)
    }
}

/// Helpers on the contract's message record.
impl Message {
    /// A new HL7v2 message carrying `metadata` over from `from`.
    pub fn hl7v2(body: Vec<u8>, from: &Message) -> Message {
        Message {
            content_type: "hl7v2".into(),
            body,
            metadata: from.metadata.clone(),
        }
    }

    /// The body parsed as HL7v2.
    pub fn parse_hl7(&self) -> Result<hl7::Message<'_>, PluginError> {
        hl7::Message::parse(&self.body).map_err(|e| PluginError::Reject(format!("not HL7v2: {e}")))
    }

    /// A metadata value (`id`, `route`, `control-id`, …).
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[doc(hidden)]
pub struct Adapter<P>(core::marker::PhantomData<P>);

impl<P: Plugin> bindings::Guest for Adapter<P> {
    fn configure(config: String) -> Result<(), String> {
        let value = if config.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&config).map_err(|e| format!("config is not JSON: {e}"))?
        };
        P::configure(&Config(value))
    }

    fn process(msg: Message) -> Result<Vec<Message>, PluginError> {
        P::process(msg)
    }
}

/// Exports `$plugin` (a type implementing [`Plugin`]) as the component's `plugin` world.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        type __WyvernPluginExport = $crate::Adapter<$plugin>;
        $crate::bindings::__export_world!(__WyvernPluginExport with_types_in $crate::bindings);
    };
}
