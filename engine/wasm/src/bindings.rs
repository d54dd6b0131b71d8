//! The Rust side of `plugins/wit/plugin.wit`, generated at compile time.

wasmtime::component::bindgen!({
    path: "../../plugins/wit",
    world: "plugin",
});
