//! `compose_layout`: a finished design from a background image — headline, optional subline and
//! call to action, and the brand's logo — in the brand's colours and typefaces, placed by a named
//! template inside safe margins.
//!
//! - **Templates**: `bottom-left` (text over the lower part of the image), `top-left`, `centre`
//!   and `panel` (a solid band in the brand's background colour beside or under the image, text on
//!   it). Every element stays inside the safe area: [`SAFE_MARGIN`] of the shorter side.
//! - **Type**: the kit's headline and body faces when their files are in the kit's `fonts/`
//!   folder, otherwise its fallbacks, otherwise the bundled DejaVu faces — the substitution is
//!   reported. Text is shaped (kerning), wrapped on measured widths and shrunk until it fits; when
//!   it cannot fit at the smallest legible size the call fails and names the field. Text never
//!   overflows.
//! - **Legibility**: text colour comes from the palette; over an image the colour whose worst
//!   contrast (5th percentile over the pixels behind the text) is highest wins, and when none
//!   reaches WCAG's 4.5 a scrim in a palette colour is laid under the text at the lowest opacity
//!   that reaches it.
//! - **Logo**: a corner the kit allows, away from the text; of the kit's logo variants the one
//!   whose allowed backgrounds include the palette colour under it (else the most contrasting),
//!   at least its minimum width, with its clear space kept free of text.

pub mod fonts;
pub mod logo;
pub mod text;

use image::{Rgb, RgbImage};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tiny_skia::{Color, FillRule, Paint, PathBuilder, Pixmap, PixmapPaint, Transform};

use crate::brand::KitSummary;
use crate::brand::kit::{BrandKit, Placement, Role};
use crate::error::{Error, Result};
use crate::resize::Rect;
use atelier_inference::vision::colour::{contrast_ratio, delta_e};
use fonts::FontBook;
use logo::LogoSource;
use text::ShapedLine;

/// Longest headline, in characters.
pub const MAX_HEADLINE_CHARS: usize = 90;
/// Longest subline, in characters.
pub const MAX_SUBLINE_CHARS: usize = 200;
/// Longest call to action, in characters.
pub const MAX_CTA_CHARS: usize = 32;
/// Safe margin on every side, as a fraction of the image's shorter side.
pub const SAFE_MARGIN: f32 = 0.06;
/// Top and bottom margin of stories (9:16 and taller), as a fraction of the height: Instagram
/// and TikTok put their bars over about 250 of 1920 pixels at each end.
pub const STORY_MARGIN: f32 = 0.13;
/// WCAG AA contrast for text.
pub const MIN_CONTRAST: f32 = 4.5;
/// Smallest image a layout is composed on, per side.
pub const MIN_SIDE: u32 = 200;
/// Most pixels of an image a layout is composed on (40 megapixels).
pub const MAX_PIXELS: u64 = crate::resize::MAX_PIXELS;
/// Most lines of a headline and of a subline.
const MAX_HEADLINE_LINES: usize = 3;
const MAX_SUBLINE_LINES: usize = 3;
/// Headline sizes tried, as fractions of the shorter side: from this …
const HEADLINE_MAX: f32 = 0.12;
/// … down to this (and never below [`MIN_TEXT_PX`]).
const HEADLINE_MIN: f32 = 0.035;
const BODY_MIN: f32 = 0.022;
const MIN_TEXT_PX: f32 = 12.0;
/// Share of the frame's height text over an image may take.
const OVER_IMAGE_HEIGHT: f32 = 0.55;
/// Opacities tried for a scrim.
const SCRIM_ALPHAS: [f32; 5] = [0.55, 0.7, 0.8, 0.9, 1.0];

/// A named arrangement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Template {
    /// Text at the bottom left over the image, logo in a top corner.
    #[default]
    BottomLeft,
    /// Text at the top left over the image, logo in a bottom corner.
    TopLeft,
    /// Text centred over the image, logo in a bottom corner.
    Centre,
    /// A solid band in the brand's background colour (left third on landscape images, the lower
    /// part otherwise) holding text and logo; the image stays clear.
    Panel,
}

impl Template {
    pub const ALL: [Template; 4] = [
        Template::BottomLeft,
        Template::TopLeft,
        Template::Centre,
        Template::Panel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Template::BottomLeft => "bottom-left",
            Template::TopLeft => "top-left",
            Template::Centre => "centre",
            Template::Panel => "panel",
        }
    }
}

/// Arguments of `compose_layout`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComposeArgs {
    /// The headline, at most 90 characters.
    pub headline: String,
    /// A supporting line under the headline, at most 200 characters.
    #[serde(default)]
    pub subline: Option<String>,
    /// A call to action set on a button, at most 32 characters ("Order now").
    #[serde(default)]
    pub cta: Option<String>,
    /// `bottom-left` (default), `top-left`, `centre` or `panel`.
    #[serde(default)]
    pub template: Template,
    /// Place the brand's logo (default true).
    #[serde(default)]
    pub logo: Option<bool>,
    /// A channel preset (`square`, `landscape`, `story`, `widescreen`) to crop the image to
    /// around its subject first; without one the layout is made at the image's size.
    #[serde(default)]
    pub preset: Option<String>,
}

/// What an element of a layout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ElementKind {
    Headline,
    Subline,
    Cta,
    Logo,
}

/// One placed element.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Element {
    pub kind: ElementKind,
    /// Where it is, in image pixels.
    pub rect: Rect,
    /// The text, line by line (empty for the logo).
    #[serde(default)]
    pub lines: Vec<String>,
    /// Text colour, `#RRGGBB`.
    #[serde(default)]
    pub colour: Option<String>,
    /// Font family and size in pixels.
    #[serde(default)]
    pub font: Option<String>,
    #[serde(default)]
    pub size_px: Option<f32>,
    /// Contrast of the text against what is behind it (5th percentile over its box), as laid out.
    #[serde(default)]
    pub contrast: Option<f32>,
    /// The logo file, relative to the kit.
    #[serde(default)]
    pub file: Option<String>,
}

/// What `compose_layout` did, for the critique, the agent and the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LayoutReport {
    pub template: Template,
    pub width: u32,
    pub height: u32,
    /// The area inside the safe margins.
    pub safe_area: Rect,
    pub elements: Vec<Element>,
    /// Substitutions and compromises, in words.
    pub notes: Vec<String>,
}

impl LayoutReport {
    /// The first element of this kind.
    pub fn element(&self, kind: ElementKind) -> Option<&Element> {
        self.elements.iter().find(|e| e.kind == kind)
    }
}

/// The result of `compose_layout`.
#[derive(Debug, Clone)]
pub struct Composed {
    pub image: RgbImage,
    pub report: LayoutReport,
    /// What was done, in one sentence.
    pub summary: String,
}

/// A rectangle in pixels, fractional while laying out.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Frame {
    x: f32,
    y: f32,
    w: f32,
    h: f32,
}

impl Frame {
    fn bottom(self) -> f32 {
        self.y + self.h
    }
    fn right(self) -> f32 {
        self.x + self.w
    }
    fn inset(self, d: f32) -> Self {
        Self {
            x: self.x + d,
            y: self.y + d,
            w: (self.w - 2.0 * d).max(0.0),
            h: (self.h - 2.0 * d).max(0.0),
        }
    }
    fn outset(self, d: f32) -> Self {
        self.inset(-d)
    }
    /// Whole pixels covering this frame, clipped to `w`×`h` (a thousandth of a pixel of float
    /// error does not widen it).
    fn pixels(self, w: u32, h: u32) -> Rect {
        const EPS: f32 = 1e-3;
        let x0 = (self.x + EPS).floor().clamp(0.0, w as f32) as u32;
        let y0 = (self.y + EPS).floor().clamp(0.0, h as f32) as u32;
        let x1 = (self.right() - EPS).ceil().clamp(0.0, w as f32) as u32;
        let y1 = (self.bottom() - EPS).ceil().clamp(0.0, h as f32) as u32;
        Rect {
            x: x0,
            y: y0,
            width: x1.saturating_sub(x0),
            height: y1.saturating_sub(y0),
        }
    }
}

/// Where text is anchored in its region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    Top,
    Bottom,
    Middle,
}

/// Text fitted to a region.
struct Fitted {
    headline: Vec<ShapedLine>,
    headline_px: f32,
    subline: Vec<ShapedLine>,
    subline_px: f32,
    cta: Option<ShapedLine>,
    cta_px: f32,
}

impl Fitted {
    fn headline_line(&self) -> f32 {
        self.headline_px * 1.15
    }
    fn subline_line(&self) -> f32 {
        self.subline_px * 1.35
    }
    fn cta_height(&self) -> f32 {
        self.cta_px * 2.4
    }
    fn cta_pad(&self) -> f32 {
        self.cta_px * 1.1
    }
    fn gap(&self) -> f32 {
        self.headline_px * 0.4
    }
    fn height(&self) -> f32 {
        let mut h = self.headline.len() as f32 * self.headline_line();
        if !self.subline.is_empty() {
            h += self.gap() + self.subline.len() as f32 * self.subline_line();
        }
        if self.cta.is_some() {
            h += self.gap() * 1.5 + self.cta_height();
        }
        h
    }
    fn width(&self) -> f32 {
        let lines = self.headline.iter().chain(&self.subline).map(|l| l.width);
        let cta = self
            .cta
            .as_ref()
            .map_or(0.0, |c| c.width + 2.0 * self.cta_pad());
        lines.fold(cta, f32::max)
    }
}

impl ComposeArgs {
    fn check(&self) -> Result<()> {
        let bad = |field, reason: String| Err(Error::InvalidRequest { field, reason });
        let fields = [
            ("headline", Some(&self.headline), MAX_HEADLINE_CHARS),
            ("subline", self.subline.as_ref(), MAX_SUBLINE_CHARS),
            ("cta", self.cta.as_ref(), MAX_CTA_CHARS),
        ];
        for (field, value, max) in fields {
            let Some(value) = value else { continue };
            let n = value.chars().count();
            if value.trim().is_empty() {
                return bad(field, "is empty; give the text to set".into());
            }
            if n > max {
                return bad(field, format!("{n} characters; at most {max}"));
            }
            if let Some(c) = value.chars().find(|c| c.is_control() && *c != '\n') {
                return bad(field, format!("contains the control character {c:?}"));
            }
        }
        Ok(())
    }
}

/// What a layout draws besides text: the brand's logo files and the fonts.
#[derive(Clone)]
pub struct Assets {
    /// Bundled faces plus the kit's own, when its folder is at hand.
    pub fonts: FontBook,
    /// Logo files by file name, as in the kit summary's `logos[].file`.
    pub logos: Vec<(String, Vec<u8>)>,
}

impl Assets {
    /// A kit's assets from its folder: its logo files and the fonts in its `fonts/` folder.
    pub fn of_kit(kit: &BrandKit) -> Result<Self> {
        let mut logos = Vec::new();
        for logo in &kit.logos {
            let name = logo
                .path
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default();
            let bytes = std::fs::read(&logo.path)
                .map_err(Error::io(format!("reading logo {}", logo.path.display())))?;
            logos.push((name, bytes));
        }
        Ok(Self {
            fonts: FontBook::with_dir(&kit.dir.join("fonts"))?,
            logos,
        })
    }

    /// Logo files as stored with the brand, with the bundled fonts.
    pub fn stored(logos: Vec<(String, Vec<u8>)>) -> Self {
        Self {
            fonts: FontBook::bundled(),
            logos,
        }
    }

    fn logo(&self, file: &str) -> Option<&[u8]> {
        self.logos
            .iter()
            .find(|(name, _)| name == file)
            .map(|(_, b)| b.as_slice())
    }
}

/// Composes `args` on `background` in the style of `kit`, with `assets` for logo and fonts.
pub fn compose(
    background: &RgbImage,
    kit: &KitSummary,
    assets: &Assets,
    args: &ComposeArgs,
) -> Result<Composed> {
    args.check()?;
    let cropped;
    let background = match &args.preset {
        Some(name) => {
            let resized = crate::resize::resize(
                background,
                &crate::resize::ResizeArgs {
                    preset: Some(name.clone()),
                    ..crate::resize::ResizeArgs::default()
                },
            )?;
            cropped = resized.image;
            &cropped
        }
        None => background,
    };
    let (w, h) = background.dimensions();
    if w < MIN_SIDE || h < MIN_SIDE {
        return Err(Error::InvalidRequest {
            field: "image",
            reason: format!("{w}×{h} is too small for a layout; each side must be ≥ {MIN_SIDE} px"),
        });
    }
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(Error::InvalidRequest {
            field: "image",
            reason: format!("{w}×{h} is more than {MAX_PIXELS} pixels"),
        });
    }
    let mut notes = Vec::new();
    let book = &assets.fonts;
    let mut families: Vec<&str> = vec![kit.fonts.headline.as_str()];
    families.extend(kit.fonts.fallback.iter().map(String::as_str));
    let headline_font = book.load(&families, 700)?;
    families[0] = kit.fonts.body.as_str();
    let body_font = book.load(&families, 400)?;
    for (role, font) in [("headline", &headline_font), ("body", &body_font)] {
        if font.substituted() && !font.requested.is_empty() {
            notes.push(format!(
                "{role} typeface {} is not installed (add its font files to the kit's fonts/ folder); set in {}",
                font.requested,
                font.name()
            ));
        }
    }
    let headline_face = headline_font.face()?;
    let body_face = body_font.face()?;

    let short = w.min(h) as f32;
    let margin = (SAFE_MARGIN * short).round();
    let full = Frame {
        x: 0.0,
        y: 0.0,
        w: w as f32,
        h: h as f32,
    };
    // Stories (9:16 and taller): the apps lay their own bars over the top and bottom, so the
    // safe area keeps clear of them too.
    let margin_y = if h as f32 >= w as f32 * 1.7 {
        margin.max((STORY_MARGIN * h as f32).round())
    } else {
        margin
    };
    let safe = Frame {
        x: margin,
        y: margin_y,
        w: w as f32 - 2.0 * margin,
        h: h as f32 - 2.0 * margin_y,
    };
    let template = args.template;

    let mut pixmap = to_pixmap(background)?;
    // The frame text and logo live in, and whether it is a solid panel.
    let (frame, panel) = match template {
        Template::Panel => {
            let colour = panel_colour(kit);
            let band = if w as f32 >= h as f32 * 1.2 {
                Frame {
                    w: (w as f32 * 0.42).round(),
                    ..full
                }
            } else {
                let ph = (h as f32 * 0.4).round();
                Frame {
                    y: h as f32 - ph,
                    h: ph,
                    ..full
                }
            };
            fill_rect(&mut pixmap, band, colour, 1.0, 0.0);
            let inner = band.inset(margin);
            // Inside the panel, and inside the safe area (story bars).
            let top = inner.y.max(safe.y);
            let bottom = inner.bottom().min(safe.bottom());
            (
                Frame {
                    y: top,
                    h: (bottom - top).max(0.0),
                    ..inner
                },
                Some(colour),
            )
        }
        _ => (safe, None),
    };
    let anchor = match template {
        Template::BottomLeft => Anchor::Bottom,
        Template::TopLeft => Anchor::Top,
        Template::Centre | Template::Panel => Anchor::Middle,
    };
    let centred = template == Template::Centre;

    // The logo first: it claims a corner band the text must keep clear of.
    let mut elements = Vec::new();
    let mut region = frame;
    if args.logo.unwrap_or(true) && !kit.logos.is_empty() {
        match place_logo(&mut pixmap, kit, assets, frame, anchor, !centred, w)? {
            LogoPlacement::Placed {
                element,
                band_top,
                clear,
            } => {
                if band_top {
                    let cut = (element.rect.y + element.rect.height) as f32 + clear;
                    region = Frame {
                        y: cut,
                        h: (frame.bottom() - cut).max(0.0),
                        ..frame
                    };
                } else {
                    let cut = element.rect.y as f32 - clear;
                    region = Frame {
                        h: (cut - frame.y).max(0.0),
                        ..frame
                    };
                }
                elements.push(element);
            }
            LogoPlacement::Skipped(why) => notes.push(why),
        }
    }

    let max_w = region.w * if centred { 0.9 } else { 0.82 };
    let max_h = if panel.is_some() {
        region.h
    } else {
        region.h.min(frame.h * OVER_IMAGE_HEIGHT)
    };
    let fitted = fit(&headline_face, &body_face, args, short, max_w, max_h)?;

    // Where the block goes.
    let block_h = fitted.height();
    let block_w = fitted.width();
    let top = match anchor {
        Anchor::Top => region.y,
        Anchor::Bottom => region.bottom() - block_h,
        Anchor::Middle => region.y + (region.h - block_h) / 2.0,
    };
    let left = if centred {
        region.x + (region.w - block_w) / 2.0
    } else {
        region.x
    };
    let line_x = |width: f32| {
        if centred {
            region.x + (region.w - width) / 2.0
        } else {
            region.x
        }
    };
    let text_h = fitted.headline.len() as f32 * fitted.headline_line()
        + if fitted.subline.is_empty() {
            0.0
        } else {
            fitted.gap() + fitted.subline.len() as f32 * fitted.subline_line()
        };
    let text_block = Frame {
        x: left,
        y: top,
        w: block_w,
        h: text_h,
    };

    // Where headline and subline go.
    let hl_frame = Frame {
        x: fitted
            .headline
            .iter()
            .map(|l| line_x(l.width))
            .fold(f32::MAX, f32::min),
        y: top,
        w: fitted.headline.iter().map(|l| l.width).fold(0.0, f32::max),
        h: fitted.headline.len() as f32 * fitted.headline_line(),
    };
    let sub_frame = Frame {
        x: fitted
            .subline
            .iter()
            .map(|l| line_x(l.width))
            .fold(f32::MAX, f32::min),
        y: top + hl_frame.h + fitted.gap(),
        w: fitted.subline.iter().map(|l| l.width).fold(0.0, f32::max),
        h: fitted.subline.len() as f32 * fitted.subline_line(),
    };

    // Colours: on the panel, the palette colour that contrasts most; over the image, the best
    // colour for the pixels behind each text element, with a scrim when none is legible alone.
    let mut behind = vec![sample(&pixmap, hl_frame)];
    if !fitted.subline.is_empty() {
        behind.push(sample(&pixmap, sub_frame));
    }
    let (text_colour, scrim) = match panel {
        Some(p) => (best_text_colour(kit, &[vec![p]]).0, None),
        None => choose_text_colour(kit, &behind),
    };
    if let Some((colour, alpha)) = scrim {
        let pad = fitted.headline_px * 0.45;
        fill_rect(
            &mut pixmap,
            text_block.outset(pad),
            colour,
            alpha,
            fitted.headline_px * 0.2,
        );
        notes.push(format!(
            "a {} scrim at {:.0}% lies under the text so it reads at ≥ {MIN_CONTRAST}:1",
            colour_name(kit, colour),
            alpha * 100.0
        ));
    }

    // Headline and subline.
    let mut y = top;
    let mut hl_lines = Vec::new();
    let hl_contrast = worst_contrast(&sample(&pixmap, hl_frame), text_colour);
    let hl_metrics = text::metrics(&headline_face, fitted.headline_px);
    for line in &fitted.headline {
        let baseline = y
            + (fitted.headline_line() - hl_metrics.ascent - hl_metrics.descent) / 2.0
            + hl_metrics.ascent;
        text::draw(
            &mut pixmap,
            &headline_face,
            line,
            fitted.headline_px,
            line_x(line.width),
            baseline,
            text_colour,
        );
        hl_lines.push(line.text.clone());
        y += fitted.headline_line();
    }
    elements.push(Element {
        kind: ElementKind::Headline,
        rect: hl_frame.pixels(w, h),
        lines: hl_lines,
        colour: Some(hex(text_colour)),
        font: Some(headline_font.name()),
        size_px: Some(round1(fitted.headline_px)),
        contrast: Some(round2(hl_contrast)),
        file: None,
    });
    if !fitted.subline.is_empty() {
        y += fitted.gap();
        let contrast = worst_contrast(&sample(&pixmap, sub_frame), text_colour);
        let m = text::metrics(&body_face, fitted.subline_px);
        let mut lines = Vec::new();
        for line in &fitted.subline {
            let baseline = y + (fitted.subline_line() - m.ascent - m.descent) / 2.0 + m.ascent;
            text::draw(
                &mut pixmap,
                &body_face,
                line,
                fitted.subline_px,
                line_x(line.width),
                baseline,
                text_colour,
            );
            lines.push(line.text.clone());
            y += fitted.subline_line();
        }
        elements.push(Element {
            kind: ElementKind::Subline,
            rect: sub_frame.pixels(w, h),
            lines,
            colour: Some(hex(text_colour)),
            font: Some(body_font.name()),
            size_px: Some(round1(fitted.subline_px)),
            contrast: Some(round2(contrast)),
            file: None,
        });
    }

    // The call to action on a button in the primary colour.
    if let Some(cta) = &fitted.cta {
        y += fitted.gap() * 1.5;
        let button = Frame {
            x: line_x(cta.width + 2.0 * fitted.cta_pad()),
            y,
            w: cta.width + 2.0 * fitted.cta_pad(),
            h: fitted.cta_height(),
        };
        let (fill, label, contrast) = button_colours(kit);
        let preferred = preferred_button(kit);
        if fill != preferred {
            notes.push(format!(
                "the call to action is on {}: no label colour reads at {MIN_CONTRAST}:1 on {}",
                colour_name(kit, fill),
                colour_name(kit, preferred)
            ));
        }
        fill_rect(&mut pixmap, button, fill, 1.0, fitted.cta_height() * 0.18);
        let m = text::metrics(&body_face, fitted.cta_px);
        let baseline = button.y + (button.h - m.ascent - m.descent) / 2.0 + m.ascent;
        text::draw(
            &mut pixmap,
            &body_face,
            cta,
            fitted.cta_px,
            button.x + fitted.cta_pad(),
            baseline,
            label,
        );
        elements.push(Element {
            kind: ElementKind::Cta,
            rect: button.pixels(w, h),
            lines: vec![cta.text.clone()],
            colour: Some(hex(label)),
            font: Some(body_font.name()),
            size_px: Some(round1(fitted.cta_px)),
            contrast: Some(round2(contrast)),
            file: None,
        });
    }

    let image = from_pixmap(&pixmap);
    let report = LayoutReport {
        template,
        width: w,
        height: h,
        safe_area: safe.pixels(w, h),
        elements,
        notes,
    };
    let summary = summarise(&report, kit);
    Ok(Composed {
        image,
        report,
        summary,
    })
}

/// Shrinks the text until headline, subline and call to action fit `max_w`×`max_h`.
fn fit(
    headline_face: &rustybuzz::Face<'_>,
    body_face: &rustybuzz::Face<'_>,
    args: &ComposeArgs,
    short: f32,
    max_w: f32,
    max_h: f32,
) -> Result<Fitted> {
    let min_headline = (HEADLINE_MIN * short).max(MIN_TEXT_PX);
    let min_body = (BODY_MIN * short).max(MIN_TEXT_PX);
    let mut size = (HEADLINE_MAX * short).max(min_headline);
    // Which part failed at the smallest size, for the error.
    let mut blocker: (&str, String);
    loop {
        let sub_px = (size * 0.42).max(min_body);
        let cta_px = (size * 0.36).max(min_body);
        let attempt = (|| {
            let headline = lines_within(
                headline_face,
                &args.headline,
                size,
                max_w,
                MAX_HEADLINE_LINES,
                "headline",
            )?;
            let subline = match &args.subline {
                None => Vec::new(),
                Some(s) => lines_within(body_face, s, sub_px, max_w, MAX_SUBLINE_LINES, "subline")?,
            };
            let cta = args
                .cta
                .as_ref()
                .map(|c| text::shape(body_face, c.trim(), cta_px));
            let fitted = Fitted {
                headline,
                headline_px: size,
                subline,
                subline_px: sub_px,
                cta,
                cta_px,
            };
            if fitted.width() > max_w + 0.5 {
                return Err(("cta", "the button is wider than the text area".into()));
            }
            if fitted.height() > max_h {
                let field = if args.cta.is_some() {
                    "cta"
                } else if args.subline.is_some() {
                    "subline"
                } else {
                    "headline"
                };
                return Err((field, "the text is taller than the text area".into()));
            }
            Ok(fitted)
        })();
        match attempt {
            Ok(fitted) => return Ok(fitted),
            Err(why) => blocker = (why.0, why.1),
        }
        if size <= min_headline {
            break;
        }
        size = (size * 0.93).max(min_headline);
    }
    Err(Error::InvalidRequest {
        field: blocker.0,
        reason: format!(
            "the text does not fit a {:.0}×{:.0} px area even at the smallest size ({:.0} px headline): {}; shorten it or use a larger image",
            max_w, max_h, min_headline, blocker.1
        ),
    })
}

/// `text` wrapped to `max_w` at `px` in at most `max_lines` lines, or why not (for `field`).
fn lines_within(
    face: &rustybuzz::Face<'_>,
    text: &str,
    px: f32,
    max_w: f32,
    max_lines: usize,
    field: &'static str,
) -> std::result::Result<Vec<ShapedLine>, (&'static str, String)> {
    let lines = text::wrap(face, text, px, max_w).map_err(|e| {
        let text::WrapError::WordTooWide(word) = e;
        (
            field,
            format!("the word “{word}” is wider than the text area"),
        )
    })?;
    if lines.len() > max_lines {
        return Err((
            field,
            format!("it needs {} lines; at most {max_lines}", lines.len()),
        ));
    }
    Ok(lines)
}

enum LogoPlacement {
    Placed {
        element: Element,
        /// Whether the logo sits at the top of the frame (text goes below it).
        band_top: bool,
        /// Clear space to keep between the logo and text, in pixels.
        clear: f32,
    },
    Skipped(String),
}

/// Chooses a corner and a logo variant, draws it, and says where it went.
fn place_logo(
    pixmap: &mut Pixmap,
    kit: &KitSummary,
    assets: &Assets,
    frame: Frame,
    anchor: Anchor,
    left_first: bool,
    image_w: u32,
) -> Result<LogoPlacement> {
    // Away from the text vertically; on the text's left edge when it is set flush left.
    let (top, bottom) = if left_first {
        (
            [Placement::TopLeft, Placement::TopRight],
            [Placement::BottomLeft, Placement::BottomRight],
        )
    } else {
        (
            [Placement::TopRight, Placement::TopLeft],
            [Placement::BottomRight, Placement::BottomLeft],
        )
    };
    let corner_order: [Placement; 4] = if anchor == Anchor::Bottom {
        [top[0], top[1], bottom[0], bottom[1]]
    } else {
        [bottom[0], bottom[1], top[0], top[1]]
    };
    let Some(corner) = corner_order
        .into_iter()
        .find(|c| kit.logos.iter().any(|l| l.placement.contains(c)))
    else {
        return Ok(LogoPlacement::Skipped(
            "no logo of the kit may sit in a corner; no logo placed".into(),
        ));
    };
    let candidates: Vec<_> = kit
        .logos
        .iter()
        .filter(|l| l.placement.contains(&corner))
        .collect();
    let mut best: Option<(f32, usize, Pixmap, Frame)> = None;
    let mut missing = Vec::new();
    for (i, logo) in candidates.iter().enumerate() {
        let Some(bytes) = assets.logo(&logo.file) else {
            missing.push(logo.file.as_str());
            continue;
        };
        let source = LogoSource::parse(&logo.file, bytes, &assets.fonts)?;
        // A fifth of the image's width, less in a narrow frame, never below the kit's minimum.
        let target = (image_w as f32 * 0.2).min(frame.w * 0.45).round();
        let width = target.max(logo.min_width_px as f32);
        if width > frame.w * 0.6 {
            continue;
        }
        let rendered = source.render(width as u32)?;
        let (lw, lh) = (rendered.width() as f32, rendered.height() as f32);
        let at = match corner {
            Placement::TopLeft => Frame {
                x: frame.x,
                y: frame.y,
                w: lw,
                h: lh,
            },
            Placement::TopRight => Frame {
                x: frame.right() - lw,
                y: frame.y,
                w: lw,
                h: lh,
            },
            Placement::BottomLeft => Frame {
                x: frame.x,
                y: frame.bottom() - lh,
                w: lw,
                h: lh,
            },
            Placement::BottomRight | Placement::Centre => Frame {
                x: frame.right() - lw,
                y: frame.bottom() - lh,
                w: lw,
                h: lh,
            },
        };
        let under = mean(&sample(pixmap, at));
        let ink = ink_colour(&rendered);
        let listed = nearest_palette(kit, under).is_some_and(|name| {
            logo.backgrounds
                .iter()
                .any(|b| b.eq_ignore_ascii_case(&name))
        });
        // The kit's own pairing wins while the logo stands out (WCAG's 3:1 for graphics);
        // on a busy or mid-tone ground the variant that contrasts most does.
        let contrast = contrast_ratio(ink, under);
        let score = contrast
            + if listed && contrast >= 3.0 {
                100.0
            } else {
                0.0
            };
        if best.as_ref().is_none_or(|b| score > b.0) {
            best = Some((score, i, rendered, at));
        }
    }
    let Some((_, i, rendered, at)) = best else {
        if missing.len() == candidates.len() {
            return Ok(LogoPlacement::Skipped(format!(
                "the logo file{} {} {} not available; no logo placed",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", "),
                if missing.len() == 1 { "is" } else { "are" }
            )));
        }
        let min = candidates.iter().map(|l| l.min_width_px).min().unwrap_or(0);
        return Ok(LogoPlacement::Skipped(format!(
            "the logo's minimum width ({min} px) does not fit this image; no logo placed"
        )));
    };
    let logo = candidates[i];
    pixmap.draw_pixmap(
        at.x.round() as i32,
        at.y.round() as i32,
        rendered.as_ref(),
        &PixmapPaint::default(),
        Transform::identity(),
        None,
    );
    let file = logo.file.clone();
    Ok(LogoPlacement::Placed {
        element: Element {
            kind: ElementKind::Logo,
            rect: at.pixels(pixmap.width(), pixmap.height()),
            lines: Vec::new(),
            colour: None,
            font: None,
            size_px: None,
            contrast: None,
            file: Some(file),
        },
        band_top: matches!(corner, Placement::TopLeft | Placement::TopRight),
        clear: logo.clear_space * at.w,
    })
}

/// The palette colour for a panel: the background role, else the lightest colour.
fn panel_colour(kit: &KitSummary) -> [u8; 3] {
    kit.palette
        .iter()
        .find(|c| c.role == Role::Background)
        .map(|c| c.rgb())
        .or_else(|| {
            kit.palette.iter().map(|c| c.rgb()).max_by(|a, b| {
                atelier_inference::vision::colour::relative_luminance(*a)
                    .total_cmp(&atelier_inference::vision::colour::relative_luminance(*b))
            })
        })
        .unwrap_or([255, 255, 255])
}

/// The colour a button would have by role: primary, else accent, else the first colour.
fn preferred_button(kit: &KitSummary) -> [u8; 3] {
    [Role::Primary, Role::Accent]
        .iter()
        .find_map(|r| kit.palette.iter().find(|c| c.role == *r))
        .or(kit.palette.first())
        .map_or([0x1F, 0x3A, 0x5F], |c| c.rgb())
}

/// Button fill, label colour and their contrast: the first palette colour by role (primary,
/// accent, secondary, text, neutral, background) on which some label reads at ≥ 4.5, else the
/// most contrasting pair.
fn button_colours(kit: &KitSummary) -> ([u8; 3], [u8; 3], f32) {
    let order = [
        Role::Primary,
        Role::Accent,
        Role::Secondary,
        Role::Text,
        Role::Neutral,
        Role::Background,
    ];
    let mut fills: Vec<[u8; 3]> = vec![preferred_button(kit)];
    for role in order {
        for c in kit.palette.iter().filter(|c| c.role == role) {
            if !fills.contains(&c.rgb()) {
                fills.push(c.rgb());
            }
        }
    }
    let options: Vec<_> = fills
        .into_iter()
        .map(|fill| {
            let (label, contrast) = label_colour(kit, fill);
            (fill, label, contrast)
        })
        .collect();
    options
        .iter()
        .find(|o| o.2 >= MIN_CONTRAST)
        .or_else(|| options.iter().max_by(|a, b| a.2.total_cmp(&b.2)))
        .copied()
        .unwrap_or(([0x1F, 0x3A, 0x5F], [255, 255, 255], 10.9))
}

/// The palette colour (preferring the text role slightly) with the best worst-case contrast on
/// `pixels`, and that contrast.
fn best_text_colour(kit: &KitSummary, parts: &[Vec<[u8; 3]>]) -> ([u8; 3], f32) {
    kit.palette
        .iter()
        .map(|c| {
            let contrast = worst_of_parts(parts, c.rgb());
            let bonus = if c.role == Role::Text { 0.25 } else { 0.0 };
            (c.rgb(), contrast, contrast + bonus)
        })
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .map_or_else(
            || ([0, 0, 0], worst_of_parts(parts, [0, 0, 0])),
            |(rgb, contrast, _)| (rgb, contrast),
        )
}

/// Text colour for text over `behind`, and a scrim (colour, opacity) when needed.
fn choose_text_colour(
    kit: &KitSummary,
    behind: &[Vec<[u8; 3]>],
) -> ([u8; 3], Option<([u8; 3], f32)>) {
    let (alone, contrast) = best_text_colour(kit, behind);
    if contrast >= MIN_CONTRAST || kit.palette.is_empty() {
        return (alone, None);
    }
    // Lowest opacity first, then the highest contrast reached.
    let mut best: Option<(f32, f32, [u8; 3], [u8; 3])> = None;
    for text in &kit.palette {
        for scrim in &kit.palette {
            if text.name == scrim.name {
                continue;
            }
            let (t, s) = (text.rgb(), scrim.rgb());
            for alpha in SCRIM_ALPHAS {
                let blended: Vec<Vec<[u8; 3]>> = behind
                    .iter()
                    .map(|part| part.iter().map(|p| blend(s, *p, alpha)).collect())
                    .collect();
                let c = worst_of_parts(&blended, t);
                if c >= MIN_CONTRAST {
                    let better = best.is_none_or(|b| alpha < b.0 || (alpha == b.0 && c > b.1));
                    if better {
                        best = Some((alpha, c, t, s));
                    }
                    break;
                }
            }
        }
    }
    match best {
        Some((alpha, _, text, scrim)) => (text, Some((scrim, alpha))),
        // No pair of palette colours reaches 4.5; the most contrasting pair on a full scrim.
        None => {
            let pair = kit
                .palette
                .iter()
                .flat_map(|a| kit.palette.iter().map(move |b| (a.rgb(), b.rgb())))
                .max_by(|x, y| contrast_ratio(x.0, x.1).total_cmp(&contrast_ratio(y.0, y.1)))
                .unwrap_or((alone, alone));
            (pair.0, Some((pair.1, 1.0)))
        }
    }
}

/// The label colour on a button of `fill`: a palette colour, or white or black unless the brand
/// forbids them, whichever contrasts most.
fn label_colour(kit: &KitSummary, fill: [u8; 3]) -> ([u8; 3], f32) {
    let allowed = |c: [u8; 3]| {
        kit.forbidden_colours
            .iter()
            .all(|f| delta_e(c, f.rgb()) > 10.0)
    };
    let mut options: Vec<[u8; 3]> = kit.palette.iter().map(|c| c.rgb()).collect();
    options.extend(
        [[255, 255, 255], [0, 0, 0]]
            .into_iter()
            .filter(|c| allowed(*c)),
    );
    options
        .into_iter()
        .map(|c| (c, contrast_ratio(c, fill)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or(([255, 255, 255], contrast_ratio([255, 255, 255], fill)))
}

/// The lowest of the parts' 5th-percentile contrasts (each text element must read).
fn worst_of_parts(parts: &[Vec<[u8; 3]>], text: [u8; 3]) -> f32 {
    parts
        .iter()
        .map(|p| worst_contrast(p, text))
        .fold(f32::INFINITY, f32::min)
}

/// The 5th-percentile contrast of `text` against `pixels` (1.0 for none).
fn worst_contrast(pixels: &[[u8; 3]], text: [u8; 3]) -> f32 {
    if pixels.is_empty() {
        return 1.0;
    }
    let mut c: Vec<f32> = pixels.iter().map(|p| contrast_ratio(*p, text)).collect();
    c.sort_by(f32::total_cmp);
    c[(c.len() - 1) * 5 / 100]
}

/// Up to ~4,096 pixels of `frame`, evenly spread.
fn sample(pixmap: &Pixmap, frame: Frame) -> Vec<[u8; 3]> {
    let r = frame.pixels(pixmap.width(), pixmap.height());
    if r.width == 0 || r.height == 0 {
        return Vec::new();
    }
    let step = ((f64::from(r.width) * f64::from(r.height) / 4096.0)
        .sqrt()
        .ceil() as u32)
        .max(1);
    let mut out = Vec::new();
    for y in (r.y..r.y + r.height).step_by(step as usize) {
        for x in (r.x..r.x + r.width).step_by(step as usize) {
            if let Some(p) = pixmap.pixel(x, y) {
                let c = p.demultiply();
                out.push([c.red(), c.green(), c.blue()]);
            }
        }
    }
    out
}

fn mean(pixels: &[[u8; 3]]) -> [u8; 3] {
    if pixels.is_empty() {
        return [255, 255, 255];
    }
    let mut sum = [0u64; 3];
    for p in pixels {
        for i in 0..3 {
            sum[i] += u64::from(p[i]);
        }
    }
    let n = pixels.len() as u64;
    [(sum[0] / n) as u8, (sum[1] / n) as u8, (sum[2] / n) as u8]
}

/// The mean colour of a logo's opaque pixels.
fn ink_colour(logo: &Pixmap) -> [u8; 3] {
    let ink: Vec<[u8; 3]> = logo
        .pixels()
        .iter()
        .filter(|p| p.alpha() > 200)
        .map(|p| {
            let c = p.demultiply();
            [c.red(), c.green(), c.blue()]
        })
        .collect();
    mean(&ink)
}

/// The palette colour nearest `rgb` (CIEDE2000 ≤ 20), by name.
fn nearest_palette(kit: &KitSummary, rgb: [u8; 3]) -> Option<String> {
    kit.palette
        .iter()
        .map(|c| (c, delta_e(rgb, c.rgb())))
        .filter(|(_, d)| *d <= 20.0)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c.name.clone())
}

fn colour_name(kit: &KitSummary, rgb: [u8; 3]) -> String {
    kit.palette
        .iter()
        .find(|c| c.rgb() == rgb)
        .map_or_else(|| hex(rgb), |c| format!("{} {}", c.name, hex(rgb)))
}

fn blend(top: [u8; 3], bottom: [u8; 3], alpha: f32) -> [u8; 3] {
    let mix = |a: u8, b: u8| (f32::from(a) * alpha + f32::from(b) * (1.0 - alpha)).round() as u8;
    [
        mix(top[0], bottom[0]),
        mix(top[1], bottom[1]),
        mix(top[2], bottom[2]),
    ]
}

fn hex(rgb: [u8; 3]) -> String {
    format!("#{:02X}{:02X}{:02X}", rgb[0], rgb[1], rgb[2])
}

fn round1(v: f32) -> f32 {
    (v * 10.0).round() / 10.0
}

fn round2(v: f32) -> f32 {
    (v * 100.0).round() / 100.0
}

/// Fills `frame` with `rgb` at `alpha`, with rounded corners of `radius`.
fn fill_rect(pixmap: &mut Pixmap, frame: Frame, rgb: [u8; 3], alpha: f32, radius: f32) {
    let mut paint = Paint::default();
    paint.set_color(Color::from_rgba8(
        rgb[0],
        rgb[1],
        rgb[2],
        (alpha * 255.0).round() as u8,
    ));
    paint.anti_alias = true;
    let r = radius.min(frame.w / 2.0).min(frame.h / 2.0).max(0.0);
    let (x0, y0, x1, y1) = (frame.x, frame.y, frame.right(), frame.bottom());
    let mut pb = PathBuilder::new();
    pb.move_to(x0 + r, y0);
    pb.line_to(x1 - r, y0);
    pb.quad_to(x1, y0, x1, y0 + r);
    pb.line_to(x1, y1 - r);
    pb.quad_to(x1, y1, x1 - r, y1);
    pb.line_to(x0 + r, y1);
    pb.quad_to(x0, y1, x0, y1 - r);
    pb.line_to(x0, y0 + r);
    pb.quad_to(x0, y0, x0 + r, y0);
    pb.close();
    if let Some(path) = pb.finish() {
        pixmap.fill_path(
            &path,
            &paint,
            FillRule::Winding,
            Transform::identity(),
            None,
        );
    }
}

fn to_pixmap(image: &RgbImage) -> Result<Pixmap> {
    let mut pixmap = Pixmap::new(image.width(), image.height()).ok_or(Error::InvalidRequest {
        field: "image",
        reason: "cannot allocate the canvas".into(),
    })?;
    for (dst, src) in pixmap.data_mut().chunks_exact_mut(4).zip(image.pixels()) {
        dst[..3].copy_from_slice(&src.0);
        dst[3] = 255;
    }
    Ok(pixmap)
}

fn from_pixmap(pixmap: &Pixmap) -> RgbImage {
    RgbImage::from_fn(pixmap.width(), pixmap.height(), |x, y| {
        let p = pixmap
            .pixel(x, y)
            .map(|p| p.demultiply())
            .map_or([0, 0, 0], |c| [c.red(), c.green(), c.blue()]);
        Rgb(p)
    })
}

fn summarise(report: &LayoutReport, kit: &KitSummary) -> String {
    let mut parts = vec![format!(
        "composed the {} layout on {}×{}",
        report.template.name(),
        report.width,
        report.height
    )];
    if let Some(h) = report.element(ElementKind::Headline) {
        parts.push(format!(
            "headline in {} line{} at {:.0} px {} in {} (contrast {:.1}:1)",
            h.lines.len(),
            if h.lines.len() == 1 { "" } else { "s" },
            h.size_px.unwrap_or(0.0),
            h.font.as_deref().unwrap_or("?"),
            h.colour
                .as_deref()
                .map(|c| {
                    kit.palette
                        .iter()
                        .find(|p| p.hex.eq_ignore_ascii_case(c))
                        .map_or_else(|| c.to_string(), |p| p.name.clone())
                })
                .unwrap_or_default(),
            h.contrast.unwrap_or(0.0)
        ));
    }
    if report.element(ElementKind::Cta).is_some() {
        parts.push("call-to-action button".into());
    }
    if let Some(l) = report.element(ElementKind::Logo) {
        parts.push(format!(
            "logo {} at {} px wide",
            l.file.as_deref().unwrap_or("?"),
            l.rect.width
        ));
    }
    let mut s = parts.join("; ");
    if !report.notes.is_empty() {
        s.push_str(". ");
        s.push_str(&report.notes.join(". "));
    }
    s
}
