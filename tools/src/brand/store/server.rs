//! The server backend: a Qdrant server or cluster through `qdrant-client` (gRPC).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use qdrant_client::Qdrant;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, PointId, PointStruct, QueryPointsBuilder,
    ScrollPointsBuilder, UpsertPointsBuilder, Value as QValue, VectorParamsBuilder,
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{
    BrandStore, Hit, INDEXED_FIELDS, Scope, SearchQuery, StoredChunk, check_points, check_query,
};
use super::{chunk_from_payload, payload};
use crate::brand::chunk::{Chunk, ChunkKind};
use crate::error::{Error, Result};

const BACKEND: &str = "qdrant-server";
/// Points per scroll page and per upsert request.
const PAGE: u32 = 512;

/// Where the server is and which collection holds brand guidelines.
#[derive(Debug, Clone)]
pub struct ServerStoreConfig {
    /// gRPC URL, e.g. `http://127.0.0.1:6334`.
    pub url: String,
    /// API key; empty for none.
    pub api_key: String,
    pub collection: String,
    pub timeout: Duration,
}

/// Brand guidelines in one collection of a Qdrant server, shared by all tenants (every query
/// filters by tenant and brand; both are keyword-indexed).
#[derive(Clone)]
pub struct ServerStore {
    client: std::sync::Arc<Qdrant>,
    collection: String,
    dims: usize,
}

impl std::fmt::Debug for ServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerStore")
            .field("collection", &self.collection)
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

fn store_err(action: &'static str) -> impl FnOnce(qdrant_client::QdrantError) -> Error {
    move |e| Error::Store {
        backend: BACKEND,
        action,
        detail: e.to_string(),
    }
}

fn scope_filter(scope: &Scope) -> Vec<Condition> {
    vec![
        Condition::matches("tenant", scope.tenant().to_string()),
        Condition::matches("brand", scope.brand().to_string()),
    ]
}

fn uuid_of(id: Option<PointId>) -> Result<Uuid> {
    match id.and_then(|p| p.point_id_options) {
        Some(PointIdOptions::Uuid(s)) => Uuid::parse_str(&s).map_err(|e| Error::Store {
            backend: BACKEND,
            action: "read a point id",
            detail: format!("`{s}`: {e}"),
        }),
        other => Err(Error::Store {
            backend: BACKEND,
            action: "read a point id",
            detail: format!("{other:?} was not written by Atelier"),
        }),
    }
}

fn json_payload(p: HashMap<String, QValue>) -> Map<String, Value> {
    Map::from(qdrant_client::Payload::from(p))
}

impl ServerStore {
    /// Connect, and create the collection (cosine, `dims`) with its payload indexes when missing.
    pub async fn connect(config: &ServerStoreConfig, dims: usize) -> Result<Self> {
        let mut builder = Qdrant::from_url(&config.url).timeout(config.timeout);
        if !config.api_key.is_empty() {
            builder = builder.api_key(config.api_key.clone());
        }
        let client = builder.build().map_err(store_err("connect"))?;
        let exists = client
            .collection_exists(&config.collection)
            .await
            .map_err(store_err("check the collection"))?;
        if !exists {
            client
                .create_collection(
                    CreateCollectionBuilder::new(&config.collection)
                        .vectors_config(VectorParamsBuilder::new(dims as u64, Distance::Cosine)),
                )
                .await
                .map_err(store_err("create the collection"))?;
            for field in INDEXED_FIELDS {
                client
                    .create_field_index(
                        CreateFieldIndexCollectionBuilder::new(
                            &config.collection,
                            field,
                            FieldType::Keyword,
                        )
                        .wait(true),
                    )
                    .await
                    .map_err(store_err("create a payload index"))?;
            }
        } else {
            let info = client
                .collection_info(&config.collection)
                .await
                .map_err(store_err("read the collection"))?;
            let size = info
                .result
                .and_then(|r| r.config)
                .and_then(|c| c.params)
                .and_then(|p| p.vectors_config)
                .and_then(|v| v.config)
                .and_then(|c| match c {
                    qdrant_client::qdrant::vectors_config::Config::Params(p) => Some(p.size),
                    qdrant_client::qdrant::vectors_config::Config::ParamsMap(_) => None,
                });
            if size != Some(dims as u64) {
                return Err(Error::Store {
                    backend: BACKEND,
                    action: "open the collection",
                    detail: format!(
                        "collection `{}` holds {size:?}-dimensional vectors, the embedder gives {dims}",
                        config.collection
                    ),
                });
            }
        }
        Ok(Self {
            client: std::sync::Arc::new(client),
            collection: config.collection.clone(),
            dims,
        })
    }

    /// Remove the whole collection (tests and operators).
    pub async fn drop_collection(&self) -> Result<()> {
        self.client
            .delete_collection(&self.collection)
            .await
            .map(|_| ())
            .map_err(store_err("delete the collection"))
    }

    async fn scroll_all(
        &self,
        conditions: Vec<Condition>,
    ) -> Result<Vec<(Option<PointId>, Map<String, Value>)>> {
        let mut out = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(&self.collection)
                .filter(Filter::must(conditions.clone()))
                .limit(PAGE)
                .with_payload(true)
                .with_vectors(false);
            if let Some(o) = offset.take() {
                request = request.offset(o);
            }
            let page = self
                .client
                .scroll(request)
                .await
                .map_err(store_err("list points"))?;
            out.extend(
                page.result
                    .into_iter()
                    .map(|p| (p.id, json_payload(p.payload))),
            );
            match page.next_page_offset {
                Some(next) => offset = Some(next),
                None => return Ok(out),
            }
        }
    }
}

#[async_trait]
impl BrandStore for ServerStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn upsert(&self, scope: &Scope, points: Vec<StoredChunk>) -> Result<()> {
        check_points(&points, self.dims)?;
        for batch in points.chunks(PAGE as usize) {
            let structs: Vec<PointStruct> = batch
                .iter()
                .map(|p| {
                    PointStruct::new(
                        p.id.to_string(),
                        p.vector.clone(),
                        qdrant_client::Payload::from(payload(scope, p)),
                    )
                })
                .collect();
            self.client
                .upsert_points(UpsertPointsBuilder::new(&self.collection, structs).wait(true))
                .await
                .map_err(store_err("upsert points"))?;
        }
        Ok(())
    }

    async fn delete(&self, scope: &Scope, ids: Vec<Uuid>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conditions = scope_filter(scope);
        conditions.push(Condition::has_id(
            ids.iter().map(|u| PointId::from(u.to_string())),
        ));
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(Filter::must(conditions))
                    .wait(true),
            )
            .await
            .map(|_| ())
            .map_err(store_err("delete points"))
    }

    async fn hashes(&self, scope: &Scope) -> Result<Vec<(Uuid, String)>> {
        self.scroll_all(scope_filter(scope))
            .await?
            .into_iter()
            .map(|(id, p)| {
                let hash = p
                    .get("content_hash")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                Ok((uuid_of(id)?, hash))
            })
            .collect()
    }

    async fn search(&self, scope: &Scope, query: SearchQuery) -> Result<Vec<Hit>> {
        check_query(&query, self.dims)?;
        let mut conditions = scope_filter(scope);
        let filter = match query.kind {
            Some(kind) => {
                conditions.push(Condition::matches("kind", kind.as_str().to_string()));
                Filter::must(conditions)
            }
            None => Filter {
                must: conditions,
                must_not: vec![
                    Condition::matches("kind", ChunkKind::Kit.as_str().to_string()),
                    Condition::matches("kind", ChunkKind::Asset.as_str().to_string()),
                ],
                ..Filter::default()
            },
        };
        let response = self
            .client
            .query(
                QueryPointsBuilder::new(&self.collection)
                    .query(query.vector)
                    .filter(filter)
                    .limit(query.limit as u64)
                    .with_payload(true),
            )
            .await
            .map_err(store_err("search"))?;
        response
            .result
            .into_iter()
            .map(|p| {
                let payload = json_payload(p.payload);
                Ok(Hit {
                    id: uuid_of(p.id)?,
                    score: p.score,
                    chunk: chunk_from_payload(BACKEND, &payload)?,
                })
            })
            .collect()
    }

    async fn chunks(&self, scope: &Scope, kind: ChunkKind) -> Result<Vec<Chunk>> {
        let mut conditions = scope_filter(scope);
        conditions.push(Condition::matches("kind", kind.as_str().to_string()));
        self.scroll_all(conditions)
            .await?
            .into_iter()
            .map(|(_, p)| chunk_from_payload(BACKEND, &p))
            .collect()
    }

    async fn delete_brand(&self, scope: &Scope) -> Result<usize> {
        let n = self.count(scope).await?;
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(Filter::must(scope_filter(scope)))
                    .wait(true),
            )
            .await
            .map_err(store_err("delete a brand"))?;
        Ok(n)
    }

    async fn count(&self, scope: &Scope) -> Result<usize> {
        let response = self
            .client
            .count(
                CountPointsBuilder::new(&self.collection)
                    .filter(Filter::must(scope_filter(scope)))
                    .exact(true),
            )
            .await
            .map_err(store_err("count points"))?;
        Ok(response.result.map_or(0, |r| r.count as usize))
    }

    async fn brands(&self, tenant: &str) -> Result<Vec<String>> {
        let mut brands: Vec<String> = self
            .scroll_all(vec![Condition::matches("tenant", tenant.to_string())])
            .await?
            .into_iter()
            .filter_map(|(_, p)| p.get("brand").and_then(Value::as_str).map(str::to_string))
            .collect();
        brands.sort();
        brands.dedup();
        Ok(brands)
    }
}
