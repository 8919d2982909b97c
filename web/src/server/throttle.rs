//! At most `server.max_running` model calls at once, shared by every session and endpoint.
//!
//! The limit wraps the models, not the sessions: a session waiting for its user's answer
//! holds nothing, and an LLM decision or an image generation waits only for other model work.

use std::sync::Arc;

use atelier_inference::diffusion::{Generation, ImageGenerator, ImageRequest, Limits, ProgressFn};
use atelier_inference::llm::{ChatModel, ChatRequest, ChatStream};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// A model whose calls take a permit from a shared semaphore first.
pub struct Throttled<T: ?Sized> {
    inner: Arc<T>,
    permits: Arc<Semaphore>,
}

impl<T: ?Sized> std::fmt::Debug for Throttled<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttled")
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl<T: ?Sized> Throttled<T> {
    pub fn new(inner: Arc<T>, permits: Arc<Semaphore>) -> Self {
        Throttled { inner, permits }
    }

    async fn permit(
        &self,
        cancel: &CancellationToken,
    ) -> atelier_inference::Result<OwnedSemaphorePermit> {
        tokio::select! {
            p = self.permits.clone().acquire_owned() => p.map_err(|_| atelier_inference::Error::Cancelled),
            () = cancel.cancelled() => Err(atelier_inference::Error::Cancelled),
        }
    }
}

#[async_trait::async_trait]
impl ChatModel for Throttled<dyn ChatModel> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn stream(&self, request: ChatRequest) -> atelier_inference::Result<ChatStream> {
        let permit = self.permit(&request.cancel).await?;
        let stream = self.inner.stream(request).await?;
        // The permit goes when the stream does: the model is busy until then.
        Ok(Box::pin(stream.map(move |item| {
            let _busy = &permit;
            item
        })))
    }
}

#[async_trait::async_trait]
impl ImageGenerator for Throttled<dyn ImageGenerator> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn generate(
        &self,
        request: ImageRequest,
        progress: Option<ProgressFn>,
    ) -> atelier_inference::Result<Generation> {
        let _busy = self.permit(&request.cancel).await?;
        self.inner.generate(request, progress).await
    }
}
