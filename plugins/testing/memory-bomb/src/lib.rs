//! Tries to take 1 GiB for a message whose body contains `BOMB`; passes the others. The
//! host's memory limit must refuse the growth.
use wyvern_plugin_sdk::{Message, Plugin, PluginError, export_plugin};

struct Bomb;

impl Plugin for Bomb {
    fn process(msg: Message) -> Result<Vec<Message>, PluginError> {
        if msg.body.windows(4).any(|w| w == b"BOMB") {
            // One request for 1 GiB, then 1 MiB at a time in case the first was refused lazily.
            let big: Vec<u8> = std::hint::black_box(Vec::with_capacity(1 << 30));
            let mut hoard: Vec<Vec<u8>> = vec![big];
            for _ in 0..1024 {
                hoard.push(std::hint::black_box(vec![7u8; 1 << 20]));
            }
            return Err(PluginError::Error(format!("kept {} MiB", hoard.len())));
        }
        Ok(vec![msg])
    }
}

export_plugin!(Bomb);
