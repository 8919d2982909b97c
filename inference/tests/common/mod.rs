//! Helpers shared by the integration tests. Failures say what to do about them.
#![allow(dead_code)]

use std::path::PathBuf;

use atelier_inference::models::Catalog;

/// The model cache the test command fills (`ATELIER_MODELS`, else `~/.cache/atelier/models`).
pub fn models_dir() -> PathBuf {
    match std::env::var_os("ATELIER_MODELS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/atelier/models"),
    }
}

/// Path of an installed model's main file; panics with the command that installs it.
pub fn installed(name: &str) -> PathBuf {
    let catalog = Catalog::builtin().expect("built-in catalog");
    let card = catalog.get(name).expect("known model");
    card.installed_path(&models_dir()).unwrap_or_else(|e| {
        panic!("{e}\nThe tests use real models: run `atelier models pull {name}` (scripts/test.sh does this).")
    })
}
