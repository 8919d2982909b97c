//! Suites: briefs with brands, scripted answers and expectations, read from TOML.
//!
//! ```toml
//! name = "smoke"
//! description = "…"
//! brands = "../../examples/brands"   # brand kit folders, relative to this file
//!
//! [[case]]
//! id = "solstice-iced-coffee"
//! brief = "A banner for our summer sale: an iced coffee with a sun behind it."
//! brand = "solstice"
//! answers = ["an iced coffee in a tall glass"]   # in order; "-" skips; none left: skip
//! [case.expect]
//! asks = false
//! palette = "brand"            # or a list of "#RRGGBB", or omitted
//! forbidden = ["neon"]         # terms no prompt or final message may contain (besides the brand's)
//! text = ["Summer sale"]       # text the layout must carry
//! channel = "landscape"        # or size = "1200x628"
//! max_iterations = 2
//! ```

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use atelier_tools::brand::BrandKit;
use atelier_tools::brand::kit::Hex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest brief a case may hold, in characters (the server's default message limit).
pub const MAX_BRIEF_CHARS: usize = 4000;
/// Most cases in one suite.
pub const MAX_CASES: usize = 1000;

/// Named channel sizes a case can expect.
pub const CHANNELS: &[(&str, u32, u32)] = &[
    ("square", 1080, 1080),
    ("landscape", 1200, 628),
    ("story", 1080, 1920),
    ("widescreen", 1920, 1080),
];

/// A suite, loaded and checked.
#[derive(Debug, Clone)]
pub struct Suite {
    pub name: String,
    pub description: String,
    /// Where the suite was read from.
    pub path: PathBuf,
    /// The brand kits the cases use, parsed.
    pub brands: Vec<BrandKit>,
    pub cases: Vec<Case>,
}

/// One brief and what a good run of it looks like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub id: String,
    pub brief: String,
    pub brand: Option<String>,
    /// Answers to the agent's questions, in order; `-` skips. When they run out, the runner
    /// skips ("just go").
    pub answers: Vec<String>,
    pub expect: Expect,
}

/// What the scorers check, resolved (the brand's palette is filled in).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Expect {
    /// Should the agent ask before working? `None`: either is fine (not scored).
    pub asks: Option<bool>,
    /// Colours the image must stay within; empty: not scored.
    pub palette: Vec<PaletteColour>,
    /// Terms no prompt or final message may contain: the case's plus the brand's forbidden
    /// content.
    pub forbidden: Vec<String>,
    /// Text the layout must carry.
    pub text: Vec<String>,
    /// The delivered size (from a channel name or `WxH`); the aspect ratio is scored.
    pub size: Option<ExpectedSize>,
    pub max_iterations: Option<u32>,
}

/// A colour of the expected palette.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaletteColour {
    pub name: String,
    pub rgb: [u8; 3],
}

/// A size a case expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedSize {
    /// The channel name or `WxH` as written.
    pub name: String,
    pub width: u32,
    pub height: u32,
}

impl ExpectedSize {
    /// A channel name from [`CHANNELS`] or `WxH` with sides in 16..=8192.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        if let Some(&(name, width, height)) = CHANNELS.iter().find(|(n, ..)| *n == s) {
            return Ok(ExpectedSize {
                name: name.into(),
                width,
                height,
            });
        }
        let (w, h) = s.split_once('x').ok_or_else(|| {
            format!(
                "`{s}` is neither a channel ({}) nor a size like `1200x628`",
                CHANNELS.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
            )
        })?;
        let side = |v: &str| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (16..=8192).contains(n))
                .ok_or_else(|| format!("`{s}`: each side must be a whole number in 16..=8192"))
        };
        Ok(ExpectedSize {
            name: s.into(),
            width: side(w)?,
            height: side(h)?,
        })
    }

    /// Width over height.
    pub fn aspect(&self) -> f64 {
        f64::from(self.width) / f64::from(self.height)
    }
}

impl fmt::Display for ExpectedSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}×{})", self.name, self.width, self.height)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    brands: Option<PathBuf>,
    #[serde(default, rename = "case")]
    cases: Vec<RawCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    id: String,
    brief: String,
    #[serde(default)]
    brand: Option<String>,
    #[serde(default)]
    answers: Vec<String>,
    #[serde(default)]
    expect: RawExpect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    asks: Option<bool>,
    palette: Option<RawPalette>,
    #[serde(default)]
    forbidden: Vec<String>,
    #[serde(default)]
    text: Vec<String>,
    channel: Option<String>,
    size: Option<String>,
    max_iterations: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawPalette {
    Named(String),
    Colours(Vec<String>),
}

impl Suite {
    /// Read a suite: a path to a `.toml` file, or the name of a suite in `evals/suites/`
    /// (relative to the working directory).
    pub fn load(name_or_path: &str) -> Result<Suite> {
        let path = Path::new(name_or_path);
        let path = if path.extension().is_some() || path.components().count() > 1 {
            path.to_path_buf()
        } else {
            Path::new("evals/suites").join(format!("{name_or_path}.toml"))
        };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Suite {
            path: path.clone(),
            message: format!("cannot read it: {e}"),
        })?;
        Suite::parse(&text, &path)
    }

    /// Parse suite text read from `path` (brand folders are relative to it).
    pub fn parse(text: &str, path: &Path) -> Result<Suite> {
        let bad = |message: String| Error::Suite {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawSuite = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if raw.name.trim().is_empty() {
            return Err(bad("`name` is empty".into()));
        }
        if raw.cases.is_empty() {
            return Err(bad("the suite has no `[[case]]`".into()));
        }
        if raw.cases.len() > MAX_CASES {
            return Err(bad(format!(
                "{} cases; a suite holds at most {MAX_CASES}",
                raw.cases.len()
            )));
        }
        let mut brands = Vec::new();
        if let Some(dir) = &raw.brands {
            let dir = path.parent().unwrap_or(Path::new(".")).join(dir);
            let entries = std::fs::read_dir(&dir).map_err(|e| {
                bad(format!(
                    "`brands`: cannot read the folder {}: {e}",
                    dir.display()
                ))
            })?;
            let mut dirs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("brand.toml").is_file())
                .collect();
            dirs.sort();
            for d in dirs {
                brands.push(BrandKit::load(&d).map_err(|e| bad(format!("`brands`: {e}")))?);
            }
        }
        let mut seen = HashSet::new();
        let mut cases = Vec::with_capacity(raw.cases.len());
        for (i, c) in raw.cases.into_iter().enumerate() {
            let at = |field: &str, message: String| {
                bad(format!("case[{i}] (`{}`): `{field}`: {message}", c.id))
            };
            if c.id.is_empty()
                || c.id.len() > 64
                || !c
                    .id
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
            {
                return Err(at(
                    "id",
                    "use 1-64 lowercase letters, digits or `-` (it names the case's folder)".into(),
                ));
            }
            if !seen.insert(c.id.clone()) {
                return Err(at("id", "another case has this id".into()));
            }
            let chars = c.brief.chars().count();
            if c.brief.trim().is_empty() || chars > MAX_BRIEF_CHARS {
                return Err(at(
                    "brief",
                    format!("{chars} characters; a brief has 1..={MAX_BRIEF_CHARS}"),
                ));
            }
            let kit = match &c.brand {
                None => None,
                Some(b) => Some(brands.iter().find(|k| &k.id == b).ok_or_else(|| {
                    at(
                        "brand",
                        format!(
                            "no kit `{b}` in the suite's `brands` folder; kits: {}",
                            if brands.is_empty() {
                                "none (set `brands`)".to_string()
                            } else {
                                brands
                                    .iter()
                                    .map(|k| k.id.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                        ),
                    )
                })?),
            };
            let e = c.expect;
            let palette = match e.palette {
                None => Vec::new(),
                Some(RawPalette::Named(n)) if n == "brand" => {
                    let kit = kit.ok_or_else(|| {
                        at(
                            "expect.palette",
                            "\"brand\" needs the case to name a `brand`".into(),
                        )
                    })?;
                    kit.palette
                        .iter()
                        .map(|p| PaletteColour {
                            name: p.name.clone(),
                            rgb: p.hex.rgb(),
                        })
                        .collect()
                }
                Some(RawPalette::Named(n)) => {
                    return Err(at(
                        "expect.palette",
                        format!("`{n}`: write \"brand\" or a list of \"#RRGGBB\" colours"),
                    ));
                }
                Some(RawPalette::Colours(list)) => list
                    .iter()
                    .enumerate()
                    .map(|(j, s)| {
                        Hex::from_str(s)
                            .map(|h| PaletteColour {
                                name: s.clone(),
                                rgb: h.rgb(),
                            })
                            .map_err(|m| at(&format!("expect.palette[{j}]"), m))
                    })
                    .collect::<Result<_>>()?,
            };
            let size = match (e.channel, e.size) {
                (Some(_), Some(_)) => {
                    return Err(at(
                        "expect.channel",
                        "give `channel` or `size`, not both".into(),
                    ));
                }
                (Some(ch), None) => Some(
                    ExpectedSize::parse(&ch)
                        .ok()
                        .filter(|s| CHANNELS.iter().any(|c| c.0 == s.name))
                        .ok_or_else(|| {
                            at(
                                "expect.channel",
                                format!(
                                    "`{ch}` is not a channel; channels: {}",
                                    CHANNELS.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
                                ),
                            )
                        })?,
                ),
                (None, Some(s)) => Some(ExpectedSize::parse(&s).map_err(|m| at("expect.size", m))?),
                (None, None) => None,
            };
            if let Some(n) = e.max_iterations
                && !(1..=10).contains(&n)
            {
                return Err(at(
                    "expect.max_iterations",
                    format!("{n} is outside 1..=10"),
                ));
            }
            let mut forbidden: Vec<String> = e
                .forbidden
                .into_iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect();
            if let Some(kit) = kit {
                for term in &kit.forbidden_content {
                    if !forbidden.iter().any(|f| f.eq_ignore_ascii_case(term)) {
                        forbidden.push(term.clone());
                    }
                }
            }
            cases.push(Case {
                id: c.id,
                brief: c.brief,
                brand: c.brand,
                answers: c.answers,
                expect: Expect {
                    asks: e.asks,
                    palette,
                    forbidden,
                    text: e.text,
                    size,
                    max_iterations: e.max_iterations,
                },
            });
        }
        Ok(Suite {
            name: raw.name,
            description: raw.description,
            path: path.to_path_buf(),
            brands,
            cases,
        })
    }

    /// Keep only the first `n` cases (0 keeps all).
    pub fn truncate(&mut self, n: usize) {
        if n > 0 {
            self.cases.truncate(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Suite> {
        Suite::parse(text, Path::new("suite.toml"))
    }

    #[test]
    fn sizes_parse_from_channels_and_dimensions() {
        assert_eq!(ExpectedSize::parse("landscape").map(|s| s.width), Ok(1200));
        assert_eq!(ExpectedSize::parse("640x480").map(|s| s.height), Ok(480));
        let err = ExpectedSize::parse("big").err().unwrap_or_default();
        assert!(err.contains("square"), "{err}");
        assert!(ExpectedSize::parse("0x10").is_err());
    }

    #[test]
    fn errors_name_the_case_and_the_field() {
        let cases = [
            (
                "name = 's'\n[[case]]\nid = 'a'\nbrief = 'x'\n[case.expect]\npalette = ['#12']",
                "expect.palette[0]",
            ),
            (
                "name = 's'\n[[case]]\nid = 'a'\nbrief = 'x'\n[[case]]\nid = 'a'\nbrief = 'y'",
                "another case has this id",
            ),
            (
                "name = 's'\n[[case]]\nid = 'a'\nbrief = 'x'\nbrand = 'nope'",
                "no kit `nope`",
            ),
            ("name = 's'\n[[case]]\nid = 'A b'\nbrief = 'x'", "`id`"),
            ("name = 's'\n[[case]]\nid = 'a'\nbrief = ''", "`brief`"),
            (
                "name = 's'\n[[case]]\nid = 'a'\nbrief = 'x'\n[case.expect]\nchannel = 'tv'",
                "is not a channel",
            ),
            (
                "name = 's'\n[[case]]\nid = 'a'\nbrief = 'x'\ncolour = 'red'",
                "unknown field `colour`",
            ),
            ("name = 's'", "no `[[case]]`"),
        ];
        for (text, expected) in cases {
            let err = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(expected), "{text:?} gave {err:?}");
            assert!(err.contains("suite.toml"), "{err}");
        }
    }

    #[test]
    fn explicit_palettes_and_sizes_resolve() -> Result<()> {
        let s = parse(
            "name = 's'\n[[case]]\nid = 'a'\nbrief = 'x'\nanswers = ['-']\n[case.expect]\n\
             asks = true\npalette = ['#FF0000']\nsize = '100x50'\nmax_iterations = 2",
        )?;
        let e = &s.cases[0].expect;
        assert_eq!(e.asks, Some(true));
        assert_eq!(e.palette[0].rgb, [255, 0, 0]);
        assert_eq!(e.size.as_ref().map(ExpectedSize::aspect), Some(2.0));
        assert_eq!(e.max_iterations, Some(2));
        Ok(())
    }
}
