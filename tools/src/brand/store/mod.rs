//! Where brand guideline vectors live: one trait, two backends.
//!
//! - [`EdgeStore`]: Qdrant's in-process engine (`qdrant-edge`), persistent under the data dir.
//! - [`ServerStore`]: a Qdrant server or cluster through `qdrant-client`.
//!
//! Every point carries `tenant`, `brand`, `document`, `section`, `kind`, `ordinal`,
//! `content_hash` and `text` in its payload, and every read filters by tenant and brand.

mod edge;
mod server;

pub use edge::EdgeStore;
pub use server::{ServerStore, ServerStoreConfig};

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::chunk::{Chunk, ChunkKind};
use crate::error::{Error, Result};

/// Longest tenant or brand id.
pub const MAX_ID_LEN: usize = 64;
/// Most hits one search returns.
pub const MAX_SEARCH_LIMIT: usize = 100;

/// The tenant and brand every operation is confined to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    tenant: String,
    brand: String,
}

impl Scope {
    /// Both ids: 1–64 characters of letters, digits, `-`, `_` or `.`.
    pub fn new(tenant: impl Into<String>, brand: impl Into<String>) -> Result<Self> {
        let tenant = tenant.into();
        let brand = brand.into();
        for (field, v) in [("tenant", &tenant), ("brand", &brand)] {
            let ok = !v.is_empty()
                && v.len() <= MAX_ID_LEN
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return Err(Error::InvalidRequest {
                    field,
                    reason: format!(
                        "`{v}` must be 1-{MAX_ID_LEN} characters of letters, digits, `-`, `_` or `.`"
                    ),
                });
            }
        }
        Ok(Self { tenant, brand })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn brand(&self) -> &str {
        &self.brand
    }

    /// The id of a chunk's point: the same content in the same scope always gets the same id.
    pub fn point_id(&self, content_hash: &str) -> Uuid {
        let mut h = Sha256::new();
        for part in [self.tenant.as_str(), self.brand.as_str(), content_hash] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let digest = h.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Uuid::new_v8(bytes)
    }
}

/// A chunk with its vector, ready to store.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    pub id: Uuid,
    pub chunk: Chunk,
    pub content_hash: String,
    pub vector: Vec<f32>,
}

/// A search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: Uuid,
    /// Cosine similarity, −1..1.
    pub score: f32,
    pub chunk: Chunk,
}

/// What a search looks for.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub vector: Vec<f32>,
    /// 1..=[`MAX_SEARCH_LIMIT`].
    pub limit: usize,
    /// Only guideline passages, or only facts; `None` is both (never the kit summary).
    pub kind: Option<ChunkKind>,
}

/// A vector store for brand guidelines.
#[async_trait]
pub trait BrandStore: Send + Sync {
    /// `"qdrant-edge"` or `"qdrant-server"`, for errors and logs.
    fn backend(&self) -> &'static str;

    /// Insert or replace these points (ids from [`Scope::point_id`]).
    async fn upsert(&self, scope: &Scope, points: Vec<StoredChunk>) -> Result<()>;

    /// Remove these points of the scope.
    async fn delete(&self, scope: &Scope, ids: Vec<Uuid>) -> Result<()>;

    /// Every point of the scope: its id and content hash.
    async fn hashes(&self, scope: &Scope) -> Result<Vec<(Uuid, String)>>;

    /// The nearest points of the scope.
    async fn search(&self, scope: &Scope, query: SearchQuery) -> Result<Vec<Hit>>;

    /// Every chunk of the scope of this kind, in no particular order.
    async fn chunks(&self, scope: &Scope, kind: ChunkKind) -> Result<Vec<Chunk>>;

    /// Remove every point of the scope; returns how many there were.
    async fn delete_brand(&self, scope: &Scope) -> Result<usize>;

    /// Points in the scope.
    async fn count(&self, scope: &Scope) -> Result<usize>;

    /// Brands of a tenant that have points.
    async fn brands(&self, tenant: &str) -> Result<Vec<String>>;
}

pub(crate) fn check_query(query: &SearchQuery, dims: usize) -> Result<()> {
    if query.limit == 0 || query.limit > MAX_SEARCH_LIMIT {
        return Err(Error::InvalidRequest {
            field: "limit",
            reason: format!("{} is outside 1..={MAX_SEARCH_LIMIT}", query.limit),
        });
    }
    if query.vector.len() != dims {
        return Err(Error::InvalidRequest {
            field: "vector",
            reason: format!(
                "{} dimensions; the store holds {dims}-dimensional vectors",
                query.vector.len()
            ),
        });
    }
    Ok(())
}

pub(crate) fn check_points(points: &[StoredChunk], dims: usize) -> Result<()> {
    if let Some(p) = points.iter().find(|p| p.vector.len() != dims) {
        return Err(Error::InvalidRequest {
            field: "vector",
            reason: format!(
                "chunk {} has {} dimensions; the store holds {dims}-dimensional vectors",
                p.id,
                p.vector.len()
            ),
        });
    }
    Ok(())
}

/// The payload stored with a chunk.
pub(crate) fn payload(scope: &Scope, point: &StoredChunk) -> Map<String, Value> {
    let c = &point.chunk;
    let v = json!({
        "tenant": scope.tenant,
        "brand": scope.brand,
        "document": c.document,
        "section": c.section,
        "kind": c.kind.as_str(),
        "ordinal": c.ordinal,
        "content_hash": point.content_hash,
        "text": c.text,
    });
    match v {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A chunk back from a stored payload.
pub(crate) fn chunk_from_payload(
    backend: &'static str,
    payload: &Map<String, Value>,
) -> Result<Chunk> {
    let text = |key: &str| -> Result<String> {
        payload
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error::Store {
                backend,
                action: "read a point's payload",
                detail: format!("payload has no string `{key}`"),
            })
    };
    let kind = match text("kind")?.as_str() {
        "fact" => ChunkKind::Fact,
        "kit" => ChunkKind::Kit,
        "asset" => ChunkKind::Asset,
        _ => ChunkKind::Guideline,
    };
    let ordinal = payload
        .get("ordinal")
        .and_then(Value::as_u64)
        .and_then(|o| u32::try_from(o).ok())
        .unwrap_or(0);
    Ok(Chunk {
        document: text("document")?,
        section: text("section")?,
        kind,
        ordinal,
        text: text("text")?,
    })
}

/// Payload fields with a keyword index (every filter uses them).
pub(crate) const INDEXED_FIELDS: [&str; 4] = ["tenant", "brand", "kind", "content_hash"];
