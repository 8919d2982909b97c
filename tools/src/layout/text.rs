//! Text: shaping with rustybuzz (kerning, ligatures), greedy line breaking on measured widths,
//! and glyph outlines filled with tiny-skia.

use rustybuzz::ttf_parser::{GlyphId, OutlineBuilder};
use rustybuzz::{Face, UnicodeBuffer};
use tiny_skia::{FillRule, Paint, PathBuilder, Pixmap, Transform};

/// One shaped glyph, in pixels relative to the start of its line.
#[derive(Debug, Clone, Copy)]
struct Placed {
    glyph: u16,
    x: f32,
    y: f32,
}

/// A shaped line: its glyphs and advance width, in pixels at `size`.
#[derive(Debug, Clone)]
pub struct ShapedLine {
    pub text: String,
    pub width: f32,
    glyphs: Vec<Placed>,
}

/// Vertical metrics of a face at a size, in pixels.
#[derive(Debug, Clone, Copy)]
pub struct Metrics {
    pub ascent: f32,
    pub descent: f32,
}

/// The face's ascent and descent (positive down) at `size` pixels.
pub fn metrics(face: &Face<'_>, size: f32) -> Metrics {
    let scale = size / face.units_per_em() as f32;
    Metrics {
        ascent: f32::from(face.ascender()) * scale,
        descent: -f32::from(face.descender()) * scale,
    }
}

/// Shapes `text` on one line at `size` pixels.
pub fn shape(face: &Face<'_>, text: &str, size: f32) -> ShapedLine {
    let scale = size / face.units_per_em() as f32;
    let mut buffer = UnicodeBuffer::new();
    buffer.push_str(text);
    buffer.guess_segment_properties();
    let shaped = rustybuzz::shape(face, &[], buffer);
    let mut pen = 0.0f32;
    let mut glyphs = Vec::with_capacity(shaped.len());
    for (info, pos) in shaped.glyph_infos().iter().zip(shaped.glyph_positions()) {
        glyphs.push(Placed {
            glyph: u16::try_from(info.glyph_id).unwrap_or(0),
            x: pen + pos.x_offset as f32 * scale,
            y: -(pos.y_offset as f32) * scale,
        });
        pen += pos.x_advance as f32 * scale;
    }
    ShapedLine {
        text: text.to_string(),
        width: pen,
        glyphs,
    }
}

/// Why a text does not fit a width.
#[derive(Debug, Clone, PartialEq)]
pub enum WrapError {
    /// A single word is wider than the line.
    WordTooWide(String),
}

/// Breaks `text` into lines no wider than `max_width` at `size`: greedy, on whitespace, each
/// candidate line measured by shaping it whole (so kerning across words counts). Explicit
/// newlines are kept.
pub fn wrap(
    face: &Face<'_>,
    text: &str,
    size: f32,
    max_width: f32,
) -> Result<Vec<ShapedLine>, WrapError> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut current: Option<ShapedLine> = None;
        for word in paragraph.split_whitespace() {
            let candidate = match &current {
                Some(line) => format!("{} {word}", line.text),
                None => word.to_string(),
            };
            let shaped = shape(face, &candidate, size);
            if shaped.width <= max_width {
                current = Some(shaped);
                continue;
            }
            // The word starts a new line, alone if need be.
            let alone = shape(face, word, size);
            if alone.width > max_width {
                return Err(WrapError::WordTooWide(word.to_string()));
            }
            if let Some(line) = current.take() {
                lines.push(line);
            }
            current = Some(alone);
        }
        if let Some(line) = current {
            lines.push(line);
        }
    }
    Ok(lines)
}

/// Fills a shaped line into `pixmap` with its pen at `(x, baseline)`.
pub fn draw(
    pixmap: &mut Pixmap,
    face: &Face<'_>,
    line: &ShapedLine,
    size: f32,
    x: f32,
    baseline: f32,
    colour: [u8; 3],
) {
    let scale = size / face.units_per_em() as f32;
    let mut paint = Paint::default();
    paint.set_color_rgba8(colour[0], colour[1], colour[2], 255);
    paint.anti_alias = true;
    for g in &line.glyphs {
        let mut outline = Outline(PathBuilder::new());
        if face.outline_glyph(GlyphId(g.glyph), &mut outline).is_none() {
            continue; // a space or an empty glyph
        }
        let Some(path) = outline.0.finish() else {
            continue;
        };
        // Font units are y-up; the pixmap is y-down.
        let transform = Transform::from_row(scale, 0.0, 0.0, -scale, x + g.x, baseline + g.y);
        pixmap.fill_path(&path, &paint, FillRule::Winding, transform, None);
    }
}

struct Outline(PathBuilder);

impl OutlineBuilder for Outline {
    fn move_to(&mut self, x: f32, y: f32) {
        self.0.move_to(x, y);
    }
    fn line_to(&mut self, x: f32, y: f32) {
        self.0.line_to(x, y);
    }
    fn quad_to(&mut self, x1: f32, y1: f32, x: f32, y: f32) {
        self.0.quad_to(x1, y1, x, y);
    }
    fn curve_to(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, x: f32, y: f32) {
        self.0.cubic_to(x1, y1, x2, y2, x, y);
    }
    fn close(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::fonts::FontBook;

    #[test]
    fn shaping_applies_kerning_and_wrapping_respects_the_width() -> crate::Result<()> {
        let font = FontBook::bundled().load(&["DejaVu Sans"], 400)?;
        let face = font.face()?;
        // DejaVu Sans kerns "AV": shaped together it is narrower than its letters apart.
        let pair = shape(&face, "AV", 100.0).width;
        let apart = shape(&face, "A", 100.0).width + shape(&face, "V", 100.0).width;
        assert!(pair < apart - 1.0, "AV {pair} vs {apart}");

        let text = "Slow mornings and bright cups for everyone who wakes early";
        let lines = wrap(&face, text, 40.0, 400.0).map_err(|e| crate::Error::InvalidRequest {
            field: "text",
            reason: format!("{e:?}"),
        })?;
        assert!(lines.len() >= 2);
        assert!(lines.iter().all(|l| l.width <= 400.0));
        let joined: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(joined.join(" "), text);
        assert_eq!(
            wrap(&face, "Supercalifragilistic", 80.0, 200.0).map(|l| l.len()),
            Err(WrapError::WordTooWide("Supercalifragilistic".into()))
        );
        Ok(())
    }

    #[test]
    fn drawn_text_lands_where_it_was_placed() -> crate::Result<()> {
        let font = FontBook::bundled().load(&["DejaVu Sans"], 700)?;
        let face = font.face()?;
        let mut pixmap = Pixmap::new(300, 100).ok_or(crate::Error::InvalidRequest {
            field: "size",
            reason: "pixmap".into(),
        })?;
        pixmap.fill(tiny_skia::Color::WHITE);
        let line = shape(&face, "Hello", 48.0);
        draw(&mut pixmap, &face, &line, 48.0, 20.0, 70.0, [0, 0, 0]);
        let dark = |x0: u32, x1: u32| {
            (x0..x1)
                .flat_map(|x| (0..100).map(move |y| (x, y)))
                .filter(|&(x, y)| pixmap.pixel(x, y).is_some_and(|p| p.red() < 128))
                .count()
        };
        assert!(dark(20, 20 + line.width as u32) > 500);
        assert_eq!(dark(0, 18), 0);
        assert_eq!(dark(20 + line.width as u32 + 4, 300), 0);
        Ok(())
    }
}
