//! One validated `Settings` struct, layered: built-in defaults (the commented example file) →
//! settings file → `ATELIER__SECTION__KEY` environment variables.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::{Deserialize, Serialize};

/// The built-in defaults, which double as the documented example file.
pub const DEFAULTS: &str = include_str!("../../atelier.example.toml");

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A layer could not be read or a value has the wrong type or an unknown key.
    #[error("invalid settings: {0}")]
    Parse(String),
    /// A value is out of its allowed range.
    #[error("invalid setting `{key}` = {value}: {allowed}")]
    Invalid {
        key: &'static str,
        value: String,
        allowed: String,
    },
    /// No home directory to put the data or model directories under.
    #[error("cannot find a home directory; set ATELIER_HOME and ATELIER_MODELS")]
    NoHome,
}

/// Which chat backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmBackend {
    /// llama.cpp in process.
    Llama,
    /// An OpenAI-compatible server.
    Openai,
}

/// Where model pulls take their bytes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSource {
    /// Registry packages (pip).
    Registry,
    /// The Hugging Face Hub.
    Huggingface,
}

/// `[llm.openai]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSettings {
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    /// How structured answers are asked for: native tool calling or `response_format`.
    pub structured: atelier_inference::llm::StructuredOutput,
}

/// `[llm]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    pub backend: LlmBackend,
    pub model: String,
    pub context_size: u32,
    pub parallel: usize,
    pub threads: u32,
    pub threads_batch: u32,
    pub batch_size: u32,
    pub gpu_layers: u32,
    pub openai: OpenAiSettings,
}

/// `[models]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsSettings {
    pub python: String,
    pub npm: String,
    pub index_url: String,
    pub source: ModelSource,
    pub hf_endpoint: String,
    pub hf_token: String,
}

/// `[images]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesSettings {
    pub openai: atelier_inference::diffusion::openai::OpenAiImagesConfig,
}

/// `[critique]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CritiqueSettings {
    /// CLIP checkpoint for the alignment check: a directory, `hf:OWNER/REPO[@REVISION]`, or
    /// empty for none.
    pub clip: String,
    /// CLIP cosine similarity an image needs to pass.
    pub alignment_threshold: f32,
}

/// Where the CLIP weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClipSource {
    /// A checkpoint directory on this machine.
    Dir(PathBuf),
    /// A Hugging Face repository, fetched when online.
    Hub {
        repo: String,
        revision: Option<String>,
    },
}

impl CritiqueSettings {
    /// The configured CLIP source, `None` when none is.
    pub fn clip_source(&self) -> Result<Option<ClipSource>, SettingsError> {
        let value = self.clip.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let Some(hub) = value.strip_prefix("hf:") else {
            return Ok(Some(ClipSource::Dir(PathBuf::from(value))));
        };
        let (repo, revision) = match hub.split_once('@') {
            Some((repo, rev)) => (repo, Some(rev)),
            None => (hub, None),
        };
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let valid = match repo.split_once('/') {
            Some((owner, name)) => plain(owner) && plain(name),
            None => false,
        } && revision.is_none_or(plain);
        if !valid {
            return Err(SettingsError::Invalid {
                key: "critique.clip",
                value: format!("{value:?}"),
                allowed: "must be a directory or `hf:OWNER/REPO` with an optional `@REVISION` \
                          (letters, digits, `-`, `_`, `.`)"
                    .into(),
            });
        }
        Ok(Some(ClipSource::Hub {
            repo: repo.to_string(),
            revision: revision.map(str::to_string),
        }))
    }
}

/// Which embedder to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedBackend {
    /// all-MiniLM-L6-v2 in process (on `embed.engine`).
    Minilm,
    /// An OpenAI-compatible `/embeddings` endpoint.
    Openai,
}

/// Which runtime computes all-MiniLM-L6-v2 (`embed.engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MinilmEngine {
    /// llama.cpp's BERT (ggml CPU kernels) with 8-bit weights: fastest, vectors within a
    /// cosine of 0.998 of the f32 ones; the default.
    #[serde(rename = "llama-q8")]
    LlamaQ8,
    /// llama.cpp's BERT with f32 weights.
    Llama,
    /// candle's BERT.
    Candle,
}

impl From<MinilmEngine> for atelier_inference::embed::EmbedEngine {
    fn from(engine: MinilmEngine) -> Self {
        match engine {
            MinilmEngine::Llama => Self::Llama,
            MinilmEngine::LlamaQ8 => Self::LlamaQ8,
            MinilmEngine::Candle => Self::Candle,
        }
    }
}

/// `[embed.openai]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiEmbedSettings {
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub dimensions: usize,
}

/// `[embed]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedSettings {
    pub backend: EmbedBackend,
    pub engine: MinilmEngine,
    pub openai: OpenAiEmbedSettings,
}

/// Where brand guideline vectors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrandStoreKind {
    /// qdrant-edge under the data directory.
    Embedded,
    /// A Qdrant server or cluster.
    Server,
}

/// `[brands.qdrant]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QdrantSettings {
    pub url: String,
    pub api_key: String,
    pub collection: String,
    pub timeout_seconds: u64,
}

/// `[brands]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandsSettings {
    pub store: BrandStoreKind,
    pub default_tenant: String,
    pub qdrant: QdrantSettings,
}

/// `[database]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://…` or `postgres://…`; empty: an SQLite file in the data directory.
    pub url: String,
    pub max_connections: u32,
}

/// All settings, validated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub llm: LlmSettings,
    pub models: ModelsSettings,
    pub embed: EmbedSettings,
    pub brands: BrandsSettings,
    pub database: DatabaseSettings,
    pub images: ImagesSettings,
    pub critique: CritiqueSettings,
    pub agent: atelier_agent::AgentConfig,
    pub server: crate::server::ServerConfig,
    /// The data directory; from `ATELIER_HOME`, not from the layers.
    #[serde(skip)]
    pub home: PathBuf,
    /// The model cache; from `ATELIER_MODELS`, not from the layers.
    #[serde(skip)]
    pub models_dir: PathBuf,
}

/// The process environment the settings depend on, passed in so tests need not touch it.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `ATELIER_HOME`.
    pub home: Option<PathBuf>,
    /// `ATELIER_MODELS`.
    pub models: Option<PathBuf>,
    /// `ATELIER_CONFIG`.
    pub config: Option<PathBuf>,
    /// All `ATELIER__…` variables as (name, value).
    pub overrides: Vec<(String, String)>,
}

impl Environment {
    /// Read the real process environment.
    pub fn from_process() -> Self {
        let path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Environment {
            home: path("ATELIER_HOME"),
            models: path("ATELIER_MODELS"),
            config: path("ATELIER_CONFIG"),
            overrides: std::env::vars()
                .filter(|(k, _)| k.starts_with("ATELIER__"))
                .collect(),
        }
    }
}

impl Settings {
    /// Load the layers: defaults, then `file` (or `ATELIER_CONFIG`, or `./atelier.toml` when
    /// present), then `ATELIER__…` variables; then validate.
    pub fn load(file: Option<&Path>, env: &Environment) -> Result<Self, SettingsError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env.config.clone())
            .or_else(|| {
                let local = PathBuf::from("atelier.toml");
                local.exists().then_some(local)
            });
        if let Some(file) = file {
            if !file.exists() {
                return Err(SettingsError::Parse(format!(
                    "settings file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let figment = figment.merge(EnvOverrides(env.overrides.clone()));
        let mut settings: Settings = figment
            .extract()
            .map_err(|e| SettingsError::Parse(describe(e)))?;
        settings.home = match &env.home {
            Some(home) => home.clone(),
            None => directories::ProjectDirs::from("", "", "atelier")
                .ok_or(SettingsError::NoHome)?
                .data_dir()
                .to_path_buf(),
        };
        settings.models_dir = match &env.models {
            Some(models) => models.clone(),
            None => directories::BaseDirs::new()
                .ok_or(SettingsError::NoHome)?
                .home_dir()
                .join(".cache/atelier/models"),
        };
        settings.validate()?;
        Ok(settings)
    }

    /// The metadata database the settings name (`database.url`, or the SQLite file
    /// `atelier.db` in the data directory).
    pub fn database_config(&self) -> atelier_platform::DatabaseConfig {
        let url = self.database.url.trim();
        let url = if url.is_empty() {
            format!("sqlite://{}", self.home.join("atelier.db").display())
        } else {
            url.to_string()
        };
        atelier_platform::DatabaseConfig {
            max_connections: self.database.max_connections,
            ..atelier_platform::DatabaseConfig::new(url)
        }
    }

    /// Check every value against its allowed range.
    pub fn validate(&self) -> Result<(), SettingsError> {
        fn range<T: PartialOrd + std::fmt::Display>(
            key: &'static str,
            value: T,
            lo: T,
            hi: T,
        ) -> Result<(), SettingsError> {
            if value < lo || value > hi {
                return Err(SettingsError::Invalid {
                    key,
                    value: value.to_string(),
                    allowed: format!("must be in {lo}..={hi}"),
                });
            }
            Ok(())
        }
        let llm = &self.llm;
        range("llm.context_size", llm.context_size, 256, 131_072)?;
        range(
            "database.max_connections",
            self.database.max_connections,
            1,
            atelier_platform::db::MAX_CONNECTIONS,
        )?;
        let url = self.database.url.trim();
        if !(url.is_empty()
            || url.starts_with("sqlite://")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(SettingsError::Invalid {
                key: "database.url",
                value: atelier_platform::db::redact(url),
                allowed: "must be empty (an SQLite file in the data directory), `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`".into(),
            });
        }
        range("llm.parallel", llm.parallel, 1, 64)?;
        range("llm.threads", llm.threads, 1, 256)?;
        range("llm.threads_batch", llm.threads_batch, 1, 256)?;
        range("llm.batch_size", llm.batch_size, 16, 8192)?;
        range("llm.gpu_layers", llm.gpu_layers, 0, 1000)?;
        if llm.model.trim().is_empty() {
            return Err(SettingsError::Invalid {
                key: "llm.model",
                value: "\"\"".into(),
                allowed: "must name a model; see `atelier models list`".into(),
            });
        }
        range(
            "embed.openai.dimensions",
            self.embed.openai.dimensions,
            1,
            8192,
        )?;
        range(
            "brands.qdrant.timeout_seconds",
            self.brands.qdrant.timeout_seconds,
            1,
            600,
        )?;
        if atelier_tools::brand::Scope::new(&self.brands.default_tenant, "x").is_err() {
            return Err(SettingsError::Invalid {
                key: "brands.default_tenant",
                value: format!("{:?}", self.brands.default_tenant),
                allowed: "must be 1-64 letters, digits, `-`, `_` or `.`".into(),
            });
        }
        let threshold = self.critique.alignment_threshold;
        if !(-1.0..=1.0).contains(&threshold) {
            return Err(SettingsError::Invalid {
                key: "critique.alignment_threshold",
                value: threshold.to_string(),
                allowed: "must be a cosine similarity in -1..=1".into(),
            });
        }
        self.critique.clip_source()?;
        self.agent.validate().map_err(|e| match e {
            atelier_agent::Error::InvalidRequest { field, reason } => {
                SettingsError::Parse(format!("`agent.{field}`: {reason}"))
            }
            other => SettingsError::Parse(other.to_string()),
        })?;
        self.server
            .validate()
            .map_err(|(key, value, allowed)| SettingsError::Invalid {
                key,
                value,
                allowed,
            })?;
        if self.brands.qdrant.collection.trim().is_empty() {
            return Err(SettingsError::Invalid {
                key: "brands.qdrant.collection",
                value: "\"\"".into(),
                allowed: "must name a collection".into(),
            });
        }
        for (key, url) in [
            ("llm.openai.base_url", &llm.openai.base_url),
            ("embed.openai.base_url", &self.embed.openai.base_url),
            ("brands.qdrant.url", &self.brands.qdrant.url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(SettingsError::Invalid {
                    key,
                    value: format!("{url:?}"),
                    allowed: "must be an http:// or https:// URL".into(),
                });
            }
        }
        if self.models.python.trim().is_empty() {
            return Err(SettingsError::Invalid {
                key: "models.python",
                value: "\"\"".into(),
                allowed: "must name a Python interpreter".into(),
            });
        }
        Ok(())
    }

    /// Fetcher config derived from these settings.
    pub fn fetcher_config(&self) -> atelier_inference::models::FetcherConfig {
        let non_empty = |s: &str| (!s.trim().is_empty()).then(|| s.to_string());
        atelier_inference::models::FetcherConfig {
            cache_dir: self.models_dir.clone(),
            python: self.models.python.clone(),
            npm: self.models.npm.clone(),
            index_url: non_empty(&self.models.index_url),
            hf_endpoint: non_empty(&self.models.hf_endpoint),
            hf_token: non_empty(&self.models.hf_token),
        }
    }
}

/// The `ATELIER__…` variables as a figment provider; errors name the variable.
struct EnvOverrides(Vec<(String, String)>);

impl figment::Provider for EnvOverrides {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment variable")
            .interpolater(|_, keys| format!("ATELIER__{}", keys.join("__").to_ascii_uppercase()))
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut dict = figment::value::Dict::new();
        for (name, value) in &self.0 {
            let Some(rest) = name.strip_prefix("ATELIER__") else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            let value = value
                .parse::<figment::value::Value>()
                .unwrap_or_else(|_| figment::value::Value::from(value.clone()));
            insert_path(&mut dict, &path, value);
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

fn insert_path(dict: &mut figment::value::Dict, path: &[String], value: figment::value::Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| figment::value::Value::from(figment::value::Dict::new()));
            if let figment::value::Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            } else {
                let mut inner = figment::value::Dict::new();
                insert_path(&mut inner, rest, value);
                *entry = figment::value::Value::from(inner);
            }
        }
    }
}

fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Environment {
        Environment {
            home: Some("/tmp/atelier-home".into()),
            models: Some("/tmp/atelier-models".into()),
            config: None,
            overrides: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn built_in_defaults_parse_and_validate() {
        let settings = Settings::load(None, &env(&[])).unwrap();
        assert_eq!(settings.llm.backend, LlmBackend::Llama);
        assert_eq!(settings.llm.model, "qwen2.5-coder-0.5b-instruct");
        assert_eq!(settings.llm.threads, 1);
        assert_eq!(settings.models_dir, PathBuf::from("/tmp/atelier-models"));
        assert_eq!(settings.home, PathBuf::from("/tmp/atelier-home"));
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("atelier.toml");
        std::fs::write(&file, "[llm]\nthreads = 2\nparallel = 3\n").unwrap();
        let settings =
            Settings::load(Some(&file), &env(&[("ATELIER__LLM__THREADS", "4")])).unwrap();
        assert_eq!(settings.llm.threads, 4, "environment wins over the file");
        assert_eq!(settings.llm.parallel, 3, "the file wins over the defaults");
        let settings = Settings::load(
            None,
            &env(&[("ATELIER__LLM__OPENAI__BASE_URL", "http://127.0.0.1:9/v1")]),
        )
        .unwrap();
        assert_eq!(settings.llm.openai.base_url, "http://127.0.0.1:9/v1");
    }

    #[test]
    fn out_of_range_value_names_key_value_and_range() {
        let err = Settings::load(None, &env(&[("ATELIER__LLM__THREADS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("llm.threads") && err.contains('0') && err.contains("1..=256"),
            "{err}"
        );
    }

    #[test]
    fn clip_is_a_directory_or_a_hub_repository_and_bad_values_are_named() {
        let clip = |value: &str| {
            Settings::load(None, &env(&[("ATELIER__CRITIQUE__CLIP", value)]))
                .map(|s| s.critique.clip_source().unwrap())
        };
        assert_eq!(
            Settings::load(None, &env(&[]))
                .unwrap()
                .critique
                .clip_source()
                .unwrap(),
            None
        );
        assert_eq!(
            clip("/models/clip").unwrap(),
            Some(ClipSource::Dir("/models/clip".into()))
        );
        assert_eq!(
            clip("hf:openai/clip-vit-base-patch32@main").unwrap(),
            Some(ClipSource::Hub {
                repo: "openai/clip-vit-base-patch32".into(),
                revision: Some("main".into())
            })
        );
        for bad in ["hf:clip", "hf:a/b/c", "hf:openai/clip@", "hf:/x"] {
            let err = clip(bad).unwrap_err().to_string();
            assert!(
                err.contains("critique.clip") && err.contains("hf:OWNER/REPO"),
                "{err}"
            );
        }
        let err = Settings::load(
            None,
            &env(&[("ATELIER__CRITIQUE__ALIGNMENT_THRESHOLD", "1.5")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("critique.alignment_threshold") && err.contains("-1..=1"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_names_the_variable() {
        let err = Settings::load(None, &env(&[("ATELIER__LLM__THREADS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ATELIER__LLM__THREADS"), "{err}");
        assert!(err.contains("many"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("atelier.toml");
        std::fs::write(&file, "[llm]\nthread = 2\n").unwrap();
        let err = Settings::load(Some(&file), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("thread"), "{err}");
        let err = Settings::load(None, &env(&[("ATELIER__LLM__BACKEND", "gpt")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gpt") && err.contains("llama"), "{err}");
    }

    #[test]
    fn missing_settings_file_is_an_error() {
        let err =
            Settings::load(Some(Path::new("/nonexistent/atelier.toml")), &env(&[])).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
