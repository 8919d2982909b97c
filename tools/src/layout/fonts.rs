//! Fonts for layouts: the open-licence DejaVu faces shipped in `assets/fonts/`, plus any
//! `.ttf`/`.otf` files in the brand kit's `fonts/` folder, matched by family and weight with
//! fontdb's CSS rules. When a brand's typeface is not available the match falls back through the
//! kit's `fallback` list to the generic families, and the substitution is reported.

use std::path::Path;
use std::sync::Arc;

use resvg::usvg::fontdb::{Database, Family, Query, Source, Weight};

use crate::error::{Error, Result};

/// The faces shipped with Atelier (DejaVu, Bitstream Vera licence: `assets/fonts/`).
pub const BUNDLED: &[(&str, &[u8])] = &[
    (
        "DejaVuSans.ttf",
        include_bytes!("../../../assets/fonts/DejaVuSans.ttf"),
    ),
    (
        "DejaVuSans-Bold.ttf",
        include_bytes!("../../../assets/fonts/DejaVuSans-Bold.ttf"),
    ),
    (
        "DejaVuSerif.ttf",
        include_bytes!("../../../assets/fonts/DejaVuSerif.ttf"),
    ),
    (
        "DejaVuSerif-Bold.ttf",
        include_bytes!("../../../assets/fonts/DejaVuSerif-Bold.ttf"),
    ),
];

/// Largest font file read from a brand kit (a family's variable TTF is a few MB).
const MAX_FONT_FILE: u64 = 32 * 1024 * 1024;

/// A font database: the bundled faces and a brand kit's own.
#[derive(Clone)]
pub struct FontBook {
    db: Arc<Database>,
}

/// A face chosen for a role, with its bytes so it can be shaped without the database.
#[derive(Clone)]
pub struct LoadedFont {
    pub data: Arc<Vec<u8>>,
    pub index: u32,
    /// The family that was found, e.g. "DejaVu Sans".
    pub family: String,
    /// Weight of the face found (400 regular, 700 bold).
    pub weight: u16,
    /// The family that was asked for first.
    pub requested: String,
}

impl LoadedFont {
    /// Whether the first family asked for was not available.
    pub fn substituted(&self) -> bool {
        !self.family.eq_ignore_ascii_case(&self.requested)
    }

    /// The face's name: the family, with "Bold" for weights of 600 and more.
    pub fn name(&self) -> String {
        if self.weight >= 600 {
            format!("{} Bold", self.family)
        } else {
            self.family.clone()
        }
    }

    /// The face, parsed.
    pub fn face(&self) -> Result<rustybuzz::Face<'_>> {
        rustybuzz::Face::from_slice(&self.data, self.index).ok_or_else(|| Error::InvalidRequest {
            field: "font",
            reason: format!("the {} face cannot be parsed", self.family),
        })
    }
}

impl FontBook {
    /// The bundled faces only.
    pub fn bundled() -> Self {
        Self {
            db: Arc::new(bundled_db()),
        }
    }

    /// The bundled faces and every font file in `dir` (not recursive); a missing folder adds
    /// nothing, an unreadable or unparsable file is an error that names it.
    pub fn with_dir(dir: &Path) -> Result<Self> {
        let mut db = bundled_db();
        if dir.is_dir() {
            let entries = std::fs::read_dir(dir)
                .map_err(Error::io(format!("reading fonts folder {}", dir.display())))?;
            let mut paths: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        matches!(e.to_ascii_lowercase().as_str(), "ttf" | "otf" | "ttc")
                    })
                })
                .collect();
            paths.sort();
            for path in paths {
                let len = std::fs::metadata(&path)
                    .map_err(Error::io(format!("reading {}", path.display())))?
                    .len();
                if len > MAX_FONT_FILE {
                    return Err(Error::InvalidRequest {
                        field: "fonts",
                        reason: format!(
                            "{} is {len} bytes; font files may be at most {MAX_FONT_FILE}",
                            path.display()
                        ),
                    });
                }
                let data = std::fs::read(&path)
                    .map_err(Error::io(format!("reading {}", path.display())))?;
                let ids = db.load_font_source(Source::Binary(Arc::new(data)));
                if ids.is_empty() {
                    return Err(Error::InvalidRequest {
                        field: "fonts",
                        reason: format!("{} is not a TrueType/OpenType font", path.display()),
                    });
                }
            }
        }
        Ok(Self { db: Arc::new(db) })
    }

    /// The database, for the SVG renderer (logos with `<text>`).
    pub fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db)
    }

    /// The best face for the first available of `families` at `weight` (CSS matching), falling
    /// back to sans-serif. Generic names (`sans-serif`, `serif`, `monospace`) are understood.
    pub fn load(&self, families: &[&str], weight: u16) -> Result<LoadedFont> {
        let mut list: Vec<Family<'_>> = families.iter().map(|f| family(f)).collect();
        list.push(Family::SansSerif);
        let id = self
            .db
            .query(&Query {
                families: &list,
                weight: Weight(weight),
                ..Query::default()
            })
            .ok_or_else(|| Error::InvalidRequest {
                field: "font",
                reason: "no font face is available".into(),
            })?;
        let info = self.db.face(id).ok_or_else(|| Error::InvalidRequest {
            field: "font",
            reason: "the matched face vanished from the database".into(),
        })?;
        let family = info
            .families
            .first()
            .map(|(name, _)| name.clone())
            .unwrap_or_default();
        let weight = info.weight.0;
        let (data, index) = self
            .db
            .with_face_data(id, |data, index| (data.to_vec(), index))
            .ok_or_else(|| Error::InvalidRequest {
                field: "font",
                reason: format!("the {family} face cannot be read"),
            })?;
        Ok(LoadedFont {
            data: Arc::new(data),
            index,
            family,
            weight,
            requested: families
                .first()
                .map_or_else(|| "sans-serif".into(), |f| f.to_string()),
        })
    }
}

fn bundled_db() -> Database {
    let mut db = Database::new();
    for (_, bytes) in BUNDLED {
        db.load_font_source(Source::Binary(Arc::new(*bytes)));
    }
    db.set_sans_serif_family("DejaVu Sans");
    db.set_serif_family("DejaVu Serif");
    db.set_monospace_family("DejaVu Sans");
    db.set_cursive_family("DejaVu Serif");
    db.set_fantasy_family("DejaVu Sans");
    db
}

fn family(name: &str) -> Family<'_> {
    match name.trim().to_ascii_lowercase().as_str() {
        "sans-serif" | "sans" => Family::SansSerif,
        "serif" => Family::Serif,
        "monospace" => Family::Monospace,
        "cursive" => Family::Cursive,
        "fantasy" => Family::Fantasy,
        _ => Family::Name(name.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brand_fonts_fall_back_to_the_bundled_faces_and_say_so() -> Result<()> {
        let book = FontBook::bundled();
        let bold = book.load(&["Fraunces", "Georgia", "serif"], 700)?;
        assert_eq!(bold.family, "DejaVu Serif");
        assert_eq!(bold.weight, 700);
        assert!(bold.substituted());
        let regular = book.load(&["Nonexistent Sans"], 400)?;
        assert_eq!(
            (regular.family.as_str(), regular.weight),
            ("DejaVu Sans", 400)
        );
        let exact = book.load(&["DejaVu Sans"], 700)?;
        assert!(!exact.substituted());
        assert!(exact.face().is_ok());
        Ok(())
    }

    #[test]
    fn a_kit_folder_adds_its_fonts_and_rejects_junk() -> Result<()> {
        let dir = tempfile::tempdir().map_err(Error::io("tempdir"))?;
        // A copy of a real face under another file name loads; no folder adds nothing.
        std::fs::write(dir.path().join("house.ttf"), BUNDLED[0].1).map_err(Error::io("write"))?;
        let book = FontBook::with_dir(dir.path())?;
        assert!(book.database().len() > FontBook::bundled().database().len());
        assert!(FontBook::with_dir(&dir.path().join("missing")).is_ok());
        std::fs::write(dir.path().join("broken.otf"), b"not a font").map_err(Error::io("write"))?;
        match FontBook::with_dir(dir.path()) {
            Err(Error::InvalidRequest { field, reason }) => {
                assert_eq!(field, "fonts");
                assert!(reason.contains("broken.otf"), "{reason}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        Ok(())
    }
}
