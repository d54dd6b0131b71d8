//! Compiled plugins on disk: compiling a component takes milliseconds to seconds (a Python
//! plugin is 18 MB of wasm), loading the compiled artifact takes microseconds to milliseconds.
//! Keyed by the SHA-256 of the plugin's bytes and the engine's compatibility hash, so a new
//! plugin build or a new engine (wasmtime version, CPU features, settings) never loads stale
//! code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// The cache file for `bytes` under `dir`.
pub fn entry(dir: &Path, engine: &Engine, bytes: &[u8]) -> PathBuf {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    dir.join(format!("{hex}-{:016x}.cwasm", h.finish()))
}

/// The component from the cache, or compiled now (and cached; a cache that cannot be written
/// is only a slower start).
pub fn load(
    engine: &Engine,
    dir: Option<&Path>,
    bytes: &[u8],
) -> wasmtime::Result<(Component, bool)> {
    if let Some(dir) = dir {
        let path = entry(dir, engine, bytes);
        if path.exists() {
            // SAFETY: the file was written by `Component::serialize` of an engine with the same
            // compatibility hash (it is in the name), into the engine's own cache folder, and
            // renamed into place only once complete. This is the workspace's one unsafe block.
            #[allow(unsafe_code)]
            let cached = unsafe { Component::deserialize_file(engine, &path) };
            match cached {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "compiled plugin cache entry unusable; compiling again")
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        let written = component.serialize().and_then(|data| {
            use std::io::Write;
            std::fs::create_dir_all(dir)?;
            // A name of its own per writer (two processes may compile the same plugin), and
            // synced before the rename, so the entry is either whole or absent.
            let tmp =
                path.with_extension(format!("{}-{}.tmp", std::process::id(), ulid::Ulid::new()));
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        });
        if let Err(e) = written {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot cache the compiled plugin");
        }
        return Ok((component, false));
    }
    Ok((Component::new(engine, bytes)?, false))
}
