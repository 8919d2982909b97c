//! Ingestion: a brand kit's chunks into the store, writing only what changed; and search.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use atelier_inference::embed::Embedder;

use super::chunk::{ChunkKind, ChunkOptions, chunk_kit};
use super::kit::BrandKit;
use super::store::{BrandStore, Hit, Scope, SearchQuery, StoredChunk};
use super::summary::KitSummary;
use crate::error::{Error, Result};

/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 2000;

/// What one ingestion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestReport {
    /// Chunks the kit has now.
    pub chunks: usize,
    /// Points written (new or changed chunks).
    pub added: usize,
    /// Points removed (chunks that changed or disappeared).
    pub removed: usize,
    /// Chunks already stored as they are.
    pub unchanged: usize,
}

/// Puts brand kits into a [`BrandStore`] and searches them, embedding with one [`Embedder`].
#[derive(Clone)]
pub struct Ingestor {
    store: Arc<dyn BrandStore>,
    embedder: Arc<dyn Embedder>,
    options: ChunkOptions,
}

impl std::fmt::Debug for Ingestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingestor")
            .field("store", &self.store.backend())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Ingestor {
    pub fn new(store: Arc<dyn BrandStore>, embedder: Arc<dyn Embedder>) -> Self {
        Self {
            store,
            embedder,
            options: ChunkOptions::default(),
        }
    }

    pub fn with_options(mut self, options: ChunkOptions) -> Self {
        self.options = options;
        self
    }

    pub fn store(&self) -> &Arc<dyn BrandStore> {
        &self.store
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let embedder = self.embedder.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            embedder.embed(&refs).map_err(Error::from)
        })
        .await
        .map_err(|e| Error::Store {
            backend: "embedder",
            action: "embed",
            detail: e.to_string(),
        })?
    }

    /// Store the kit under `tenant`: new and changed chunks are embedded and written first,
    /// then chunks that no longer exist are removed, so a failure part-way never loses what
    /// was stored. Unchanged content writes nothing.
    pub async fn ingest(&self, tenant: &str, kit: &BrandKit) -> Result<IngestReport> {
        let scope = Scope::new(tenant, &kit.id)?;
        let chunks = chunk_kit(kit, self.options);
        let existing: HashMap<_, _> = self.store.hashes(&scope).await?.into_iter().collect();

        let mut wanted = HashSet::new();
        let mut fresh = Vec::new();
        for chunk in chunks.iter() {
            let hash = chunk.content_hash();
            let id = scope.point_id(&hash);
            if !wanted.insert(id) {
                continue; // the same passage twice in one document is stored once
            }
            if existing.get(&id) != Some(&hash) {
                fresh.push((id, hash, chunk.clone()));
            }
        }
        let stale: Vec<_> = existing
            .keys()
            .filter(|id| !wanted.contains(id))
            .copied()
            .collect();

        let texts = fresh.iter().map(|(_, _, c)| c.embedding_text()).collect();
        let vectors = self.embed(texts).await?;
        let points: Vec<StoredChunk> = fresh
            .into_iter()
            .zip(vectors)
            .map(|((id, content_hash, chunk), vector)| StoredChunk {
                id,
                chunk,
                content_hash,
                vector,
            })
            .collect();
        let report = IngestReport {
            chunks: wanted.len(),
            added: points.len(),
            removed: stale.len(),
            unchanged: wanted.len() - points.len(),
        };
        self.store.upsert(&scope, points).await?;
        self.store.delete(&scope, stale).await?;
        tracing::info!(tenant, brand = %kit.id, backend = self.store.backend(), ?report, "brand ingested");
        Ok(report)
    }

    /// The stored summary of a brand's kit, or `None` when the brand has none stored.
    pub async fn kit(&self, tenant: &str, brand: &str) -> Result<Option<KitSummary>> {
        let scope = Scope::new(tenant, brand)?;
        let Some(chunk) = self.store.chunks(&scope, ChunkKind::Kit).await?.pop() else {
            return Ok(None);
        };
        serde_json::from_str(&chunk.text)
            .map(Some)
            .map_err(|e| Error::Store {
                backend: self.store.backend(),
                action: "read a brand kit summary",
                detail: format!("{tenant}/{brand}: {e}; re-ingest the kit"),
            })
    }

    /// The brand's stored logo files, by file name (see [`super::chunk::asset_chunks`]).
    pub async fn assets(&self, tenant: &str, brand: &str) -> Result<Vec<(String, Vec<u8>)>> {
        use base64::Engine as _;
        let scope = Scope::new(tenant, brand)?;
        let mut out = Vec::new();
        for chunk in self.store.chunks(&scope, ChunkKind::Asset).await? {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(chunk.text.as_bytes())
                .map_err(|e| Error::Store {
                    backend: self.store.backend(),
                    action: "read a brand asset",
                    detail: format!("{tenant}/{brand}/{}: {e}; re-ingest the kit", chunk.section),
                })?;
            out.push((chunk.section, bytes));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Remove every point of a brand; returns how many there were.
    pub async fn delete_brand(&self, tenant: &str, brand: &str) -> Result<usize> {
        self.store.delete_brand(&Scope::new(tenant, brand)?).await
    }

    /// The `limit` passages of the brand nearest to `query`.
    pub async fn search(
        &self,
        scope: &Scope,
        query: &str,
        limit: usize,
        kind: Option<ChunkKind>,
    ) -> Result<Vec<Hit>> {
        let query = query.trim();
        if query.is_empty() {
            return Err(Error::InvalidRequest {
                field: "query",
                reason: "must not be empty".into(),
            });
        }
        let chars = query.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(Error::InvalidRequest {
                field: "query",
                reason: format!("{chars} characters; the limit is {MAX_QUERY_CHARS}"),
            });
        }
        let vector = self
            .embed(vec![query.to_string()])
            .await?
            .pop()
            .unwrap_or_default();
        self.store
            .search(
                scope,
                SearchQuery {
                    vector,
                    limit,
                    kind,
                },
            )
            .await
    }
}
