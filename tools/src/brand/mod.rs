//! Brand kits and their guidelines in a vector store.

pub mod chunk;
pub mod ingest;
pub mod kit;
pub mod store;
pub mod summary;

pub use chunk::{Chunk, ChunkKind, ChunkOptions};
pub use ingest::{IngestReport, Ingestor};
pub use kit::BrandKit;
pub use store::{BrandStore, EdgeStore, Hit, Scope, SearchQuery, ServerStore, ServerStoreConfig};
pub use summary::KitSummary;
