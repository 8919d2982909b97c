//! The embedded backend: Qdrant's engine in process (`qdrant-edge`), on local disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use qdrant_edge::{
    Condition, CountRequest, CreateIndex, Distance, EdgeConfigBuilder, EdgeShard,
    EdgeVectorParamsBuilder, FieldCondition, FieldIndexOperations, Filter, JsonPath, Match,
    NamedQuery, PayloadFieldSchema, PayloadSchemaType, PointId as ExtendedPointId,
    PointInsertOperations, PointOperations, PointStructPersisted, QueryEnum, QueryRequest,
    ScoringQuery, ScrollRequest, UpdateOperation, VectorInternal, VectorStructPersisted,
    WithPayloadInterface, WithVector,
};
use uuid::Uuid;

use super::{
    BrandStore, Hit, INDEXED_FIELDS, Scope, SearchQuery, StoredChunk, check_points, check_query,
};
use super::{chunk_from_payload, payload};
use crate::brand::chunk::{Chunk, ChunkKind};
use crate::error::{Error, Result};

const BACKEND: &str = "qdrant-edge";
/// Points per scroll page when listing a scope.
const PAGE: usize = 1024;

/// Brand guidelines in an embedded Qdrant shard under a local directory.
#[derive(Clone)]
pub struct EdgeStore {
    shard: Arc<EdgeShard>,
    /// Held open with an exclusive lock: one process owns the directory.
    _lock: Arc<std::fs::File>,
    path: PathBuf,
    dims: usize,
}

impl std::fmt::Debug for EdgeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeStore")
            .field("path", &self.path)
            .field("dims", &self.dims)
            .finish()
    }
}

fn store_err(action: &'static str) -> impl FnOnce(qdrant_edge::OperationError) -> Error {
    move |e| Error::Store {
        backend: BACKEND,
        action,
        detail: e.to_string(),
    }
}

/// A payload field's path.
fn payload_path(field: &str) -> Result<JsonPath> {
    field.parse().map_err(|_| Error::Store {
        backend: BACKEND,
        action: "build a filter",
        detail: format!("`{field}` is not a payload path"),
    })
}

fn keyword(field: &str, value: &str) -> Result<Condition> {
    Ok(Condition::Field(FieldCondition::new_match(
        payload_path(field)?,
        Match::from(value.to_string()),
    )))
}

fn must(conditions: Vec<Condition>) -> Filter {
    Filter {
        should: None,
        min_should: None,
        must: Some(conditions),
        must_not: None,
    }
}

fn scope_filter(scope: &Scope, extra: Option<Condition>) -> Result<Filter> {
    let mut conditions = vec![
        keyword("tenant", scope.tenant())?,
        keyword("brand", scope.brand())?,
    ];
    conditions.extend(extra);
    Ok(must(conditions))
}

fn uuid_of(id: ExtendedPointId) -> Result<Uuid> {
    match id {
        ExtendedPointId::Uuid(u) => Ok(u),
        ExtendedPointId::NumId(n) => Err(Error::Store {
            backend: BACKEND,
            action: "read a point id",
            detail: format!("numeric id {n} was not written by Atelier"),
        }),
    }
}

impl EdgeStore {
    /// Open the store at `path`, creating it (cosine distance, `dims`-dimensional vectors,
    /// keyword indexes on the filtered fields) when the directory holds none yet.
    pub async fn open(path: &Path, dims: usize) -> Result<Self> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, dims))
            .await
            .map_err(|e| Error::Store {
                backend: BACKEND,
                action: "open the shard",
                detail: e.to_string(),
            })?
    }

    fn open_blocking(path: &Path, dims: usize) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(Error::io(format!("creating {}", path.display())))?;
        let lock_path = path.join(".atelier.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Error::io(format!("opening {}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", lock_path.display()))(e));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Store {
                    backend: BACKEND,
                    action: "open the shard",
                    detail: format!(
                        "{} is in use by another process (an `atelier` server or command); \
                         stop it, or use the Qdrant server backend to share brands between processes",
                        path.display()
                    ),
                });
            }
        }
        let exists = path.join("edge_config.json").is_file();
        let shard = if exists {
            EdgeShard::load(path, None).map_err(store_err("load the shard"))?
        } else {
            let config = EdgeConfigBuilder::new()
                .vector(
                    "",
                    EdgeVectorParamsBuilder::new(dims, Distance::Cosine).build(),
                )
                .build();
            let shard = EdgeShard::new(path, config).map_err(store_err("create the shard"))?;
            for field in INDEXED_FIELDS {
                shard
                    .update(UpdateOperation::FieldIndexOperation(
                        FieldIndexOperations::CreateIndex(CreateIndex {
                            field_name: payload_path(field)?,
                            field_schema: Some(PayloadFieldSchema::FieldType(
                                PayloadSchemaType::Keyword,
                            )),
                        }),
                    ))
                    .map_err(store_err("create a payload index"))?;
            }
            shard
        };
        let stored = shard.config().vectors.get("").map(|v| v.size);
        if stored != Some(dims) {
            return Err(Error::Store {
                backend: BACKEND,
                action: "open the shard",
                detail: format!(
                    "{} holds {}-dimensional vectors, the embedder gives {dims}; \
                     delete the directory to re-ingest with this embedder",
                    path.display(),
                    stored.map_or("unknown".to_string(), |d| d.to_string())
                ),
            });
        }
        Ok(Self {
            shard: Arc::new(shard),
            _lock: Arc::new(lock),
            path: path.to_path_buf(),
            dims,
        })
    }

    /// Run blocking engine work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        action: &'static str,
        f: impl FnOnce(&EdgeShard) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shard = self.shard.clone();
        tokio::task::spawn_blocking(move || f(&shard))
            .await
            .map_err(|e| Error::Store {
                backend: BACKEND,
                action,
                detail: e.to_string(),
            })?
    }

    /// Build the HNSW index and merge segments now (ingestion does this after large writes).
    pub async fn optimize(&self) -> Result<()> {
        self.blocking("optimise", |s| {
            s.optimize().map(|_| ()).map_err(store_err("optimise"))
        })
        .await
    }

    /// Write everything to disk.
    pub async fn flush(&self) -> Result<()> {
        self.blocking("flush", |s| {
            s.flush();
            Ok(())
        })
        .await
    }

    fn scroll_all(
        shard: &EdgeShard,
        filter: Filter,
        with_payload: bool,
    ) -> Result<Vec<qdrant_edge::Record>> {
        let mut out = Vec::new();
        let mut offset = None;
        loop {
            let (records, next) = shard
                .scroll(ScrollRequest {
                    offset,
                    limit: Some(PAGE),
                    filter: Some(filter.clone()),
                    with_payload: Some(WithPayloadInterface::Bool(with_payload)),
                    with_vector: WithVector::Bool(false),
                    order_by: None,
                })
                .map_err(store_err("list points"))?;
            out.extend(records);
            match next {
                Some(n) => offset = Some(n),
                None => return Ok(out),
            }
        }
    }
}

#[async_trait]
impl BrandStore for EdgeStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn upsert(&self, scope: &Scope, points: Vec<StoredChunk>) -> Result<()> {
        check_points(&points, self.dims)?;
        if points.is_empty() {
            return Ok(());
        }
        let list: Vec<PointStructPersisted> = points
            .iter()
            .map(|p| PointStructPersisted {
                id: ExtendedPointId::Uuid(p.id),
                vector: VectorStructPersisted::Single(p.vector.clone()),
                payload: Some(qdrant_edge::Payload(payload(scope, p))),
            })
            .collect();
        self.blocking("upsert points", move |s| {
            s.update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(list)),
            ))
            .map_err(store_err("upsert points"))
        })
        .await
    }

    async fn delete(&self, scope: &Scope, ids: Vec<Uuid>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let filter =
            scope_filter(scope, None)?.with_point_ids(ids.into_iter().map(ExtendedPointId::Uuid));
        self.blocking("delete points", move |s| {
            s.update(UpdateOperation::PointOperation(
                PointOperations::DeletePointsByFilter(filter),
            ))
            .map_err(store_err("delete points"))
        })
        .await
    }

    async fn hashes(&self, scope: &Scope) -> Result<Vec<(Uuid, String)>> {
        let filter = scope_filter(scope, None)?;
        self.blocking("list points", move |s| {
            Self::scroll_all(s, filter, true)?
                .into_iter()
                .map(|r| {
                    let hash = r
                        .payload
                        .as_ref()
                        .and_then(|p| p.0.get("content_hash"))
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string();
                    Ok((uuid_of(r.id)?, hash))
                })
                .collect()
        })
        .await
    }

    async fn search(&self, scope: &Scope, query: SearchQuery) -> Result<Vec<Hit>> {
        check_query(&query, self.dims)?;
        let filter = match query.kind {
            Some(k) => scope_filter(scope, Some(keyword("kind", k.as_str())?))?,
            None => Filter {
                must_not: Some(vec![
                    keyword("kind", ChunkKind::Kit.as_str())?,
                    keyword("kind", ChunkKind::Asset.as_str())?,
                ]),
                ..scope_filter(scope, None)?
            },
        };
        let request = QueryRequest {
            prefetches: Vec::new(),
            query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
                query: VectorInternal::Dense(query.vector),
                using: None,
            }))),
            filter: Some(filter),
            score_threshold: None,
            limit: query.limit,
            offset: 0,
            params: None,
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(true),
        };
        self.blocking("search", move |s| {
            s.query(request)
                .map_err(store_err("search"))?
                .into_iter()
                .map(|p| {
                    let empty = serde_json::Map::new();
                    let payload = p.payload.as_ref().map_or(&empty, |p| &p.0);
                    Ok(Hit {
                        id: uuid_of(p.id)?,
                        score: p.score,
                        chunk: chunk_from_payload(BACKEND, payload)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn chunks(&self, scope: &Scope, kind: ChunkKind) -> Result<Vec<Chunk>> {
        let filter = scope_filter(scope, Some(keyword("kind", kind.as_str())?))?;
        self.blocking("list points", move |s| {
            Self::scroll_all(s, filter, true)?
                .into_iter()
                .map(|r| {
                    let empty = serde_json::Map::new();
                    chunk_from_payload(BACKEND, r.payload.as_ref().map_or(&empty, |p| &p.0))
                })
                .collect()
        })
        .await
    }

    async fn delete_brand(&self, scope: &Scope) -> Result<usize> {
        let n = self.count(scope).await?;
        let filter = scope_filter(scope, None)?;
        self.blocking("delete a brand", move |s| {
            s.update(UpdateOperation::PointOperation(
                PointOperations::DeletePointsByFilter(filter),
            ))
            .map_err(store_err("delete a brand"))
        })
        .await?;
        Ok(n)
    }

    async fn count(&self, scope: &Scope) -> Result<usize> {
        let filter = scope_filter(scope, None)?;
        self.blocking("count points", move |s| {
            s.count(CountRequest {
                filter: Some(filter),
                exact: true,
            })
            .map_err(store_err("count points"))
        })
        .await
    }

    async fn brands(&self, tenant: &str) -> Result<Vec<String>> {
        let filter = must(vec![keyword("tenant", tenant)?]);
        self.blocking("list brands", move |s| {
            let mut brands: Vec<String> = Self::scroll_all(s, filter, true)?
                .into_iter()
                .filter_map(|r| {
                    r.payload.and_then(|p| {
                        p.0.get("brand")
                            .and_then(|b| b.as_str())
                            .map(str::to_string)
                    })
                })
                .collect();
            brands.sort();
            brands.dedup();
            Ok(brands)
        })
        .await
    }
}
