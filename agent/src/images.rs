//! Where a session's images go. `platform` stores them in its content-addressed artifact store;
//! [`DirImageStore`] writes them into a local directory, named by their sha256.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use image::RgbImage;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::event::ImageRef;

/// Keeps images by content address.
#[async_trait]
pub trait ImageStore: Send + Sync {
    /// Store `image`; the same pixels always get the same reference, and are written once.
    async fn put(&self, image: &RgbImage) -> Result<ImageRef>;

    /// The pixels of a stored image.
    async fn get(&self, image: &ImageRef) -> Result<RgbImage>;

    /// The PNG bytes stored under `id`; `None` when there is no such image. An `id` that is not
    /// a content hash is an error, so no id can name anything but a stored image.
    async fn png(&self, id: &str) -> Result<Option<Vec<u8>>>;
}

/// True when `id` has the shape of an image id (sha256 in lower-case hex).
pub fn is_image_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// PNG bytes of an image.
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| Error::Images(format!("encoding a PNG: {e}")))?;
    Ok(bytes.into_inner())
}

/// Images as `<sha256>.png` in one directory.
#[derive(Debug, Clone)]
pub struct DirImageStore {
    dir: PathBuf,
    /// When set, references get `{prefix}{id}` as their URI instead of the file path.
    uri_prefix: Option<String>,
}

impl DirImageStore {
    fn path_of(&self, id: &str) -> Result<PathBuf> {
        // Ids are sha256 hex: nothing else may name a file here.
        if !is_image_id(id) {
            return Err(Error::Images(format!("`{id}` is not an image id")));
        }
        Ok(self.dir.join(format!("{id}.png")))
    }

    /// Store into `dir`, creating it when needed.
    pub fn new(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Images(format!("creating {}: {e}", dir.display())))?;
        Ok(DirImageStore {
            dir,
            uri_prefix: None,
        })
    }

    /// Give references the URI `{prefix}{id}` (where a server serves them) instead of the path.
    pub fn with_uri_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.uri_prefix = Some(prefix.into());
        self
    }

    /// The directory the images are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl ImageStore for DirImageStore {
    async fn put(&self, image: &RgbImage) -> Result<ImageRef> {
        let png = encode_png(image)?;
        let id = hex::encode(Sha256::digest(&png));
        let path = self.path_of(&id)?;
        if !path.is_file() {
            // Write beside, then rename: a crash never leaves a half-written image under its name.
            let tmp = self.dir.join(format!(".{id}.png.tmp"));
            tokio::fs::write(&tmp, &png)
                .await
                .map_err(|e| Error::Images(format!("writing {}: {e}", tmp.display())))?;
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| Error::Images(format!("renaming to {}: {e}", path.display())))?;
        }
        let uri = match &self.uri_prefix {
            Some(prefix) => format!("{prefix}{id}"),
            None => path.display().to_string(),
        };
        Ok(ImageRef {
            id,
            uri,
            width: image.width(),
            height: image.height(),
        })
    }

    async fn get(&self, image: &ImageRef) -> Result<RgbImage> {
        let path = self.path_of(&image.id)?;
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| Error::Images(format!("reading {}: {e}", path.display())))?;
        image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
            .map(|i| i.to_rgb8())
            .map_err(|e| Error::Images(format!("decoding {}: {e}", path.display())))
    }

    async fn png(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path_of(id)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Images(format!("reading {}: {e}", path.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn images_round_trip_by_content_address_and_ids_cannot_name_other_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let store = DirImageStore::new(dir.path()).unwrap_or_else(|e| unreachable!("{e}"));
        let image = RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]));
        let stored = store
            .put(&image)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(store.put(&image).await.ok().as_ref(), Some(&stored));
        assert_eq!(store.get(&stored).await.ok().as_ref(), Some(&image));
        let evil = ImageRef {
            id: "../../etc/passwd".into(),
            ..stored
        };
        assert!(store.get(&evil).await.is_err());
        assert!(store.png("../../etc/passwd").await.is_err());
        assert!(store.png(&stored.id.to_uppercase()).await.is_err());
        let png = store
            .png(&stored.id)
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(png, Some(encode_png(&image).unwrap_or_default()));
        assert_eq!(store.png(&"0".repeat(64)).await.ok(), Some(None));
    }
}
