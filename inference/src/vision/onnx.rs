//! Loading and running ONNX models with tract, Rust's own ONNX runtime (no native library).

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::error::{Error, Result};

/// An optimised, runnable ONNX graph with one fixed input shape.
pub(crate) type Plan = Arc<TypedRunnableModel>;

/// Loads `path`, fixes its first input to `shape` (f32) and optimises the graph for it.
pub(crate) fn load(path: &Path, shape: &[usize]) -> Result<Plan> {
    let fail = |action: &'static str| {
        let path = path.display().to_string();
        move |e: TractError| Error::Onnx {
            action,
            detail: format!("{path}: {e:#}"),
        }
    };
    if !path.is_file() {
        return Err(Error::Io {
            context: format!("reading ONNX model {}", path.display()),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    tract_onnx::onnx()
        .model_for_path(path)
        .map_err(fail("parse the model"))?
        .with_input_fact(0, f32::fact(shape).into())
        .map_err(fail("fix the input shape"))?
        .into_optimized()
        .map_err(fail("optimise the graph"))?
        .into_runnable()
        .map_err(fail("plan the graph"))
}

/// Runs `plan` on one input and returns its first output as a flat vector with its shape.
pub(crate) fn run(plan: &Plan, input: Tensor) -> Result<(Vec<usize>, Vec<f32>)> {
    let outputs = plan.run(tvec!(input.into())).map_err(|e| Error::Onnx {
        action: "run the model",
        detail: format!("{e:#}"),
    })?;
    let first = outputs.first().ok_or_else(|| Error::Onnx {
        action: "read the output",
        detail: "the model returned no output".into(),
    })?;
    let view = first
        .to_plain_array_view::<f32>()
        .map_err(|e| Error::Onnx {
            action: "read the output",
            detail: format!("{e:#}"),
        })?;
    Ok((view.shape().to_vec(), view.iter().copied().collect()))
}

/// Builds an f32 tensor of `shape` from `data` (row-major).
pub(crate) fn tensor(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
    tract_ndarray::ArrayD::from_shape_vec(shape, data)
        .map(Tensor::from)
        .map_err(|e| Error::Onnx {
            action: "build the input",
            detail: e.to_string(),
        })
}
