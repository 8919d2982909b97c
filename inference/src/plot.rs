//! Small charts written as PNG (loss curves, benchmark plots), with a bundled font so they
//! render the same on every machine.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::error::{Error, Result};

/// DejaVu Sans (Bitstream Vera licence, see `assets/fonts/DejaVuSans.LICENSE`).
pub const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Register the bundled font as `sans-serif` for every chart (once per process).
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            tracing::warn!("the bundled font could not be registered; charts will lack text");
        }
    });
}

/// A line chart of `(x, y)` points saved as a 900×500 PNG.
pub fn line_chart(
    points: &[(u64, f32)],
    title: &str,
    x_label: &str,
    y_label: &str,
    path: &Path,
) -> Result<()> {
    register_font();
    let fail = |e: String| Error::Io {
        context: format!("drawing {}", path.display()),
        source: std::io::Error::other(e),
    };
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let x_max = points.iter().map(|p| p.0).max().unwrap_or(1).max(1);
    let y_max = points.iter().map(|p| p.1).fold(0f32, f32::max).max(1e-6);
    let y_min = points
        .iter()
        .map(|p| p.1)
        .fold(f32::INFINITY, f32::min)
        .min(y_max);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0u64..x_max, (y_min * 0.95)..(y_max * 1.05))
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))?;
    Ok(())
}
