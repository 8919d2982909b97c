//! Brand kits: a folder with `brand.toml` and guideline documents.
//!
//! ```text
//! examples/brands/solstice/
//!   brand.toml          name, palette, fonts, logos, voice, do/don't, forbidden, required, sizes
//!   logo.svg …          logo files named in brand.toml
//!   guidelines/*.md     guideline documents (Markdown or plain text)
//! ```
//!
//! Every error names the file, the line and column, and the field.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use palette::Srgb;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::{Error, Result};

/// Size limit of `brand.toml`.
pub const MAX_BRAND_TOML_BYTES: u64 = 256 * 1024;
/// Size limit of one guideline document.
pub const MAX_DOCUMENT_BYTES: u64 = 2 * 1024 * 1024;
/// Most guideline documents one brand may have.
pub const MAX_DOCUMENTS: usize = 64;
/// Allowed range of default sizes' width and height, in pixels.
pub const SIZE_RANGE: std::ops::RangeInclusive<u32> = 64..=4096;

/// A colour as `#RRGGBB`.
#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Hex(pub Srgb<u8>);

impl Hex {
    /// The colour in sRGB, 0–255 per channel.
    pub fn rgb(self) -> [u8; 3] {
        [self.0.red, self.0.green, self.0.blue]
    }
}

impl FromStr for Hex {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let digits = s.strip_prefix('#').unwrap_or("");
        if digits.len() != 6 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "`{s}` is not a colour; write `#RRGGBB` with six hexadecimal digits, e.g. `#1E3A5F`"
            ));
        }
        Srgb::<u8>::from_str(digits)
            .map(Hex)
            .map_err(|e| format!("`{s}`: {e}"))
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, g, b] = self.rgb();
        write!(f, "#{r:02X}{g:02X}{b:02X}")
    }
}

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<Hex> for String {
    fn from(h: Hex) -> String {
        h.to_string()
    }
}

/// What a palette colour is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Secondary,
    Accent,
    Background,
    Text,
    Neutral,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
            Role::Accent => "accent",
            Role::Background => "background",
            Role::Text => "text",
            Role::Neutral => "neutral",
        };
        f.write_str(s)
    }
}

/// One colour of the palette.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaletteColour {
    pub name: String,
    pub hex: Hex,
    pub role: Role,
    /// When and how to use it.
    pub usage: String,
}

/// Typefaces.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fonts {
    pub headline: String,
    pub body: String,
    #[serde(default)]
    pub fallback: Vec<String>,
}

/// Where a logo may sit on a layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    TopLeft,
    TopRight,
    BottomLeft,
    BottomRight,
    Centre,
}

/// A logo file and its rules.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Logo {
    /// Absolute path of the file.
    pub path: PathBuf,
    pub description: String,
    pub placement: Vec<Placement>,
    /// Smallest width the logo may be shown at, in pixels.
    pub min_width_px: u32,
    /// Empty space around the logo as a fraction of its width.
    pub clear_space: f32,
    /// Palette colour names it may sit on.
    pub backgrounds: Vec<String>,
}

/// Tone of voice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Voice {
    pub tone: Vec<String>,
    pub summary: String,
}

/// A colour the brand never uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForbiddenColour {
    pub name: String,
    pub hex: Hex,
    pub reason: String,
}

/// A default output size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Size {
    pub name: String,
    pub width: u32,
    pub height: u32,
}

/// A guideline document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Path relative to the kit folder, `/`-separated: the name citations use.
    pub name: String,
    pub text: String,
}

/// A parsed, validated brand kit.
#[derive(Debug, Clone, PartialEq)]
pub struct BrandKit {
    /// The folder name: lowercase letters, digits and `-`.
    pub id: String,
    pub dir: PathBuf,
    pub name: String,
    pub tagline: String,
    pub palette: Vec<PaletteColour>,
    pub fonts: Fonts,
    pub logos: Vec<Logo>,
    pub voice: Voice,
    pub dos: Vec<String>,
    pub donts: Vec<String>,
    pub forbidden_content: Vec<String>,
    pub forbidden_colours: Vec<ForbiddenColour>,
    pub required: Vec<String>,
    pub sizes: Vec<Size>,
    pub documents: Vec<Document>,
}

// ---- the file as written ----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKit {
    name: Spanned<String>,
    #[serde(default)]
    tagline: String,
    #[serde(default)]
    documents: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    palette: Vec<RawColour>,
    fonts: Fonts,
    #[serde(default)]
    logos: Vec<RawLogo>,
    voice: Voice,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    forbidden: RawForbidden,
    #[serde(default)]
    required: Vec<String>,
    #[serde(default)]
    sizes: Vec<Spanned<Size>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColour {
    name: Spanned<String>,
    hex: Spanned<String>,
    role: Role,
    #[serde(default)]
    usage: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogo {
    file: Spanned<String>,
    #[serde(default)]
    description: String,
    placement: Vec<Placement>,
    min_width_px: Spanned<u32>,
    #[serde(default)]
    clear_space: Option<Spanned<f32>>,
    #[serde(default)]
    backgrounds: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default, rename = "do")]
    dos: Vec<String>,
    #[serde(default, rename = "dont")]
    donts: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawForbidden {
    #[serde(default)]
    content: Vec<String>,
    #[serde(default)]
    colours: Vec<RawForbiddenColour>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForbiddenColour {
    name: String,
    hex: Spanned<String>,
    #[serde(default)]
    reason: String,
}

/// Turns byte offsets of one file into line/column errors.
struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn error(&self, span: Option<Range<usize>>, field: Option<String>, message: String) -> Error {
        let (line, column) = span.map_or((1, 1), |s| self.position(s.start));
        Error::BrandKit {
            file: self.file.to_path_buf(),
            line,
            column,
            field,
            message,
        }
    }

    fn at<T>(&self, spanned: &Spanned<T>, field: String, message: String) -> Error {
        self.error(Some(spanned.span()), Some(field), message)
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn read_limited(path: &Path, limit: u64) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(Error::io(format!("reading {}", path.display())))?;
    if meta.len() > limit {
        return Err(Error::BrandKit {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            field: None,
            message: format!("file is {} bytes; the limit is {limit}", meta.len()),
        });
    }
    let bytes = std::fs::read(path).map_err(Error::io(format!("reading {}", path.display())))?;
    String::from_utf8(bytes).map_err(|e| Error::BrandKit {
        file: path.to_path_buf(),
        line: 1,
        column: 1,
        field: None,
        message: format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
    })
}

impl BrandKit {
    /// Load and validate the kit in `dir`. The brand id is the folder's name.
    pub fn load(dir: &Path) -> Result<Self> {
        let dir = dir
            .canonicalize()
            .map_err(Error::io(format!("opening brand kit {}", dir.display())))?;
        let id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let file = dir.join("brand.toml");
        if !valid_id(&id) {
            return Err(Error::BrandKit {
                file,
                line: 1,
                column: 1,
                field: None,
                message: format!(
                    "the kit's folder name `{id}` is its brand id: use 1-64 lowercase letters, digits or `-`"
                ),
            });
        }
        let text = read_limited(&file, MAX_BRAND_TOML_BYTES)?;
        Self::parse(&id, &dir, &file, &text)
    }

    /// Parse `brand.toml` text; documents and logo files are resolved against `dir`.
    pub fn parse(id: &str, dir: &Path, file: &Path, text: &str) -> Result<Self> {
        let src = Source { file, text };
        let raw: RawKit = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            let field = field_from_message(&message);
            src.error(e.span(), field, message)
        })?;

        let name = raw.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(src.at(&raw.name, "name".into(), "must not be empty".into()));
        }

        let mut palette = Vec::with_capacity(raw.palette.len());
        let mut names = HashSet::new();
        for (i, c) in raw.palette.iter().enumerate() {
            let cname = c.name.get_ref().trim().to_string();
            if cname.is_empty() {
                return Err(src.at(
                    &c.name,
                    format!("palette[{i}].name"),
                    "must not be empty".into(),
                ));
            }
            if !names.insert(cname.to_lowercase()) {
                return Err(src.at(
                    &c.name,
                    format!("palette[{i}].name"),
                    format!("colour name `{cname}` is used twice"),
                ));
            }
            let hex = c
                .hex
                .get_ref()
                .parse::<Hex>()
                .map_err(|m| src.at(&c.hex, format!("palette[{i}].hex"), m))?;
            palette.push(PaletteColour {
                name: cname,
                hex,
                role: c.role,
                usage: c.usage.trim().to_string(),
            });
        }
        if palette.is_empty() {
            return Err(src.error(
                None,
                Some("palette".into()),
                "a brand needs at least one palette colour ([[palette]] with name, hex, role)"
                    .into(),
            ));
        }

        let mut logos = Vec::with_capacity(raw.logos.len());
        for (i, l) in raw.logos.iter().enumerate() {
            let rel = l.file.get_ref();
            let path = resolve_inside(dir, rel).ok_or_else(|| {
                src.at(
                    &l.file,
                    format!("logos[{i}].file"),
                    format!("`{rel}` must be a relative path inside the kit folder"),
                )
            })?;
            if !path.is_file() {
                return Err(src.at(
                    &l.file,
                    format!("logos[{i}].file"),
                    format!("`{rel}` does not exist in {}", dir.display()),
                ));
            }
            if l.placement.is_empty() {
                return Err(src.at(
                    &l.file,
                    format!("logos[{i}].placement"),
                    "list at least one of top-left, top-right, bottom-left, bottom-right, centre"
                        .into(),
                ));
            }
            let min_width = *l.min_width_px.get_ref();
            if !(16..=4096).contains(&min_width) {
                return Err(src.at(
                    &l.min_width_px,
                    format!("logos[{i}].min_width_px"),
                    format!("{min_width} is outside 16..=4096"),
                ));
            }
            let clear_space = match &l.clear_space {
                Some(c) if !(0.0..=1.0).contains(c.get_ref()) => {
                    return Err(src.at(
                        c,
                        format!("logos[{i}].clear_space"),
                        format!(
                            "{} is outside 0.0..=1.0 (a fraction of the logo's width)",
                            c.get_ref()
                        ),
                    ));
                }
                Some(c) => *c.get_ref(),
                None => 0.0,
            };
            let mut backgrounds = Vec::new();
            for (j, b) in l.backgrounds.iter().enumerate() {
                let Some(colour) = palette
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(b.get_ref().trim()))
                else {
                    let known: Vec<_> = palette.iter().map(|c| c.name.as_str()).collect();
                    return Err(src.at(
                        b,
                        format!("logos[{i}].backgrounds[{j}]"),
                        format!(
                            "`{}` is not a palette colour; known: {}",
                            b.get_ref(),
                            known.join(", ")
                        ),
                    ));
                };
                backgrounds.push(colour.name.clone());
            }
            logos.push(Logo {
                path,
                description: l.description.trim().to_string(),
                placement: l.placement.clone(),
                min_width_px: min_width,
                clear_space,
                backgrounds,
            });
        }

        let mut forbidden_colours = Vec::new();
        for (i, c) in raw.forbidden.colours.iter().enumerate() {
            let hex = c
                .hex
                .get_ref()
                .parse::<Hex>()
                .map_err(|m| src.at(&c.hex, format!("forbidden.colours[{i}].hex"), m))?;
            if let Some(p) = palette.iter().find(|p| p.hex == hex) {
                return Err(src.at(
                    &c.hex,
                    format!("forbidden.colours[{i}].hex"),
                    format!("{hex} is also the palette colour `{}`", p.name),
                ));
            }
            forbidden_colours.push(ForbiddenColour {
                name: c.name.trim().to_string(),
                hex,
                reason: c.reason.trim().to_string(),
            });
        }

        let mut sizes = Vec::new();
        for (i, s) in raw.sizes.iter().enumerate() {
            let size = s.get_ref();
            for (what, v) in [("width", size.width), ("height", size.height)] {
                if !SIZE_RANGE.contains(&v) {
                    return Err(src.at(
                        s,
                        format!("sizes[{i}].{what}"),
                        format!(
                            "{v} is outside {}..={} pixels",
                            SIZE_RANGE.start(),
                            SIZE_RANGE.end()
                        ),
                    ));
                }
            }
            sizes.push(size.clone());
        }

        let documents = load_documents(dir, &src, raw.documents.as_deref())?;

        Ok(BrandKit {
            id: id.to_string(),
            dir: dir.to_path_buf(),
            name,
            tagline: raw.tagline.trim().to_string(),
            palette,
            fonts: raw.fonts,
            logos,
            voice: raw.voice,
            dos: raw.rules.dos,
            donts: raw.rules.donts,
            forbidden_content: raw.forbidden.content,
            forbidden_colours,
            required: raw.required,
            sizes,
            documents,
        })
    }

    /// The palette colour with this name (case-insensitive).
    pub fn colour(&self, name: &str) -> Option<&PaletteColour> {
        self.palette
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// serde's messages name the field in backticks: "missing field `name`", "unknown field `x`".
fn field_from_message(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next().map(str::to_string)
}

/// `rel` joined to `dir`, or `None` when it is absolute or climbs out with `..`.
fn resolve_inside(dir: &Path, rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    let normal = p
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    (normal && !rel.is_empty()).then(|| dir.join(p))
}

fn load_documents(
    dir: &Path,
    src: &Source<'_>,
    listed: Option<&[Spanned<String>]>,
) -> Result<Vec<Document>> {
    let mut names: Vec<String> = Vec::new();
    match listed {
        Some(list) => {
            for (i, d) in list.iter().enumerate() {
                let rel = d.get_ref();
                let path = resolve_inside(dir, rel).ok_or_else(|| {
                    src.at(
                        d,
                        format!("documents[{i}]"),
                        format!("`{rel}` must be a relative path inside the kit folder"),
                    )
                })?;
                if !path.is_file() {
                    return Err(src.at(
                        d,
                        format!("documents[{i}]"),
                        format!("`{rel}` does not exist in {}", dir.display()),
                    ));
                }
                names.push(rel.replace('\\', "/"));
            }
        }
        None => {
            let folder = dir.join("guidelines");
            if folder.is_dir() {
                let entries = std::fs::read_dir(&folder)
                    .map_err(Error::io(format!("listing {}", folder.display())))?;
                for entry in entries {
                    let entry =
                        entry.map_err(Error::io(format!("listing {}", folder.display())))?;
                    let file_name = entry.file_name().to_string_lossy().to_string();
                    let is_text = file_name.ends_with(".md") || file_name.ends_with(".txt");
                    if is_text && entry.path().is_file() {
                        names.push(format!("guidelines/{file_name}"));
                    }
                }
                names.sort();
            }
        }
    }
    if names.len() > MAX_DOCUMENTS {
        return Err(src.error(
            None,
            Some("documents".into()),
            format!("{} documents; the limit is {MAX_DOCUMENTS}", names.len()),
        ));
    }
    names
        .into_iter()
        .map(|name| {
            let text = read_limited(&dir.join(&name), MAX_DOCUMENT_BYTES)?;
            Ok(Document { name, text })
        })
        .collect()
}
