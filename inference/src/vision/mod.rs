//! Looking at images: the analysis critique tools stand on.
//!
//! - [`colour`]: dominant colours (k-means in CIELAB) and CIEDE2000 distances;
//! - [`quality`]: technical measurements (exposure, contrast, clipping, sharpness, blankness).

pub mod colour;
pub mod quality;
