//! Atelier's own HTTP endpoints: sessions (and their WebSocket), brands, artifacts, health.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, parse_json};
use super::hub::Hub;
use super::ws;

type Shared = State<Arc<Hub>>;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: models loaded (they are, once the server listens), the brand store answers,
/// the artifact store reads; 503 with the failing check otherwise.
pub async fn readyz(State(hub): Shared) -> Response {
    let services = &hub.services;
    let mut checks = serde_json::Map::new();
    let mut ready = !hub.shutdown.is_cancelled();
    checks.insert(
        "models".into(),
        json!({"ok": true, "chat": services.llm_name, "image": services.generator.name()}),
    );
    if let Some(brands) = &services.brands {
        let probe = tokio::time::timeout(
            Duration::from_secs(2),
            brands.store().brands(&services.tenant),
        )
        .await;
        let (ok, detail) = match probe {
            Ok(Ok(b)) => (true, format!("{} brand(s)", b.len())),
            Ok(Err(e)) => (false, e.to_string()),
            Err(_) => (false, "no answer within 2 s".into()),
        };
        ready &= ok;
        checks.insert("brand_store".into(), json!({"ok": ok, "detail": detail}));
    }
    // A well-formed id that is not stored must read as "absent", not fail.
    let probe = services.images.png(&"0".repeat(64)).await;
    let artifacts_ok = probe.is_ok();
    ready &= artifacts_ok;
    checks.insert(
        "artifacts".into(),
        json!({"ok": artifacts_ok, "detail": probe.err().map(|e| e.to_string())}),
    );
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready, "checks": checks}))).into_response()
}

/// `GET /v1/brands`: the tenant's brands.
pub async fn brands(State(hub): Shared) -> Result<Json<serde_json::Value>, ApiError> {
    let services = &hub.services;
    let brands = match &services.brands {
        Some(b) => b
            .store()
            .brands(&services.tenant)
            .await
            .map_err(|e| ApiError::internal(format!("the brand store failed: {e}")))?,
        None => Vec::new(),
    };
    Ok(Json(json!({"tenant": services.tenant, "brands": brands})))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateSession {
    #[serde(default)]
    brand: Option<String>,
    /// Start right away with this brief.
    #[serde(default)]
    brief: Option<String>,
}

/// `POST /v1/sessions` `{brand?, brief?}` → 201 `{id, ws, state}`.
pub async fn create_session(State(hub): Shared, body: Bytes) -> Result<Response, ApiError> {
    let request: CreateSession = if body.iter().all(u8::is_ascii_whitespace) {
        CreateSession::default()
    } else {
        parse_json(&body)?
    };
    let brand = request
        .brand
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty());
    if let Some(b) = &brand {
        hub.services
            .agent
            .check_brand(&hub.services.tenant, b)
            .await
            .map_err(|e| match e {
                atelier_agent::Error::InvalidRequest { field, reason } => {
                    ApiError::invalid(field, reason)
                }
                other => ApiError::internal(format!("the brand store failed: {other}")),
            })?;
    }
    let session = hub.create(brand.clone())?;
    hub.record(&session, None).await;
    if let Some(brief) = request.brief {
        let max = hub.config.max_message_chars;
        let chars = brief.chars().count();
        if chars > max {
            return Err(ApiError::invalid(
                "brief",
                format!("{chars} characters; at most {max} (server.max_message_chars)"),
            ));
        }
        hub.submit(&session, &brief, brand)
            .await
            .map_err(|r| ApiError::invalid("brief", r.message))?;
    }
    let body = json!({
        "id": session.id,
        "ws": format!("/v1/sessions/{}/ws", session.id),
        "state": session.state(),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn session_of(hub: &Arc<Hub>, id: &str) -> Result<Arc<super::hub::ChatSession>, ApiError> {
    hub.find(id).await.ok_or_else(|| {
        ApiError::not_found(format!(
            "no session `{id}` (sessions end {} s after their last use; create one with POST /v1/sessions)",
            hub.config.session_ttl_seconds
        ))
    })
}

/// `GET /v1/sessions/{id}`: the session's state.
pub async fn session_state(
    State(hub): Shared,
    Path(id): Path<String>,
) -> Result<Json<super::protocol::SessionState>, ApiError> {
    Ok(Json(session_of(&hub, &id).await?.state()))
}

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// The last sequence number the client has; later messages are replayed.
    #[serde(default)]
    after: Option<String>,
}

/// `GET /v1/sessions/{id}/ws[?after=N]`: the chat protocol.
pub async fn session_ws(
    State(hub): Shared,
    Path(id): Path<String>,
    Query(query): Query<WsQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let session = session_of(&hub, &id).await?;
    let after = match query.after.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(a) => a.parse::<u64>().map_err(|_| {
            ApiError::invalid(
                "after",
                format!("`{a}` is not a sequence number (0 or more)"),
            )
        })?,
    };
    let guard = hub.connect()?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            format!("this is the session's WebSocket; connect with a WebSocket client ({e})"),
        )
    })?;
    let limit = ws::hard_frame_limit(hub.config.max_frame_bytes);
    // Small buffers: an idle connection should cost kilobytes, not the 128 KiB default.
    Ok(upgrade
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_frame_size(limit)
        .max_message_size(limit)
        .on_upgrade(move |socket| ws::serve(socket, hub, session, after, guard)))
}

/// `GET /v1/artifacts/{id}`: a stored image by content hash, cached for good.
pub async fn artifact(
    State(hub): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = id.strip_suffix(".png").unwrap_or(&id);
    if !atelier_agent::is_image_id(id) {
        return Err(ApiError::invalid(
            "id",
            "an artifact id is the sha256 of its content: 64 lower-case hex digits",
        ));
    }
    let etag = format!("\"{id}\"");
    let cache = HeaderValue::from_static("public, max-age=31536000, immutable");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let png = hub
        .services
        .images
        .png(id)
        .await
        .map_err(|e| ApiError::internal(format!("reading the artifact: {e}")))?
        .ok_or_else(|| ApiError::not_found(format!("no artifact `{id}`")))?;
    let etag = HeaderValue::from_str(&etag).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(png));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        r
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, cache);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// Anything else: 404 in the API's error shape.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route `{}`", uri.path()))
}
