//! The structured summary of a brand kit: what the agent, the critics and the layout tools need
//! (palette with hex values, forbidden colours and content, logo rules, voice, sizes), stored
//! with the brand's passages so it lives wherever the vectors live (one point per brand).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::kit::{BrandKit, Fonts, Hex, Placement, Role, Size, Voice};

/// A colour in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SummaryColour {
    pub name: String,
    /// `#RRGGBB`.
    pub hex: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub usage: String,
}

impl SummaryColour {
    /// The colour in sRGB, 0–255 per channel (black when the stored hex is malformed, which
    /// ingestion never writes).
    pub fn rgb(&self) -> [u8; 3] {
        self.hex.parse::<Hex>().map_or([0, 0, 0], Hex::rgb)
    }
}

/// A colour the brand never uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SummaryForbiddenColour {
    pub name: String,
    pub hex: String,
    pub reason: String,
}

impl SummaryForbiddenColour {
    /// The colour in sRGB.
    pub fn rgb(&self) -> [u8; 3] {
        self.hex.parse::<Hex>().map_or([0, 0, 0], Hex::rgb)
    }
}

/// A logo and its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SummaryLogo {
    /// File name inside the kit.
    pub file: String,
    pub description: String,
    pub placement: Vec<Placement>,
    pub min_width_px: u32,
    /// Empty space around the logo as a fraction of its width.
    pub clear_space: f32,
    /// Palette colour names it may sit on.
    pub backgrounds: Vec<String>,
}

/// Everything structured about a brand, without its guideline documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KitSummary {
    /// The brand id.
    pub brand: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tagline: String,
    pub palette: Vec<SummaryColour>,
    pub fonts: Fonts,
    pub logos: Vec<SummaryLogo>,
    pub voice: Voice,
    pub dos: Vec<String>,
    pub donts: Vec<String>,
    pub forbidden_content: Vec<String>,
    pub forbidden_colours: Vec<SummaryForbiddenColour>,
    pub required: Vec<String>,
    pub sizes: Vec<Size>,
}

impl KitSummary {
    /// The summary of a parsed kit.
    pub fn of(kit: &BrandKit) -> Self {
        KitSummary {
            brand: kit.id.clone(),
            name: kit.name.clone(),
            tagline: kit.tagline.clone(),
            palette: kit
                .palette
                .iter()
                .map(|c| SummaryColour {
                    name: c.name.clone(),
                    hex: c.hex.to_string(),
                    role: c.role,
                    usage: c.usage.clone(),
                })
                .collect(),
            fonts: kit.fonts.clone(),
            logos: kit
                .logos
                .iter()
                .map(|l| SummaryLogo {
                    file: l
                        .path
                        .file_name()
                        .map(|f| f.to_string_lossy().to_string())
                        .unwrap_or_default(),
                    description: l.description.clone(),
                    placement: l.placement.clone(),
                    min_width_px: l.min_width_px,
                    clear_space: l.clear_space,
                    backgrounds: l.backgrounds.clone(),
                })
                .collect(),
            voice: kit.voice.clone(),
            dos: kit.dos.clone(),
            donts: kit.donts.clone(),
            forbidden_content: kit.forbidden_content.clone(),
            forbidden_colours: kit
                .forbidden_colours
                .iter()
                .map(|c| SummaryForbiddenColour {
                    name: c.name.clone(),
                    hex: c.hex.to_string(),
                    reason: c.reason.clone(),
                })
                .collect(),
            required: kit.required.clone(),
            sizes: kit.sizes.clone(),
        }
    }

    /// The palette colour with this role, first one first.
    pub fn colour_with_role(&self, role: Role) -> Option<&SummaryColour> {
        self.palette.iter().find(|c| c.role == role)
    }
}
