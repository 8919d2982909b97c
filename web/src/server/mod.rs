//! The HTTP server: sessions and their WebSocket chat protocol, artifacts, the chat UI,
//! OpenAI-compatible endpoints, health.
//!
//! [`launch`] builds the backends the settings choose and serves until `shutdown` resolves;
//! [`serve`] takes ready [`Services`] (tests give it a scripted model). Shutdown is graceful:
//! no new connections or briefs, every WebSocket client gets `shutting_down`, running briefs get
//! `server.shutdown_grace_seconds` to finish and are then cancelled (the agent saves the session
//! at every transition).

pub mod api;
pub mod config;
pub mod error;
pub mod hub;
pub mod openai;
pub mod protocol;
pub mod throttle;
pub mod ui;
pub mod ws;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use atelier_agent::{Agent, DirImageStore, ImageStore, Toolbox};
use atelier_inference::diffusion::ImageGenerator;
use atelier_tools::brand::Ingestor;
use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

pub use config::ServerConfig;
pub use hub::Hub;

use crate::settings::Settings;

/// Where artifacts are served; image references carry `{ARTIFACTS}{id}`.
pub const ARTIFACTS: &str = "/v1/artifacts/";

/// The backends a server works with.
pub struct Services {
    pub agent: Arc<Agent>,
    pub generator: Arc<dyn ImageGenerator>,
    pub images: Arc<dyn ImageStore>,
    pub brands: Option<Ingestor>,
    /// The tenant every request works for (API keys and tenants come with the platform).
    pub tenant: String,
    /// Path prefix of artifact URLs.
    pub artifact_path_prefix: String,
    /// The chat model's name, for `/v1/models` and `/readyz`.
    pub llm_name: String,
    /// Where chats are recorded so a restarted server picks them up (the metadata database);
    /// `None` keeps them in this process only.
    pub chats: Option<atelier_platform::ChatRecords>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("generator", &self.generator.name())
            .field("tenant", &self.tenant)
            .field("llm", &self.llm_name)
            .finish_non_exhaustive()
    }
}

impl Services {
    /// The backends the settings choose: the chat model, atelier-tiny, the embedder and brand
    /// store, and the artifact directory under the data directory.
    pub async fn load(settings: &Settings) -> anyhow::Result<Self> {
        // The database first: a bad `[database]` setting fails before any model loads.
        let db = atelier_platform::Database::connect(&settings.database_config()).await?;
        let permits = Arc::new(tokio::sync::Semaphore::new(settings.server.max_running));
        let llm = crate::commands::chat_model(settings, None, settings.llm.parallel).await?;
        let llm_name = llm.name().to_string();
        let llm: Arc<dyn atelier_inference::llm::ChatModel> =
            Arc::new(throttle::Throttled::new(llm, permits.clone()));
        let model =
            crate::commands::image_generator(settings, &settings.server.image_model, None).await?;
        let generator: Arc<dyn ImageGenerator> = Arc::new(throttle::Throttled::new(model, permits));
        let embedder = crate::commands::embedder(settings).await?;
        let store = crate::commands::brand_store(settings, embedder.dimensions()).await?;
        let brands = Some(Ingestor::new(store, embedder));
        let dir = settings.home.join("artifacts");
        let images: Arc<dyn ImageStore> = Arc::new(
            DirImageStore::new(&dir)
                .with_context(|| format!("preparing {}", dir.display()))?
                .with_uri_prefix(ARTIFACTS),
        );
        let agent = Agent::new(
            llm,
            Toolbox {
                generator: generator.clone(),
                brands: brands.clone(),
                images: images.clone(),
                critics: crate::commands::critics(settings).await?,
                upscale: crate::commands::optional_upscalers(settings).await?,
            },
            Arc::new(crate::sessions::DbSessionStore::new(db.clone())),
            settings.agent.clone(),
        )?;
        Ok(Services {
            agent: Arc::new(agent),
            generator,
            images,
            brands,
            tenant: settings.brands.default_tenant.clone(),
            artifact_path_prefix: ARTIFACTS.into(),
            llm_name,
            chats: Some(atelier_platform::ChatRecords::new(db)),
        })
    }
}

/// Build the backends from `settings` and serve on `listener` until `shutdown` resolves.
pub async fn launch(
    settings: &Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let services = Services::load(settings).await?;
    serve(
        Arc::new(services),
        settings.server.clone(),
        listener,
        shutdown,
    )
    .await
}

/// Serve `services` on `listener` until `shutdown` resolves, then shut down gracefully.
pub async fn serve(
    services: Arc<Services>,
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let hub = Hub::new(services, config);
    let app = router(hub.clone());
    let janitor = {
        let hub = hub.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                tokio::select! {
                    _ = tick.tick() => { hub.evict_expired(); }
                    () = hub.shutdown.cancelled() => break,
                }
            }
        })
    };
    let token = hub.shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; running briefs may finish");
            token.cancel();
        })
        .await
        .context("the HTTP server failed")?;
    hub.shutdown.cancel();
    janitor.abort();
    hub.drain().await;
    Ok(())
}

/// Every route.
pub fn router(hub: Arc<Hub>) -> Router {
    use tower_http::limit::RequestBodyLimitLayer;
    let body_limit = hub.config.max_body_bytes;
    Router::new()
        .route("/", get(ui::index))
        .route("/app.js", get(ui::script))
        .route("/app.css", get(ui::style))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/v1/brands", get(api::brands))
        .route("/v1/sessions", post(api::create_session))
        .route("/v1/sessions/{id}", get(api::session_state))
        .route("/v1/sessions/{id}/ws", get(api::session_ws))
        .route("/v1/artifacts/{id}", get(api::artifact))
        .route("/v1/models", get(openai::models))
        .route("/v1/images/generations", post(openai::images))
        .route("/v1/chat/completions", post(openai::chat))
        .fallback(api::not_found)
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(hub)
}
