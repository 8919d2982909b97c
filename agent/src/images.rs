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
}

impl DirImageStore {
    /// Store into `dir`, creating it when needed.
    pub fn new(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Images(format!("creating {}: {e}", dir.display())))?;
        Ok(DirImageStore { dir })
    }
}

#[async_trait]
impl ImageStore for DirImageStore {
    async fn put(&self, image: &RgbImage) -> Result<ImageRef> {
        let png = encode_png(image)?;
        let id = hex::encode(Sha256::digest(&png));
        let path = self.dir.join(format!("{id}.png"));
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
        Ok(ImageRef {
            id,
            uri: path.display().to_string(),
            width: image.width(),
            height: image.height(),
        })
    }
}
