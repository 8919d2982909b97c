//! Model files that ship inside the `atelier` binary: Atelier's own weights, trained by this
//! project and committed under `models/` (no registry carries them, and they must work offline).

/// The bytes of a bundled model file, if `model`'s card is bundled and has this file.
pub(crate) fn file(model: &str, name: &str) -> Option<&'static [u8]> {
    match (model, name) {
        ("atelier-tiny", "model.safetensors") => Some(include_bytes!(
            "../../../models/atelier-tiny/model.safetensors"
        )),
        ("atelier-tiny", "config.json") => {
            Some(include_bytes!("../../../models/atelier-tiny/config.json"))
        }
        _ => None,
    }
}
