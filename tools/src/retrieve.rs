//! `retrieve_brand_guidelines`: the agent's tool for a brand's rules.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::brand::{ChunkKind, Ingestor, KitSummary, Scope};
use crate::error::{Error, Result};

/// Most passages one call may ask for.
pub const MAX_TOP_K: usize = 10;

fn default_top_k() -> usize {
    5
}

/// Arguments the agent passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrieveArgs {
    /// The brand's id.
    pub brand: String,
    /// What to look up, in plain words ("which colours for a summer banner").
    pub query: String,
    /// How many passages to return (1-10).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Only guideline passages, or only structured facts from the brand kit.
    #[serde(default)]
    pub kind: Option<PassageKind>,
}

/// Which passages to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PassageKind {
    /// Passages of the guideline documents.
    Guideline,
    /// Structured facts from `brand.toml`.
    Fact,
}

impl From<PassageKind> for ChunkKind {
    fn from(kind: PassageKind) -> Self {
        match kind {
            PassageKind::Guideline => ChunkKind::Guideline,
            PassageKind::Fact => ChunkKind::Fact,
        }
    }
}

/// One retrieved passage, with what is needed to cite it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Passage {
    pub document: String,
    pub section: String,
    pub text: String,
    /// Cosine similarity to the query.
    pub score: f32,
    /// `document § section`, for citations.
    pub citation: String,
}

/// The tool's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RetrieveResult {
    pub brand: String,
    /// The kit's structured rules: palette, logos, voice, do/don't, forbidden content.
    pub kit: KitSummary,
    pub passages: Vec<Passage>,
}

/// Look up a brand's guidelines for `tenant`.
pub async fn retrieve_brand_guidelines(
    ingestor: &Ingestor,
    tenant: &str,
    args: RetrieveArgs,
) -> Result<RetrieveResult> {
    if args.top_k == 0 || args.top_k > MAX_TOP_K {
        return Err(Error::InvalidRequest {
            field: "top_k",
            reason: format!("{} is outside 1..={MAX_TOP_K}", args.top_k),
        });
    }
    let scope = Scope::new(tenant, &args.brand)?;
    let Some(kit) = ingestor.kit(tenant, &args.brand).await? else {
        let known = ingestor.store().brands(tenant).await?;
        return Err(Error::InvalidRequest {
            field: "brand",
            reason: format!(
                "no guidelines stored for brand `{}`; known brands: {}",
                args.brand,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        });
    };
    let hits = ingestor
        .search(&scope, &args.query, args.top_k, args.kind.map(Into::into))
        .await?;
    Ok(RetrieveResult {
        brand: args.brand,
        kit,
        passages: hits
            .into_iter()
            .map(|h| Passage {
                citation: if h.chunk.section.is_empty() {
                    h.chunk.document.clone()
                } else {
                    format!("{} § {}", h.chunk.document, h.chunk.section)
                },
                document: h.chunk.document,
                section: h.chunk.section,
                text: h.chunk.text,
                score: h.score,
            })
            .collect(),
    })
}

/// The JSON schema of [`RetrieveArgs`], for the agent's tool list.
pub fn args_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RetrieveArgs)).unwrap_or_default()
}
