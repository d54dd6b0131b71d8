//! Panics (a wasm trap) for a message whose body contains `TRAP`; passes the others. The
//! message must take the error path and never be delivered.
use wyvern_plugin_sdk::{Message, Plugin, PluginError, export_plugin};

struct Trap;

impl Plugin for Trap {
    fn process(msg: Message) -> Result<Vec<Message>, PluginError> {
        if msg.body.windows(4).any(|w| w == b"TRAP") {
            panic!("this plugin traps on purpose");
        }
        Ok(vec![msg])
    }
}

export_plugin!(Trap);
