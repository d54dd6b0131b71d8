//! The epoch clock behind plugin deadlines: one thread per engine bumps the epoch every
//! [`TICK`]; a call's deadline is a number of ticks. It stops when the engine is dropped.

use std::time::Duration;

/// Deadline granularity: a 100 ms limit is 20 ticks.
pub const TICK: Duration = Duration::from_millis(5);

pub fn start(engine: &wasmtime::Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("wyvern-wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the plugin deadline clock; plugin time limits will not fire");
    }
}

/// Ticks for a deadline of `d` (at least one).
pub fn ticks(d: Duration) -> u64 {
    (d.as_micros() / TICK.as_micros()).max(1) as u64 + 1
}
