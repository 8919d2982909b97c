//! A procedural, captioned image dataset: what a marketing designer asks a background generator
//! for — flat and gradient fills, two- and three-colour palettes, shapes at positions, patterns
//! and simple scenes — drawn with tiny-skia and described in varied natural language.
//!
//! Every sample is a pure function of `(seed, index)`, so the stream is unlimited and repeatable:
//! the same pair gives the same pixels and caption on every machine.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tiny_skia::{
    Color, FillRule, GradientStop, LinearGradient, Paint, PathBuilder, Pixmap, Point,
    RadialGradient, Rect, Shader, SpreadMode, Stroke, Transform,
};

/// A colour with a name people use in briefs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NamedColour {
    /// The word used in captions.
    pub name: &'static str,
    /// sRGB.
    pub rgb: [u8; 3],
}

const fn c(name: &'static str, r: u8, g: u8, b: u8) -> NamedColour {
    NamedColour {
        name,
        rgb: [r, g, b],
    }
}

/// The colours the generator uses, chosen to be far apart so each name means one look.
pub const COLOURS: &[NamedColour] = &[
    c("red", 220, 40, 40),
    c("orange", 245, 140, 30),
    c("yellow", 250, 215, 50),
    c("gold", 212, 175, 55),
    c("green", 50, 160, 70),
    c("mint", 160, 230, 190),
    c("teal", 20, 130, 130),
    c("sky blue", 120, 190, 240),
    c("blue", 40, 90, 210),
    c("navy", 20, 30, 90),
    c("purple", 120, 50, 160),
    c("lavender", 190, 170, 230),
    c("pink", 240, 130, 180),
    c("coral", 250, 120, 90),
    c("maroon", 110, 20, 40),
    c("brown", 120, 75, 40),
    c("beige", 230, 215, 180),
    c("white", 250, 250, 250),
    c("grey", 130, 130, 130),
    c("black", 15, 15, 15),
];

/// A shape placed on a background.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Circle,
    Square,
    Triangle,
}

impl Shape {
    /// All shapes, in label order.
    pub const ALL: [Shape; 3] = [Shape::Circle, Shape::Square, Shape::Triangle];
    /// The caption word.
    pub fn word(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
        }
    }
}

/// Where a shape sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    Left,
    Right,
    Top,
    Bottom,
    Centre,
}

impl Position {
    /// All positions, in label order.
    pub const ALL: [Position; 5] = [
        Position::Left,
        Position::Right,
        Position::Top,
        Position::Bottom,
        Position::Centre,
    ];

    /// Centre of the shape as a fraction of the image.
    pub fn anchor(self) -> (f32, f32) {
        match self {
            Position::Left => (0.25, 0.5),
            Position::Right => (0.75, 0.5),
            Position::Top => (0.5, 0.25),
            Position::Bottom => (0.5, 0.75),
            Position::Centre => (0.5, 0.5),
        }
    }

    fn phrases(self) -> &'static [&'static str] {
        match self {
            Position::Left => &["on the left", "on the left side", "to the left"],
            Position::Right => &["on the right", "on the right side", "to the right"],
            Position::Top => &["at the top", "near the top", "in the upper part"],
            Position::Bottom => &["at the bottom", "near the bottom", "in the lower part"],
            Position::Centre => &["in the centre", "in the middle", "centred"],
        }
    }
}

/// What a sample shows, with the colours requested by its caption.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scene {
    Flat {
        background: NamedColour,
    },
    Gradient {
        from: NamedColour,
        to: NamedColour,
        horizontal: bool,
    },
    Shape {
        background: NamedColour,
        colour: NamedColour,
        shape: Shape,
        position: Position,
        large: bool,
    },
    Stripes {
        a: NamedColour,
        b: NamedColour,
        vertical: bool,
    },
    Dots {
        background: NamedColour,
        dots: NamedColour,
    },
    Waves {
        background: NamedColour,
        waves: NamedColour,
    },
    Confetti {
        background: NamedColour,
        pieces: Vec<NamedColour>,
    },
    Sunset {
        sky_top: NamedColour,
        sky_bottom: NamedColour,
        sun: NamedColour,
    },
    Mountains {
        sky: NamedColour,
        mountains: NamedColour,
    },
    Sea {
        sky: NamedColour,
        sea: NamedColour,
    },
    Skyline {
        sky: NamedColour,
        buildings: NamedColour,
    },
    Bokeh {
        background: NamedColour,
        lights: NamedColour,
    },
}

impl Scene {
    /// The colours the caption asks for (what a colour-adherence check looks for).
    pub fn colours(&self) -> Vec<NamedColour> {
        match self {
            Scene::Flat { background } => vec![*background],
            Scene::Gradient { from, to, .. } => vec![*from, *to],
            Scene::Shape {
                background, colour, ..
            } => vec![*background, *colour],
            Scene::Stripes { a, b, .. } => vec![*a, *b],
            Scene::Dots { background, dots } => vec![*background, *dots],
            Scene::Waves { background, waves } => vec![*background, *waves],
            Scene::Confetti { background, pieces } => {
                let mut v = vec![*background];
                v.extend(pieces.iter().copied());
                v
            }
            Scene::Sunset {
                sky_top,
                sky_bottom,
                sun,
            } => vec![*sky_top, *sky_bottom, *sun],
            Scene::Mountains { sky, mountains } => vec![*sky, *mountains],
            Scene::Sea { sky, sea } => vec![*sky, *sea],
            Scene::Skyline { sky, buildings } => vec![*sky, *buildings],
            Scene::Bokeh { background, lights } => vec![*background, *lights],
        }
    }
}

/// One captioned image.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Natural-language description.
    pub caption: String,
    /// What was drawn.
    pub scene: Scene,
    /// RGB bytes, row-major, `size × size × 3`.
    pub rgb: Vec<u8>,
    /// Side length in pixels.
    pub size: u32,
}

impl Sample {
    /// Where the figure of a figure-on-ground scene is (a shape on its background): per pixel,
    /// whether it differs from the background colour (anti-aliased edges included, as they
    /// carry the outline). `None` for scenes without one figure. Training can weight these
    /// pixels up (`TrainOptions::foreground_weight`): a small shape covers 4% of the image, so
    /// with every pixel counted alike the loss barely notices where and what it is.
    pub fn foreground(&self) -> Option<Vec<bool>> {
        let Scene::Shape { background, .. } = &self.scene else {
            return None;
        };
        Some(
            self.rgb
                .chunks(3)
                .map(|p| [p[0], p[1], p[2]] != background.rgb)
                .collect(),
        )
    }
}

/// Draws samples of one size.
#[derive(Debug, Clone, Copy)]
pub struct Generator {
    size: u32,
}

impl Generator {
    /// A generator of `size × size` images (8..=1024).
    pub fn new(size: u32) -> Option<Self> {
        (8..=1024).contains(&size).then_some(Generator { size })
    }

    /// Sample number `index` of the stream `seed`.
    pub fn sample(&self, seed: u64, index: u64) -> Sample {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index);
        let scene = random_scene(&mut rng);
        let caption = caption(&scene, &mut rng);
        let rgb = self.render(&scene, &mut rng);
        Sample {
            caption,
            scene,
            rgb,
            size: self.size,
        }
    }

    /// Draw `scene`; `rng` varies details the caption does not fix (exact sizes, jitter).
    pub fn render(&self, scene: &Scene, rng: &mut impl Rng) -> Vec<u8> {
        let s = self.size as f32;
        let Some(mut pm) = Pixmap::new(self.size, self.size) else {
            return vec![0; (self.size * self.size * 3) as usize];
        };
        match scene {
            Scene::Flat { background } => pm.fill(colour(*background, 1.0)),
            Scene::Gradient {
                from,
                to,
                horizontal,
            } => {
                let end = if *horizontal {
                    Point::from_xy(s, 0.0)
                } else {
                    Point::from_xy(0.0, s)
                };
                fill_gradient(&mut pm, Point::from_xy(0.0, 0.0), end, *from, *to);
            }
            Scene::Shape {
                background,
                colour: fg,
                shape,
                position,
                large,
            } => {
                pm.fill(colour(*background, 1.0));
                let (ax, ay) = position.anchor();
                let radius = if *large { LARGE_RADIUS } else { SMALL_RADIUS }
                    * s
                    * rng.random_range(0.9..1.1);
                let (cx, cy) = (ax * s, ay * s);
                draw_shape(&mut pm, *shape, cx, cy, radius, *fg);
            }
            Scene::Stripes { a, b, vertical } => {
                pm.fill(colour(*a, 1.0));
                let n = rng.random_range(3..=6);
                let w = s / (2 * n) as f32;
                for i in 0..n {
                    let offset = (2 * i + 1) as f32 * w;
                    let rect = if *vertical {
                        Rect::from_xywh(offset, 0.0, w, s)
                    } else {
                        Rect::from_xywh(0.0, offset, s, w)
                    };
                    if let Some(rect) = rect {
                        pm.fill_rect(rect, &solid(*b), Transform::identity(), None);
                    }
                }
            }
            Scene::Dots { background, dots } => {
                pm.fill(colour(*background, 1.0));
                let n = rng.random_range(3..=5);
                let step = s / n as f32;
                let r = step * rng.random_range(0.18..0.28);
                for i in 0..n {
                    for j in 0..n {
                        let cx = (i as f32 + 0.5) * step;
                        let cy = (j as f32 + 0.5) * step;
                        fill_circle(&mut pm, cx, cy, r, *dots, 1.0);
                    }
                }
            }
            Scene::Waves { background, waves } => {
                pm.fill(colour(*background, 1.0));
                let rows = rng.random_range(3..=5);
                let amp = s * 0.05;
                let phase: f32 = rng.random_range(0.0..std::f32::consts::TAU);
                let stroke = Stroke {
                    width: s * 0.06,
                    ..Stroke::default()
                };
                for row in 0..rows {
                    let y0 = (row as f32 + 0.5) * s / rows as f32;
                    let mut pb = PathBuilder::new();
                    for k in 0..=32 {
                        let x = k as f32 / 32.0 * s;
                        let y = y0 + amp * (x / s * std::f32::consts::TAU * 2.0 + phase).sin();
                        if k == 0 {
                            pb.move_to(x, y)
                        } else {
                            pb.line_to(x, y)
                        }
                    }
                    if let Some(path) = pb.finish() {
                        pm.stroke_path(&path, &solid(*waves), &stroke, Transform::identity(), None);
                    }
                }
            }
            Scene::Confetti { background, pieces } => {
                pm.fill(colour(*background, 1.0));
                let n = rng.random_range(25..=40);
                for _ in 0..n {
                    let Some(piece) = pieces.choose(rng) else {
                        break;
                    };
                    let (x, y) = (rng.random_range(0.0..s), rng.random_range(0.0..s));
                    let (w, h) = (
                        s * rng.random_range(0.03..0.06),
                        s * rng.random_range(0.015..0.03),
                    );
                    let angle: f32 = rng.random_range(0.0..180.0);
                    if let Some(rect) = Rect::from_xywh(-w / 2.0, -h / 2.0, w, h) {
                        let t = Transform::from_rotate(angle).post_translate(x, y);
                        pm.fill_rect(rect, &solid(*piece), t, None);
                    }
                }
            }
            Scene::Sunset {
                sky_top,
                sky_bottom,
                sun,
            } => {
                let horizon = s * rng.random_range(0.6..0.72);
                fill_gradient(
                    &mut pm,
                    Point::from_xy(0.0, 0.0),
                    Point::from_xy(0.0, horizon),
                    *sky_top,
                    *sky_bottom,
                );
                fill_circle(
                    &mut pm,
                    s * rng.random_range(0.35..0.65),
                    horizon,
                    s * 0.16,
                    *sun,
                    1.0,
                );
                let ground = NamedColour {
                    name: "dark",
                    rgb: darken(sky_top.rgb, 0.35),
                };
                if let Some(rect) = Rect::from_xywh(0.0, horizon, s, s - horizon) {
                    pm.fill_rect(rect, &solid(ground), Transform::identity(), None);
                }
            }
            Scene::Mountains { sky, mountains } => {
                pm.fill(colour(*sky, 1.0));
                let peaks = rng.random_range(2..=4);
                let mut pb = PathBuilder::new();
                pb.move_to(0.0, s);
                pb.line_to(0.0, s * 0.75);
                for i in 0..peaks {
                    let x_peak = (i as f32 + 0.5) / peaks as f32 * s;
                    let y_peak = s * rng.random_range(0.3..0.5);
                    pb.line_to(x_peak, y_peak);
                    pb.line_to(
                        (i as f32 + 1.0) / peaks as f32 * s,
                        s * rng.random_range(0.6..0.75),
                    );
                }
                pb.line_to(s, s);
                pb.close();
                if let Some(path) = pb.finish() {
                    pm.fill_path(
                        &path,
                        &solid(*mountains),
                        FillRule::Winding,
                        Transform::identity(),
                        None,
                    );
                }
            }
            Scene::Sea { sky, sea } => {
                pm.fill(colour(*sky, 1.0));
                let horizon = s * rng.random_range(0.45..0.6);
                if let Some(rect) = Rect::from_xywh(0.0, horizon, s, s - horizon) {
                    pm.fill_rect(rect, &solid(*sea), Transform::identity(), None);
                }
                let crest = NamedColour {
                    name: "crest",
                    rgb: lighten(sea.rgb, 0.35),
                };
                let stroke = Stroke {
                    width: s * 0.02,
                    ..Stroke::default()
                };
                for k in 0..4 {
                    let y = horizon + (k as f32 + 0.6) * (s - horizon) / 4.5;
                    let x = rng.random_range(0.0..s * 0.6);
                    let mut pb = PathBuilder::new();
                    pb.move_to(x, y);
                    pb.line_to(x + s * 0.3, y);
                    if let Some(path) = pb.finish() {
                        pm.stroke_path(&path, &solid(crest), &stroke, Transform::identity(), None);
                    }
                }
            }
            Scene::Skyline { sky, buildings } => {
                pm.fill(colour(*sky, 1.0));
                let mut x = 0.0;
                while x < s {
                    let w = s * rng.random_range(0.08..0.16);
                    let h = s * rng.random_range(0.2..0.55);
                    if let Some(rect) = Rect::from_xywh(x, s - h, w + 0.5, h) {
                        pm.fill_rect(rect, &solid(*buildings), Transform::identity(), None);
                    }
                    x += w;
                }
            }
            Scene::Bokeh { background, lights } => {
                pm.fill(colour(*background, 1.0));
                for _ in 0..rng.random_range(8..=14) {
                    let (x, y) = (rng.random_range(0.0..s), rng.random_range(0.0..s));
                    let r = s * rng.random_range(0.06..0.14);
                    soft_circle(&mut pm, x, y, r, *lights);
                }
            }
        }
        let mut rgb = Vec::with_capacity((self.size * self.size * 3) as usize);
        for px in pm.pixels() {
            let c = px.demultiply();
            rgb.extend_from_slice(&[c.red(), c.green(), c.blue()]);
        }
        rgb
    }
}

fn colour(c: NamedColour, alpha: f32) -> Color {
    Color::from_rgba8(c.rgb[0], c.rgb[1], c.rgb[2], (alpha * 255.0) as u8)
}

fn solid(c: NamedColour) -> Paint<'static> {
    let mut paint = Paint::default();
    paint.set_color(colour(c, 1.0));
    paint.anti_alias = true;
    paint
}

fn darken(rgb: [u8; 3], f: f32) -> [u8; 3] {
    rgb.map(|v| (v as f32 * f) as u8)
}

fn lighten(rgb: [u8; 3], f: f32) -> [u8; 3] {
    rgb.map(|v| (v as f32 + (255.0 - v as f32) * f) as u8)
}

fn fill_gradient(pm: &mut Pixmap, start: Point, end: Point, from: NamedColour, to: NamedColour) {
    let shader = LinearGradient::new(
        start,
        end,
        vec![
            GradientStop::new(0.0, colour(from, 1.0)),
            GradientStop::new(1.0, colour(to, 1.0)),
        ],
        SpreadMode::Pad,
        Transform::identity(),
    )
    .unwrap_or(Shader::SolidColor(colour(from, 1.0)));
    let paint = Paint {
        shader,
        anti_alias: true,
        ..Paint::default()
    };
    if let Some(rect) = Rect::from_xywh(0.0, 0.0, pm.width() as f32, pm.height() as f32) {
        pm.fill_rect(rect, &paint, Transform::identity(), None);
    }
}

fn fill_circle(pm: &mut Pixmap, cx: f32, cy: f32, r: f32, c: NamedColour, alpha: f32) {
    if let Some(path) = PathBuilder::from_circle(cx, cy, r) {
        let mut paint = Paint::default();
        paint.set_color(colour(c, alpha));
        paint.anti_alias = true;
        pm.fill_path(
            &path,
            &paint,
            FillRule::Winding,
            Transform::identity(),
            None,
        );
    }
}

fn soft_circle(pm: &mut Pixmap, cx: f32, cy: f32, r: f32, c: NamedColour) {
    let centre = Point::from_xy(cx, cy);
    let shader = RadialGradient::new(
        centre,
        0.0,
        centre,
        r,
        vec![
            GradientStop::new(0.0, colour(c, 0.9)),
            GradientStop::new(0.6, colour(c, 0.6)),
            GradientStop::new(1.0, colour(c, 0.0)),
        ],
        SpreadMode::Pad,
        Transform::identity(),
    );
    if let (Some(shader), Some(path)) = (shader, PathBuilder::from_circle(cx, cy, r)) {
        let paint = Paint {
            shader,
            anti_alias: true,
            ..Paint::default()
        };
        pm.fill_path(
            &path,
            &paint,
            FillRule::Winding,
            Transform::identity(),
            None,
        );
    }
}

/// Radius of a small shape, as a fraction of the image side (±10% per sample). At the network's
/// 32×32 pixels in 4×4 patches a small triangle of radius 0.12 (steps 0–4500) spanned two
/// patches each way and never came out as a triangle; 0.17 spans three.
pub const SMALL_RADIUS: f32 = 0.17;
/// Radius of a large shape (0.2 to step 4500). At most 0.23 × 1.1 so that a large triangle's
/// apex at the top position (anchor 0.25, apex 1.1 radii above it) stays within a pixel of the
/// image.
pub const LARGE_RADIUS: f32 = 0.23;

fn draw_shape(pm: &mut Pixmap, shape: Shape, cx: f32, cy: f32, r: f32, c: NamedColour) {
    match shape {
        Shape::Circle => fill_circle(pm, cx, cy, r, c, 1.0),
        Shape::Square => {
            if let Some(rect) = Rect::from_xywh(cx - r, cy - r, 2.0 * r, 2.0 * r) {
                pm.fill_rect(rect, &solid(c), Transform::identity(), None);
            }
        }
        Shape::Triangle => {
            let mut pb = PathBuilder::new();
            pb.move_to(cx, cy - r * 1.1);
            pb.line_to(cx + r * 1.1, cy + r * 0.9);
            pb.line_to(cx - r * 1.1, cy + r * 0.9);
            pb.close();
            if let Some(path) = pb.finish() {
                pm.fill_path(
                    &path,
                    &solid(c),
                    FillRule::Winding,
                    Transform::identity(),
                    None,
                );
            }
        }
    }
}

/// Two colours that are clearly different (so a caption's two names are two looks).
fn distinct_pair(rng: &mut impl Rng) -> (NamedColour, NamedColour) {
    loop {
        let a = *COLOURS.choose(rng).unwrap_or(&COLOURS[0]);
        let b = *COLOURS.choose(rng).unwrap_or(&COLOURS[1]);
        if rgb_distance(a.rgb, b.rgb) > 120.0 {
            return (a, b);
        }
    }
}

fn distinct_from(rng: &mut impl Rng, others: &[NamedColour]) -> NamedColour {
    loop {
        let c = *COLOURS.choose(rng).unwrap_or(&COLOURS[0]);
        if others.iter().all(|o| rgb_distance(o.rgb, c.rgb) > 120.0) {
            return c;
        }
    }
}

fn rgb_distance(a: [u8; 3], b: [u8; 3]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, y)| (x as f32 - y as f32).powi(2))
        .sum::<f32>()
        .sqrt()
}

fn random_scene(rng: &mut impl Rng) -> Scene {
    // Shapes on backgrounds are what briefs ask for most and the hardest to learn: weight them.
    match rng.random_range(0..16) {
        0 => Scene::Flat {
            background: *COLOURS.choose(rng).unwrap_or(&COLOURS[0]),
        },
        1 | 2 => {
            let (from, to) = distinct_pair(rng);
            Scene::Gradient {
                from,
                to,
                horizontal: rng.random_bool(0.5),
            }
        }
        3..=7 => {
            let (background, colour) = distinct_pair(rng);
            Scene::Shape {
                background,
                colour,
                shape: *Shape::ALL.choose(rng).unwrap_or(&Shape::Circle),
                position: *Position::ALL.choose(rng).unwrap_or(&Position::Centre),
                large: rng.random_bool(0.5),
            }
        }
        8 => {
            let (a, b) = distinct_pair(rng);
            Scene::Stripes {
                a,
                b,
                vertical: rng.random_bool(0.5),
            }
        }
        9 => {
            let (background, dots) = distinct_pair(rng);
            Scene::Dots { background, dots }
        }
        10 => {
            let (background, waves) = distinct_pair(rng);
            Scene::Waves { background, waves }
        }
        11 => {
            let (background, first) = distinct_pair(rng);
            let mut pieces = vec![first];
            if rng.random_bool(0.5) {
                pieces.push(distinct_from(rng, &[background, first]));
            }
            Scene::Confetti { background, pieces }
        }
        12 => {
            let (sky_top, sky_bottom) = distinct_pair(rng);
            let sun = distinct_from(rng, &[sky_top, sky_bottom]);
            Scene::Sunset {
                sky_top,
                sky_bottom,
                sun,
            }
        }
        13 => {
            let (sky, mountains) = distinct_pair(rng);
            Scene::Mountains { sky, mountains }
        }
        14 => {
            if rng.random_bool(0.5) {
                let (sky, sea) = distinct_pair(rng);
                Scene::Sea { sky, sea }
            } else {
                let (sky, buildings) = distinct_pair(rng);
                Scene::Skyline { sky, buildings }
            }
        }
        _ => {
            let (background, lights) = distinct_pair(rng);
            Scene::Bokeh { background, lights }
        }
    }
}

fn pick<'a>(rng: &mut impl Rng, options: &[&'a str]) -> &'a str {
    options.choose(rng).copied().unwrap_or_default()
}

/// A natural-language caption for `scene`, with varied wording.
pub fn caption(scene: &Scene, rng: &mut impl Rng) -> String {
    with_articles(&raw_caption(scene, rng))
}

/// "a orange" → "an orange".
fn with_articles(text: &str) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    let mut out = Vec::with_capacity(words.len());
    for (i, word) in words.iter().enumerate() {
        let next_vowel = words
            .get(i + 1)
            .and_then(|w| w.chars().next())
            .is_some_and(|c| "aeiou".contains(c));
        out.push(if (*word == "a" || *word == "A") && next_vowel {
            if *word == "a" { "an" } else { "An" }
        } else {
            word
        });
    }
    out.join(" ")
}

fn raw_caption(scene: &Scene, rng: &mut impl Rng) -> String {
    match scene {
        Scene::Flat { background: b } => {
            let t = pick(
                rng,
                &[
                    "a plain {b} background",
                    "a solid {b} backdrop",
                    "{b} background",
                    "a flat {b} colour fill",
                    "simple {b} background, no pattern",
                ],
            );
            t.replace("{b}", b.name)
        }
        Scene::Gradient {
            from,
            to,
            horizontal,
        } => {
            let dir = if *horizontal {
                "left to right"
            } else {
                "top to bottom"
            };
            let t = pick(
                rng,
                &[
                    "a gradient from {a} to {b}",
                    "{a} to {b} gradient, {d}",
                    "a smooth {a} and {b} gradient background",
                    "soft gradient background fading from {a} to {b}",
                ],
            );
            t.replace("{a}", from.name)
                .replace("{b}", to.name)
                .replace("{d}", dir)
        }
        Scene::Shape {
            background,
            colour,
            shape,
            position,
            large,
        } => {
            let size = if *large {
                pick(rng, &["large", "big"])
            } else {
                pick(rng, &["small", "little"])
            };
            let place = pick(rng, position.phrases());
            let t = pick(
                rng,
                &[
                    "a {size} {c} {shape} {place} of a {bg} background",
                    "{bg} background with a {size} {c} {shape} {place}",
                    "a {size} {c} {shape} {place}, on {bg}",
                    "minimal design: {size} {c} {shape} {place} on a {bg} background",
                ],
            );
            let place_of = if t.contains("{place} of") {
                place.trim_start_matches("to ")
            } else {
                place
            };
            t.replace("{size}", size)
                .replace("{c}", colour.name)
                .replace("{shape}", shape.word())
                .replace("{place}", place_of)
                .replace("{bg}", background.name)
        }
        Scene::Stripes { a, b, vertical } => {
            let o = if *vertical { "vertical" } else { "horizontal" };
            let t = pick(
                rng,
                &[
                    "{a} and {b} {o} stripes",
                    "{o} stripes in {a} and {b}",
                    "a striped {a} and {b} background with {o} stripes",
                ],
            );
            t.replace("{a}", a.name)
                .replace("{b}", b.name)
                .replace("{o}", o)
        }
        Scene::Dots { background, dots } => {
            let t = pick(
                rng,
                &[
                    "{d} polka dots on a {b} background",
                    "a {b} background with {d} dots",
                    "{d} dot pattern on {b}",
                ],
            );
            t.replace("{d}", dots.name).replace("{b}", background.name)
        }
        Scene::Waves { background, waves } => {
            let t = pick(
                rng,
                &[
                    "{w} waves on a {b} background",
                    "wavy {w} lines over {b}",
                    "a {b} background with {w} wave pattern",
                ],
            );
            t.replace("{w}", waves.name).replace("{b}", background.name)
        }
        Scene::Confetti { background, pieces } => {
            let colours = pieces
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(" and ");
            let t = pick(
                rng,
                &[
                    "a {b} background with {c} confetti",
                    "{c} confetti on {b}",
                    "festive {c} confetti scattered over a {b} background",
                ],
            );
            t.replace("{b}", background.name).replace("{c}", &colours)
        }
        Scene::Sunset {
            sky_top,
            sky_bottom,
            sun,
        } => {
            let t = pick(
                rng,
                &[
                    "sunset over the horizon in {a} and {b} with a {s} sun",
                    "a {s} sun setting over the horizon under a {a} and {b} sky",
                    "{s} sun over the horizon, sky fading from {a} to {b}",
                ],
            );
            t.replace("{a}", sky_top.name)
                .replace("{b}", sky_bottom.name)
                .replace("{s}", sun.name)
        }
        Scene::Mountains { sky, mountains } => {
            let t = pick(
                rng,
                &[
                    "{m} mountains under a {s} sky",
                    "a {s} sky over {m} mountains",
                    "mountain range in {m} against {s}",
                ],
            );
            t.replace("{m}", mountains.name).replace("{s}", sky.name)
        }
        Scene::Sea { sky, sea } => {
            let t = pick(
                rng,
                &[
                    "a calm {w} sea under a {s} sky",
                    "{w} ocean and {s} sky",
                    "seascape: {s} sky above a {w} sea",
                ],
            );
            t.replace("{w}", sea.name).replace("{s}", sky.name)
        }
        Scene::Skyline { sky, buildings } => {
            let t = pick(
                rng,
                &[
                    "a {b} city skyline silhouette against a {s} sky",
                    "{b} skyline over a {s} background",
                    "city silhouette in {b} on {s}",
                ],
            );
            t.replace("{b}", buildings.name).replace("{s}", sky.name)
        }
        Scene::Bokeh { background, lights } => {
            let t = pick(
                rng,
                &[
                    "{l} bokeh lights on a {b} background",
                    "soft {l} bokeh over {b}",
                    "blurry {l} lights, {b} backdrop",
                ],
            );
            t.replace("{l}", lights.name)
                .replace("{b}", background.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(sample: &Sample, fx: f32, fy: f32) -> [u8; 3] {
        let x = ((fx * sample.size as f32) as u32).min(sample.size - 1);
        let y = ((fy * sample.size as f32) as u32).min(sample.size - 1);
        let i = ((y * sample.size + x) * 3) as usize;
        [sample.rgb[i], sample.rgb[i + 1], sample.rgb[i + 2]]
    }

    fn close(a: [u8; 3], b: [u8; 3]) -> bool {
        rgb_distance(a, b) < 30.0
    }

    #[test]
    fn articles_agree_with_the_next_word() {
        assert_eq!(
            with_articles("a orange sky over a navy sea"),
            "an orange sky over a navy sea"
        );
    }

    #[test]
    fn samples_are_deterministic_and_varied() {
        let g = Generator::new(64).unwrap();
        let a = g.sample(7, 42);
        let b = g.sample(7, 42);
        assert_eq!(a.caption, b.caption);
        assert_eq!(a.rgb, b.rgb);
        assert_eq!(a.rgb.len(), 64 * 64 * 3);
        let captions: std::collections::HashSet<String> =
            (0..200).map(|i| g.sample(7, i).caption).collect();
        assert!(
            captions.len() > 150,
            "only {} distinct captions in 200",
            captions.len()
        );
        assert_ne!(
            g.sample(8, 42).rgb,
            a.rgb,
            "another seed gives another stream"
        );
    }

    #[test]
    fn captions_match_what_was_drawn() {
        let g = Generator::new(64).unwrap();
        let mut checked_shapes = 0;
        for i in 0..400 {
            let s = g.sample(1, i);
            for colour in s.scene.colours() {
                assert!(
                    s.caption.contains(colour.name),
                    "caption {:?} lacks {}",
                    s.caption,
                    colour.name
                );
            }
            match &s.scene {
                Scene::Flat { background } => {
                    assert!(
                        s.rgb.chunks(3).all(|p| p == background.rgb),
                        "{}",
                        s.caption
                    );
                }
                Scene::Gradient {
                    from,
                    to,
                    horizontal,
                } => {
                    let (start, end) = if *horizontal {
                        ((0.0, 0.5), (0.99, 0.5))
                    } else {
                        ((0.5, 0.0), (0.5, 0.99))
                    };
                    assert!(
                        close(pixel(&s, start.0, start.1), from.rgb),
                        "{}",
                        s.caption
                    );
                    assert!(close(pixel(&s, end.0, end.1), to.rgb), "{}", s.caption);
                }
                Scene::Shape {
                    background,
                    colour,
                    shape,
                    position,
                    ..
                } => {
                    let (x, y) = position.anchor();
                    assert!(
                        close(pixel(&s, x, y), colour.rgb),
                        "{}: centre is not the shape colour",
                        s.caption
                    );
                    assert!(s.caption.contains(shape.word()), "{}", s.caption);
                    // The point mirrored through the image centre is background (except centred shapes).
                    if *position != Position::Centre {
                        assert!(
                            close(pixel(&s, 1.0 - x, 1.0 - y), background.rgb),
                            "{}: opposite side",
                            s.caption
                        );
                    }
                    // Corners are background.
                    assert!(
                        close(pixel(&s, 0.02, 0.02), background.rgb),
                        "{}",
                        s.caption
                    );
                    checked_shapes += 1;
                }
                Scene::Stripes { a, b, .. } => {
                    let count = |c: [u8; 3]| {
                        s.rgb
                            .chunks(3)
                            .filter(|p| close([p[0], p[1], p[2]], c))
                            .count()
                    };
                    assert!(count(a.rgb) > 500 && count(b.rgb) > 500, "{}", s.caption);
                }
                _ => {}
            }
        }
        assert!(
            checked_shapes > 80,
            "only {checked_shapes} shape scenes were checked"
        );
    }

    #[test]
    fn the_foreground_of_a_shape_is_the_shape_and_other_scenes_have_none() {
        let g = Generator::new(32).unwrap();
        let mut shapes = 0;
        for i in 0..200 {
            let s = g.sample(1, i);
            let Some(mask) = s.foreground() else {
                assert!(!matches!(s.scene, Scene::Shape { .. }), "{}", s.caption);
                continue;
            };
            let Scene::Shape {
                position, large, ..
            } = &s.scene
            else {
                panic!("{}: a foreground for a scene without a figure", s.caption);
            };
            assert_eq!(mask.len(), 32 * 32);
            let on: Vec<(f32, f32)> = mask
                .iter()
                .enumerate()
                .filter(|&(_, &m)| m)
                .map(|(i, _)| ((i % 32) as f32 + 0.5, (i / 32) as f32 + 0.5))
                .collect();
            // A small triangle (radius 0.17 × 0.9 × 32) covers ~50 pixels of 1024; a large
            // square (radius 0.23 × 1.1) ~260, a quarter of the image.
            let share = on.len() as f32 / mask.len() as f32;
            let most = if *large { 0.4 } else { 0.2 };
            assert!(share > 0.01 && share < most, "{}: {share}", s.caption);
            // The figure sits where the caption puts it.
            let (ax, ay) = position.anchor();
            let n = on.len() as f32;
            let cx = on.iter().map(|p| p.0).sum::<f32>() / n / 32.0;
            let cy = on.iter().map(|p| p.1).sum::<f32>() / n / 32.0;
            assert!(
                (cx - ax).abs() < 0.1 && (cy - ay).abs() < 0.1,
                "{}: centroid ({cx}, {cy}), anchor ({ax}, {ay})",
                s.caption
            );
            shapes += 1;
        }
        assert!(shapes > 40, "only {shapes} shape scenes");
    }

    #[test]
    fn shapes_are_told_apart_by_their_pixels() {
        // A square fills its bounding box's corners; a circle and a triangle do not.
        let g = Generator::new(64).unwrap();
        let rng = || ChaCha8Rng::seed_from_u64(3);
        let scene = |shape| Scene::Shape {
            background: COLOURS[17],
            colour: COLOURS[9],
            shape,
            position: Position::Centre,
            large: true,
        };
        let coverage = |rgb: &[u8]| {
            rgb.chunks(3)
                .filter(|p| close([p[0], p[1], p[2]], COLOURS[9].rgb))
                .count()
        };
        // The same generator state for each, so all three get the same radius.
        let square = coverage(&g.render(&scene(Shape::Square), &mut rng()));
        let circle = coverage(&g.render(&scene(Shape::Circle), &mut rng()));
        let triangle = coverage(&g.render(&scene(Shape::Triangle), &mut rng()));
        assert!(
            square > circle && circle > triangle,
            "square {square}, circle {circle}, triangle {triangle}"
        );
    }
}
