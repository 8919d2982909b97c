//! `critique_image`: checks an image against its brief and its brand, each check with a score,
//! a reason and, when it fails, a concrete fix the agent can apply.
//!
//! Checks (each 0–1, pass at its threshold):
//! - `technical`: not blank, exposure in range, little clipping, no speckle noise, no tile
//!   grid (blockiness);
//! - `requested_colours`: every colour the plan asked for covers a visible share of the image
//!   (CIEDE2000 ≤ [`PRESENT_DELTA_E`], share ≥ [`PRESENT_SHARE`]);
//! - `brand_palette`: most of the image is in the brand's palette (share within
//!   [`PALETTE_DELTA_E`] of a palette colour ≥ [`MIN_ON_PALETTE`]);
//! - `forbidden_colours`: no visible area in a colour the brand forbids;
//! - `safety`: the prompt names nothing the brand or the service forbids, and the open_nsfw
//!   classifier scores the pixels below [`NSFW_THRESHOLD`] (when it is installed; otherwise the
//!   check says the pixels were not classified);
//! - `size` (when a channel size is given): the image has the channel's aspect ratio and at
//!   least its pixels;
//! - `layout` (when `compose_layout` made the image): each text element is present (its colour
//!   covers part of its box), inside the safe margins, and reads at WCAG contrast ≥ 4.5 measured
//!   on the pixels (text colour against the other colour clusters of its box); the logo is inside
//!   the safe margins.
//!
//! - `alignment` (when CLIP weights are configured): the CLIP cosine similarity of the image
//!   and the prompt reaches the configured threshold ([`DEFAULT_ALIGNMENT_THRESHOLD`] unless
//!   set); the score is CLIPScore's rescaling `min(1, 2.5 · max(cos, 0))` (Hessel et al., 2021).
//!
//! What it cannot see is said, not guessed: without CLIP weights there is no check that the
//! image shows the subject the brief names, and the report lists `alignment` under
//! `not_measured` with the reason (see `docs/agent.md`).

use atelier_inference::vision::colour::{
    Dominant, contrast_ratio, delta_e_lab, dominant_colours, lab_to_rgb,
};
use atelier_inference::vision::quality::{Quality, measure};
use std::sync::Arc;

use atelier_inference::vision::clip::ClipScorer;
use atelier_inference::vision::safety::NsfwClassifier;
use image::RgbImage;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::brand::KitSummary;
use crate::brand::kit::Hex;
use crate::layout::{ElementKind, LayoutReport, MIN_CONTRAST};
use crate::resize::Rect;

/// Largest CIEDE2000 distance at which a requested colour counts as present.
pub const PRESENT_DELTA_E: f32 = 15.0;
/// Smallest share of the image a present colour covers.
pub const PRESENT_SHARE: f32 = 0.02;
/// Largest CIEDE2000 distance at which an area counts as a palette colour.
pub const PALETTE_DELTA_E: f32 = 20.0;
/// Smallest share of the image in palette colours for the palette check to pass.
pub const MIN_ON_PALETTE: f32 = 0.6;
/// Largest CIEDE2000 distance at which an area counts as a forbidden colour.
pub const FORBIDDEN_DELTA_E: f32 = 10.0;
/// open_nsfw probability at and above which an image fails the safety check (the classifier's
/// usual operating point; Yahoo's guidance reads below 0.2 as safe, above 0.8 as not).
pub const NSFW_THRESHOLD: f32 = 0.5;
/// Dominant colours the analysis looks at.
const CLUSTERS: usize = 6;

/// Terms no prompt may contain, whatever the brand (matched as whole words, case-insensitive).
pub const SERVICE_DENYLIST: &[&str] = &[
    "nude",
    "naked",
    "nsfw",
    "gore",
    "beheading",
    "swastika",
    "child porn",
    "csam",
];

/// CLIP cosine similarity below which an image fails the alignment check. Matching
/// image–caption pairs score about 0.25–0.35 with OpenAI's ViT-B/32 and unrelated pairs about
/// 0.10–0.18; other checkpoints may need their own value (`critique.alignment_threshold`).
pub const DEFAULT_ALIGNMENT_THRESHOLD: f32 = 0.22;
/// Why alignment is not measured when no CLIP weights are configured.
pub const NO_CLIP: &str = "no CLIP weights are configured (set `critique.clip` to a CLIP \
     checkpoint directory or `hf:openai/clip-vit-base-patch32`)";

/// A CLIP model and the similarity an image needs to pass.
#[derive(Debug, Clone)]
pub struct ClipCritic {
    pub scorer: Arc<ClipScorer>,
    pub threshold: f32,
}

/// The models behind the pixel checks; each is optional and its absence is reported.
#[derive(Debug, Clone, Default)]
pub struct Critics {
    /// open_nsfw for the safety check.
    pub safety: Option<Arc<NsfwClassifier>>,
    /// CLIP for the alignment check.
    pub alignment: Option<ClipCritic>,
}

/// What the models saw in one image.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelFindings {
    /// open_nsfw's probability that the image is not safe for work; `None` when the classifier
    /// is not loaded (the safety check then says the pixels were not classified).
    pub nsfw: Option<f32>,
    /// CLIP's verdict, or why alignment was not measured.
    pub alignment: Result<Alignment, String>,
}

impl Default for PixelFindings {
    fn default() -> Self {
        PixelFindings {
            nsfw: None,
            alignment: Err(NO_CLIP.into()),
        }
    }
}

/// CLIP's similarity of an image and its prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Alignment {
    /// The checkpoint's name.
    pub model: String,
    /// Cosine similarity, −1 to 1.
    pub cosine: f32,
    /// Passing similarity.
    pub threshold: f32,
    /// The prompt was longer than CLIP's window; only its start was compared.
    pub truncated: bool,
}

impl Critics {
    /// Run the loaded models on `image`; `prompt` is what the image should show. A model that
    /// cannot read the image (outside its limits) is logged and its check reports why.
    pub fn look(&self, image: &RgbImage, prompt: &str) -> PixelFindings {
        let nsfw = nsfw_probability(self.safety.as_deref(), image);
        let alignment = match &self.alignment {
            None => Err(NO_CLIP.to_string()),
            Some(critic) => critic
                .scorer
                .similarity(image, prompt)
                .map(|s| Alignment {
                    model: critic.scorer.name().to_string(),
                    cosine: s.cosine,
                    threshold: critic.threshold,
                    truncated: s.truncated,
                })
                .map_err(|e| {
                    tracing::warn!("CLIP could not score an image: {e}");
                    format!("CLIP could not score the image: {e}")
                }),
        };
        PixelFindings { nsfw, alignment }
    }
}

/// A colour the plan asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestedColour {
    pub name: String,
    pub rgb: [u8; 3],
}

/// What to critique.
#[derive(Debug, Clone, Copy)]
pub struct CritiqueInput<'a> {
    pub image: &'a RgbImage,
    /// The prompt the image was generated from.
    pub prompt: &'a str,
    /// Colours the plan asked for.
    pub requested: &'a [RequestedColour],
    /// The brand's rules, when the brief has a brand.
    pub kit: Option<&'a KitSummary>,
    /// The channel's size, when the image is delivered for one.
    pub target: Option<(u32, u32)>,
    /// What `compose_layout` placed, when it made the image.
    pub layout: Option<&'a LayoutReport>,
    /// What the pixel models (open_nsfw, CLIP) saw; [`Critics::look`] makes it.
    pub pixels: &'a PixelFindings,
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Check {
    /// `technical`, `requested_colours`, `brand_palette`, `forbidden_colours`, `safety`,
    /// `alignment`, `size` or `layout`.
    pub name: String,
    pub passed: bool,
    /// 0–1; higher is better.
    pub score: f32,
    /// What was measured, in words.
    pub detail: String,
    /// When failed: what to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// All checks of one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Critique {
    /// Every check passed.
    pub passed: bool,
    /// Mean of the check scores.
    pub score: f32,
    pub checks: Vec<Check>,
    /// Checks that did not run because a model they need is missing, each with the reason:
    /// never a made-up score.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_measured: Vec<NotMeasured>,
    /// Technical measurements behind the `technical` check.
    #[schemars(skip)]
    pub quality: Quality,
}

/// A check that was not made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NotMeasured {
    pub name: String,
    pub reason: String,
}

impl Critique {
    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

/// open_nsfw's probability that `image` is not safe for work, when the classifier is loaded.
/// A classification error (an image outside the model's limits) is logged and leaves the
/// pixels unclassified, which the safety check reports as such.
fn nsfw_probability(classifier: Option<&NsfwClassifier>, image: &RgbImage) -> Option<f32> {
    match classifier?.classify(image) {
        Ok(score) => Some(score.nsfw),
        Err(e) => {
            tracing::warn!("open_nsfw could not classify an image: {e}");
            None
        }
    }
}

/// Run every check that applies.
pub fn critique_image(input: CritiqueInput<'_>) -> Critique {
    let quality = measure(input.image);
    let rgb = input.image.as_raw();
    let dominant: Vec<Dominant> = dominant_colours(rgb, CLUSTERS)
        .into_iter()
        .filter(|d| d.share >= PRESENT_SHARE)
        .collect();
    let mut checks = vec![technical(&quality)];
    if !input.requested.is_empty() {
        checks.push(requested_colours(&dominant, input.requested));
    }
    if let Some(kit) = input.kit {
        if !kit.palette.is_empty() {
            checks.push(brand_palette(&dominant, kit));
        }
        if !kit.forbidden_colours.is_empty() {
            checks.push(forbidden_colours(&dominant, kit));
        }
    }
    checks.push(safety(input.prompt, input.kit, input.pixels.nsfw));
    let mut not_measured = Vec::new();
    match &input.pixels.alignment {
        Ok(alignment) => checks.push(alignment_check(alignment)),
        Err(reason) => not_measured.push(NotMeasured {
            name: "alignment".into(),
            reason: reason.clone(),
        }),
    }
    if let Some(target) = input.target {
        checks.push(size(input.image, target));
    }
    if let Some(layout) = input.layout {
        checks.push(layout_check(input.image, layout));
    }
    let score = checks.iter().map(|c| c.score).sum::<f32>() / checks.len() as f32;
    Critique {
        passed: checks.iter().all(|c| c.passed),
        score,
        checks,
        not_measured,
        quality,
    }
}

fn alignment_check(a: &Alignment) -> Check {
    let passed = a.cosine >= a.threshold;
    let cut = if a.truncated {
        " (the prompt was cut to CLIP's window; only its start was compared)"
    } else {
        ""
    };
    let relation = if passed { "≥" } else { "<" };
    Check {
        name: "alignment".into(),
        passed,
        score: (2.5 * a.cosine.max(0.0)).min(1.0),
        detail: format!(
            "CLIP ({}) similarity of the image and the prompt {:.3} {relation} {:.3}{cut}",
            a.model, a.cosine, a.threshold
        ),
        fix: (!passed).then(|| {
            "the image does not show what the prompt describes: lead the prompt with the \
             subject in plain concrete words, drop abstract adjectives, and try another seed"
                .to_string()
        }),
    }
}

fn technical(q: &Quality) -> Check {
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    if q.contrast < 0.03 {
        problems.push(format!("almost one flat tone (contrast {:.3})", q.contrast));
        fixes.push("describe at least two contrasting elements (a subject on a ground)");
    }
    if !(0.06..=0.94).contains(&q.mean_luma) {
        problems.push(format!("exposure off (mean luma {:.2})", q.mean_luma));
        fixes.push("ask for a mid-tone ground instead of pure black or white");
    }
    if q.clipped > 0.6 {
        problems.push(format!("{:.0}% of pixels clipped", q.clipped * 100.0));
        fixes.push("avoid pure black and pure white areas");
    }
    if q.blockiness > atelier_inference::vision::quality::BLOCKY {
        problems.push(format!(
            "a visible grid of {} px tiles (blockiness {:.1})",
            q.block_size, q.blockiness
        ));
        fixes.push("generate again with more sampling steps, or at the model's native size");
    }
    if q.speckle > 0.15 {
        problems.push(format!(
            "speckle noise on {:.0}% of pixels",
            q.speckle * 100.0
        ));
        fixes.push("use more sampling steps");
    }
    let score = 1.0 - problems.len() as f32 / 5.0;
    Check {
        name: "technical".into(),
        passed: problems.is_empty(),
        score,
        detail: if problems.is_empty() {
            format!(
                "exposure {:.2}, contrast {:.2}, {:.0}% clipped, no speckle, blockiness {:.2}",
                q.mean_luma,
                q.contrast,
                q.clipped * 100.0,
                q.blockiness
            )
        } else {
            problems.join("; ")
        },
        fix: (!fixes.is_empty()).then(|| fixes.join("; ")),
    }
}

/// Nearest dominant colour to `rgb`: its distance and share.
fn nearest(dominant: &[Dominant], rgb: [u8; 3]) -> Option<(f32, f32)> {
    dominant
        .iter()
        .map(|d| (delta_e_lab(d.lab, rgb), d.share))
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

fn requested_colours(dominant: &[Dominant], requested: &[RequestedColour]) -> Check {
    let mut missing = Vec::new();
    let mut seen = Vec::new();
    for c in requested {
        match nearest(dominant, c.rgb) {
            Some((d, share)) if d <= PRESENT_DELTA_E => {
                seen.push(format!("{} ({:.0}%, ΔE {d:.1})", c.name, share * 100.0));
            }
            Some((d, _)) => missing.push(format!("{} (nearest ΔE {d:.1})", c.name)),
            None => missing.push(c.name.clone()),
        }
    }
    let score = seen.len() as f32 / requested.len() as f32;
    Check {
        name: "requested_colours".into(),
        passed: missing.is_empty(),
        score,
        detail: if missing.is_empty() {
            format!("present: {}", seen.join(", "))
        } else {
            format!("missing: {}", missing.join(", "))
        },
        fix: (!missing.is_empty()).then(|| {
            format!(
                "name the missing colours first and plainly in the prompt: {}",
                missing
                    .iter()
                    .map(|m| m.split(" (").next().unwrap_or(m))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }),
    }
}

fn brand_palette(dominant: &[Dominant], kit: &KitSummary) -> Check {
    let covered: f32 = dominant.iter().map(|d| d.share).sum::<f32>().max(1e-6);
    let mut on = 0f32;
    let mut off = Vec::new();
    for d in dominant {
        let best = kit
            .palette
            .iter()
            .map(|c| (delta_e_lab(d.lab, c.rgb()), c))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        match best {
            Some((de, _)) if de <= PALETTE_DELTA_E => on += d.share,
            Some((de, c)) => off.push(format!(
                "{:.0}% of the image is ΔE {de:.0} from the nearest palette colour ({})",
                d.share * 100.0,
                c.name
            )),
            None => {}
        }
    }
    let share = on / covered;
    let passed = share >= MIN_ON_PALETTE;
    let ground = kit
        .colour_with_role(crate::brand::kit::Role::Background)
        .or_else(|| kit.palette.first());
    Check {
        name: "brand_palette".into(),
        passed,
        score: (share / MIN_ON_PALETTE).min(1.0),
        detail: if off.is_empty() {
            format!(
                "{:.0}% of the image in {}'s palette",
                share * 100.0,
                kit.name
            )
        } else {
            format!(
                "{:.0}% of the image in {}'s palette; {}",
                share * 100.0,
                kit.name,
                off.join("; ")
            )
        },
        fix: (!passed).then(|| {
            format!(
                "keep to the palette: a {} ground with {} accents",
                ground.map_or("palette", |c| c.name.as_str()),
                kit.palette
                    .iter()
                    .filter(|c| Some(c.name.as_str()) != ground.map(|g| g.name.as_str()))
                    .map(|c| c.name.as_str())
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        }),
    }
}

fn forbidden_colours(dominant: &[Dominant], kit: &KitSummary) -> Check {
    let mut found = Vec::new();
    for f in &kit.forbidden_colours {
        if let Some((de, share)) = nearest(dominant, f.rgb())
            && de <= FORBIDDEN_DELTA_E
        {
            found.push((f, de, share));
        }
    }
    let worst = found.iter().map(|(_, _, s)| *s).fold(0f32, f32::max);
    Check {
        name: "forbidden_colours".into(),
        passed: found.is_empty(),
        score: 1.0 - worst.min(1.0),
        detail: if found.is_empty() {
            "no forbidden colour covers a visible area".into()
        } else {
            found
                .iter()
                .map(|(f, de, s)| {
                    format!(
                        "{} {} covers {:.0}% (ΔE {de:.1}): {}",
                        f.name,
                        f.hex,
                        s * 100.0,
                        f.reason
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
        fix: (!found.is_empty()).then(|| {
            format!(
                "remove {} from the prompt and name palette colours instead",
                found
                    .iter()
                    .map(|(f, _, _)| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }),
    }
}

/// Largest relative difference of aspect ratio that still counts as the channel's.
pub const ASPECT_TOLERANCE: f64 = 0.01;

fn size(image: &RgbImage, (tw, th): (u32, u32)) -> Check {
    let (w, h) = image.dimensions();
    let aspect = f64::from(w) / f64::from(h.max(1));
    let wanted = f64::from(tw) / f64::from(th.max(1));
    let aspect_ok = (aspect / wanted - 1.0).abs() <= ASPECT_TOLERANCE;
    let big_enough = w >= tw && h >= th;
    let passed = aspect_ok && big_enough;
    Check {
        name: "size".into(),
        passed,
        score: match (aspect_ok, big_enough) {
            (true, true) => 1.0,
            (true, false) => 0.5,
            _ => 0.0,
        },
        detail: if passed {
            format!("{w}×{h} fits the channel's {tw}×{th}")
        } else if aspect_ok {
            format!("{w}×{h} has the channel's shape but fewer pixels than {tw}×{th}")
        } else {
            format!(
                "{w}×{h} (aspect {aspect:.2}) is not the channel's {tw}×{th} (aspect {wanted:.2})"
            )
        },
        fix: (!passed)
            .then(|| format!("resize to {tw}×{th} with the resize tool (crop keeps the subject)")),
    }
}

/// Contrast of `text` in `rect` measured on the pixels: the text colour against the other
/// colour clusters covering at least a tenth of the box; `None` when the box is empty.
fn measured_contrast(image: &RgbImage, rect: Rect, text: [u8; 3]) -> Option<(f32, f32)> {
    let (w, h) = image.dimensions();
    let x1 = (rect.x + rect.width).min(w);
    let y1 = (rect.y + rect.height).min(h);
    if rect.x >= x1 || rect.y >= y1 {
        return None;
    }
    let mut rgb = Vec::with_capacity(((x1 - rect.x) * (y1 - rect.y) * 3) as usize);
    for y in rect.y..y1 {
        for x in rect.x..x1 {
            rgb.extend_from_slice(&image.get_pixel(x, y).0);
        }
    }
    let clusters = dominant_colours(&rgb, 3);
    let ink: f32 = clusters
        .iter()
        .filter(|d| delta_e_lab(d.lab, text) <= 12.0)
        .map(|d| d.share)
        .sum();
    let contrast = clusters
        .iter()
        .filter(|d| d.share >= 0.1 && delta_e_lab(d.lab, text) > 25.0)
        .map(|d| contrast_ratio(lab_to_rgb(d.lab), text))
        .fold(f32::INFINITY, f32::min);
    Some((ink, if contrast.is_finite() { contrast } else { 1.0 }))
}

fn inside(r: Rect, area: Rect) -> bool {
    r.x >= area.x
        && r.y >= area.y
        && r.x + r.width <= area.x + area.width
        && r.y + r.height <= area.y + area.height
}

fn layout_check(image: &RgbImage, layout: &LayoutReport) -> Check {
    let mut findings = Vec::new();
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    let mut tests = 0usize;
    if image.dimensions() != (layout.width, layout.height) {
        problems.push(format!(
            "the image is {}×{} but the layout was made for {}×{}",
            image.width(),
            image.height(),
            layout.width,
            layout.height
        ));
        fixes.push("compose the layout again on the delivered image".to_string());
    }
    if layout.element(ElementKind::Headline).is_none() {
        problems.push("no headline".into());
        fixes.push("set the headline with compose_layout".into());
    }
    for e in &layout.elements {
        let name = match e.kind {
            ElementKind::Headline => "headline",
            ElementKind::Subline => "subline",
            ElementKind::Cta => "call to action",
            ElementKind::Logo => "logo",
        };
        tests += 1;
        if !inside(e.rect, layout.safe_area) {
            problems.push(format!("the {name} leaves the safe area"));
            fixes.push(format!("keep the {name} inside the safe margins"));
        }
        let Some(colour) = e.colour.as_deref().and_then(|c| c.parse::<Hex>().ok()) else {
            continue;
        };
        tests += 2;
        match measured_contrast(image, e.rect, colour.rgb()) {
            Some((ink, contrast)) => {
                if ink < 0.02 {
                    problems.push(format!(
                        "the {name} is not visible (its colour covers {:.1}% of its box)",
                        ink * 100.0
                    ));
                    fixes.push(format!("set the {name} again"));
                }
                if contrast < MIN_CONTRAST {
                    problems.push(format!(
                        "the {name} reads at {contrast:.1}:1 against its background, below {MIN_CONTRAST}:1"
                    ));
                    fixes.push(format!(
                        "use the panel template or a scrim behind the {name}"
                    ));
                } else {
                    findings.push(format!("{name} {contrast:.1}:1"));
                }
            }
            None => problems.push(format!("the {name} has an empty box")),
        }
    }
    let failed = problems.len().min(tests.max(1));
    Check {
        name: "layout".into(),
        passed: problems.is_empty(),
        score: 1.0 - failed as f32 / tests.max(1) as f32,
        detail: if problems.is_empty() {
            format!(
                "{} template: every element inside the safe area; contrast {}",
                layout.template.name(),
                findings.join(", ")
            )
        } else {
            problems.join("; ")
        },
        fix: (!fixes.is_empty()).then(|| fixes.join("; ")),
    }
}

/// Whole-word, case-insensitive search for `term` in `text`.
pub fn mentions(text: &str, term: &str) -> bool {
    let text = text.to_lowercase();
    let term = term.to_lowercase();
    let term = term.trim();
    if term.is_empty() {
        return false;
    }
    text.match_indices(term).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + term.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// Words that carry no meaning of their own in a rule or a prompt.
const STOP: &[&str] = &[
    "the", "and", "for", "with", "our", "any", "other", "that", "this", "are", "was", "its",
    "into", "from", "about", "over", "under", "through", "scenes", "scene", "images", "image",
    "imagery", "showing", "shown", "show", "content", "use", "never", "not", "can", "must",
    "should", "all", "every", "some", "claims",
];

/// A crude stem: lowercase, common English suffixes off ("riding", "rider" → "rid").
pub fn stem(word: &str) -> String {
    let w = word.to_lowercase();
    for suffix in ["ings", "ing", "ers", "er", "es", "s", "ed"] {
        if let Some(base) = w.strip_suffix(suffix)
            && base.chars().count() >= 3
        {
            return base.to_string();
        }
    }
    w
}

/// The meaningful stems of a text, in order.
pub fn stems(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3 && !STOP.contains(&w.to_lowercase().as_str()))
        .map(stem)
        .collect()
}

/// The rules `text` runs into: a rule matches when every one of its meaningful words appears
/// in the text (as a stem), negations included, so "a rider with a helmet" does not match
/// "riding without a helmet" but "a rider without a helmet" does. Conservative on purpose: a
/// rule paraphrased with other words is missed rather than an innocent text flagged.
pub fn forbidden_matches<'a>(text: &str, rules: &'a [String]) -> Vec<&'a str> {
    let have: std::collections::HashSet<String> = stems(text).into_iter().collect();
    rules
        .iter()
        .filter(|rule| {
            let need = stems(rule);
            !need.is_empty() && need.iter().all(|s| have.contains(s))
        })
        .map(String::as_str)
        .collect()
}

fn safety(prompt: &str, kit: Option<&KitSummary>, nsfw: Option<f32>) -> Check {
    let mut hits: Vec<String> = SERVICE_DENYLIST
        .iter()
        .filter(|t| mentions(prompt, t))
        .map(|t| format!("`{t}` (service policy)"))
        .collect();
    if let Some(kit) = kit {
        for rule in forbidden_matches(prompt, &kit.forbidden_content) {
            hits.push(format!("what {} forbids: {rule}", kit.name));
        }
    }
    let unsafe_pixels = nsfw.filter(|p| *p >= NSFW_THRESHOLD);
    let prompt_part = if hits.is_empty() {
        "the prompt names nothing forbidden".to_string()
    } else {
        format!("the prompt names {}", hits.join(", "))
    };
    let pixel_part = match nsfw {
        Some(p) if p >= NSFW_THRESHOLD => format!(
            "the image classifier rates it not safe for work (open_nsfw {p:.2} ≥ {NSFW_THRESHOLD:.2})"
        ),
        Some(p) => format!("open_nsfw {p:.2} (< {NSFW_THRESHOLD:.2})"),
        None => "pixels not classified (the open-nsfw classifier is not loaded; \
                 `atelier models pull open-nsfw` installs it)"
            .to_string(),
    };
    let mut fixes = Vec::new();
    if !hits.is_empty() {
        fixes.push("rewrite the prompt without the forbidden terms");
    }
    if unsafe_pixels.is_some() {
        fixes.push(
            "generate again with another seed and a prompt without people, or with people fully clothed",
        );
    }
    let score = if !hits.is_empty() {
        0.0
    } else {
        unsafe_pixels.map_or(1.0, |p| 1.0 - p)
    };
    Check {
        name: "safety".into(),
        passed: hits.is_empty() && unsafe_pixels.is_none(),
        score,
        detail: format!("{prompt_part}; {pixel_part}"),
        fix: (!fixes.is_empty()).then(|| fixes.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kit() -> KitSummary {
        serde_json::from_value(serde_json::json!({
            "brand": "b", "name": "B",
            "palette": [
                {"name": "Navy", "hex": "#141E5A", "role": "background"},
                {"name": "Gold", "hex": "#D4AF37", "role": "accent"}
            ],
            "fonts": {"headline": "A", "body": "B"},
            "logos": [],
            "voice": {"tone": [], "summary": ""},
            "dos": [], "donts": [],
            "forbidden_content": ["alcohol or drinking scenes"],
            "forbidden_colours": [{"name": "Neon green", "hex": "#39FF14", "reason": "clashes"}],
            "required": [], "sizes": []
        }))
        .unwrap()
    }

    fn split(a: [u8; 3], b: [u8; 3], share_b: f32) -> RgbImage {
        RgbImage::from_fn(64, 64, |x, _| {
            if (x as f32) < 64.0 * (1.0 - share_b) {
                image::Rgb(a)
            } else {
                image::Rgb(b)
            }
        })
    }

    #[test]
    fn an_on_brand_image_passes_and_an_off_brand_one_fails_with_fixes() {
        let kit = kit();
        let navy = RequestedColour {
            name: "navy".into(),
            rgb: [20, 30, 90],
        };
        let good = split([20, 30, 90], [212, 175, 55], 0.3);
        let c = critique_image(CritiqueInput {
            image: &good,
            prompt: "a navy background with a gold circle",
            requested: std::slice::from_ref(&navy),
            kit: Some(&kit),
            target: None,
            layout: None,
            pixels: &PixelFindings::default(),
        });
        assert!(c.passed, "{c:#?}");
        assert_eq!(c.checks.len(), 5);

        let bad = split([57, 255, 20], [240, 240, 240], 0.5);
        let c = critique_image(CritiqueInput {
            image: &bad,
            prompt: "friends drinking beer, alcohol everywhere",
            requested: &[navy],
            kit: Some(&kit),
            target: None,
            layout: None,
            pixels: &PixelFindings::default(),
        });
        assert!(!c.passed);
        let failed: Vec<&str> = c.failures().map(|f| f.name.as_str()).collect();
        assert_eq!(
            failed,
            [
                "requested_colours",
                "brand_palette",
                "forbidden_colours",
                "safety"
            ],
            "{c:#?}"
        );
        assert!(c.failures().all(|f| f.fix.is_some()));
        assert!(c.score < 0.5);
    }

    #[test]
    fn the_safety_check_reads_the_image_classifier_and_says_when_it_did_not() {
        let image = split([20, 30, 90], [212, 175, 55], 0.3);
        let safety_of = |nsfw| {
            let pixels = PixelFindings {
                nsfw,
                ..PixelFindings::default()
            };
            critique_image(CritiqueInput {
                image: &image,
                prompt: "a navy background with a gold circle",
                requested: &[],
                kit: None,
                target: None,
                layout: None,
                pixels: &pixels,
            })
            .checks
            .into_iter()
            .find(|c| c.name == "safety")
            .unwrap()
        };
        let safe = safety_of(Some(0.03));
        assert!(safe.passed && safe.score == 1.0, "{safe:?}");
        assert!(safe.detail.contains("open_nsfw 0.03"), "{safe:?}");

        let flagged = safety_of(Some(0.91));
        assert!(!flagged.passed, "{flagged:?}");
        assert!((flagged.score - 0.09).abs() < 1e-4, "{flagged:?}");
        assert!(
            flagged.detail.contains("not safe for work (open_nsfw 0.91"),
            "{flagged:?}"
        );
        assert!(
            flagged.fix.as_deref().unwrap().contains("another seed"),
            "{flagged:?}"
        );

        let unmeasured = safety_of(None);
        assert!(unmeasured.passed, "{unmeasured:?}");
        assert!(
            unmeasured.detail.contains("pixels not classified"),
            "{unmeasured:?}"
        );
    }

    #[test]
    fn the_alignment_check_reads_clip_and_is_listed_as_not_measured_without_it() {
        let image = split([20, 30, 90], [212, 175, 55], 0.3);
        let critique_with = |alignment| {
            critique_image(CritiqueInput {
                image: &image,
                prompt: "a navy background with a gold circle",
                requested: &[],
                kit: None,
                target: None,
                layout: None,
                pixels: &PixelFindings {
                    nsfw: None,
                    alignment,
                },
            })
        };
        let clip = |cosine| Alignment {
            model: "clip-vit-base-patch32".into(),
            cosine,
            threshold: DEFAULT_ALIGNMENT_THRESHOLD,
            truncated: false,
        };
        let good = critique_with(Ok(clip(0.31)));
        let check = good.checks.iter().find(|c| c.name == "alignment").unwrap();
        assert!(check.passed && check.fix.is_none(), "{check:?}");
        assert!((check.score - 0.775).abs() < 1e-4, "{check:?}");
        assert!(check.detail.contains("0.310 ≥ 0.220"), "{check:?}");
        assert!(good.not_measured.is_empty());

        let poor = critique_with(Ok(clip(0.12)));
        assert!(!poor.passed);
        let check = poor.failures().next().unwrap();
        assert_eq!(check.name, "alignment");
        assert!(check.detail.contains("0.120 < 0.220"), "{check:?}");
        assert!(
            check.fix.as_deref().unwrap().contains("subject"),
            "{check:?}"
        );

        // Without CLIP: no alignment check, no made-up score, and the report says why.
        let unmeasured = critique_with(Err(NO_CLIP.into()));
        assert!(unmeasured.checks.iter().all(|c| c.name != "alignment"));
        assert_eq!(unmeasured.not_measured.len(), 1);
        assert_eq!(unmeasured.not_measured[0].name, "alignment");
        let json = serde_json::to_value(&unmeasured).unwrap();
        assert_eq!(json["not_measured"][0]["name"], "alignment");
        assert!(
            json["not_measured"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("critique.clip")
        );
    }

    #[test]
    fn blank_images_fail_the_technical_check() {
        let flat = RgbImage::from_pixel(32, 32, image::Rgb([0, 0, 0]));
        let c = critique_image(CritiqueInput {
            image: &flat,
            prompt: "x",
            requested: &[],
            kit: None,
            target: None,
            layout: None,
            pixels: &PixelFindings::default(),
        });
        assert!(!c.passed);
        assert_eq!(c.checks[0].name, "technical");
        assert!(c.checks[0].detail.contains("flat"), "{c:#?}");
    }

    #[test]
    fn rules_match_only_when_all_their_words_do() {
        let rules = vec![
            "riding without a helmet".to_string(),
            "two people on one scooter".to_string(),
            "competitor logos or cups".to_string(),
        ];
        assert_eq!(
            forbidden_matches("a rider without a helmet on a scooter", &rules),
            ["riding without a helmet"]
        );
        assert!(
            forbidden_matches("a smiling rider with a helmet, riding a scooter", &rules).is_empty()
        );
        assert!(forbidden_matches("two cups of coffee", &rules).is_empty());
        assert_eq!(
            forbidden_matches("Two people share one scooter", &rules),
            ["two people on one scooter"]
        );
    }

    #[test]
    fn terms_match_whole_words_only() {
        assert!(mentions("A Beer garden", "beer"));
        assert!(!mentions("beerhall", "beer"));
        assert!(!mentions("grape", "rape"));
    }
}
