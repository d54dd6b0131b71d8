//! Never returns for a message whose body contains `LOOP`; passes the others. The host must
//! stop it at its deadline and keep the route flowing.
use wyvern_plugin_sdk::{Message, Plugin, PluginError, export_plugin};

struct Spin;

impl Plugin for Spin {
    fn process(msg: Message) -> Result<Vec<Message>, PluginError> {
        if msg.body.windows(4).any(|w| w == b"LOOP") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Ok(vec![msg])
    }
}

export_plugin!(Spin);
