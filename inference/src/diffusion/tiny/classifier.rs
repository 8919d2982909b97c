//! A small CNN that tells which shape a picture shows and where: trained on the procedural
//! generator's shape scenes, it scores whether atelier-tiny draws what a caption asks for.

use std::path::Path;

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{
    AdamW, Conv2dConfig, Optimizer, ParamsAdamW, VarBuilder, VarMap, conv2d, linear, loss,
};

use super::data::{Generator, Position, Scene, Shape};
use crate::error::{Error, Result};

/// Side of the images the classifier reads.
pub const SIZE: usize = 64;

/// Shape and position labels of a shape scene, or `None` for any other scene.
pub fn labels(scene: &Scene) -> Option<(usize, usize)> {
    match scene {
        Scene::Shape {
            shape, position, ..
        } => Some((
            Shape::ALL.iter().position(|s| s == shape)?,
            Position::ALL.iter().position(|p| p == position)?,
        )),
        _ => None,
    }
}

/// Four strided 3×3 convolutions and two heads.
#[derive(Debug)]
pub struct ShapeClassifier {
    convs: Vec<candle_nn::Conv2d>,
    hidden: candle_nn::Linear,
    shape: candle_nn::Linear,
    position: candle_nn::Linear,
}

impl ShapeClassifier {
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let cfg = Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        let widths = [3, 16, 32, 64, 64];
        let convs = (0..4)
            .map(|i| conv2d(widths[i], widths[i + 1], 3, cfg, vb.pp(format!("conv{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            convs,
            hidden: linear(64 * 4 * 4, 128, vb.pp("hidden"))?,
            shape: linear(128, Shape::ALL.len(), vb.pp("shape"))?,
            position: linear(128, Position::ALL.len(), vb.pp("position"))?,
        })
    }

    /// Logits for shape and position of `[B, 3, 64, 64]` images in [-1, 1].
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let mut h = x.clone();
        for conv in &self.convs {
            h = conv.forward(&h)?.relu()?;
        }
        let h = self.hidden.forward(&h.flatten_from(1)?)?.relu()?;
        Ok((self.shape.forward(&h)?, self.position.forward(&h)?))
    }

    /// Predicted (shape, position) labels for each image.
    pub fn predict(&self, x: &Tensor) -> candle_core::Result<Vec<(usize, usize)>> {
        let (s, p) = self.forward(x)?;
        let s: Vec<u32> = s.argmax(D::Minus1)?.to_vec1()?;
        let p: Vec<u32> = p.argmax(D::Minus1)?.to_vec1()?;
        Ok(s.into_iter()
            .zip(p)
            .map(|(a, b)| (a as usize, b as usize))
            .collect())
    }

    /// Load weights written by [`train_classifier`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(Error::io(format!("reading {}", path.display())))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)
            .map_err(Error::candle("read classifier weights"))?;
        Self::new(vb).map_err(Error::candle("build the classifier"))
    }
}

/// RGB bytes of 64×64 images → `[B, 3, 64, 64]` in [-1, 1].
pub fn images_tensor(images: &[&[u8]]) -> candle_core::Result<Tensor> {
    let data: Vec<f32> = images
        .iter()
        .flat_map(|i| i.iter().map(|&v| v as f32 / 127.5 - 1.0))
        .collect();
    Tensor::from_vec(data, (images.len(), SIZE, SIZE, 3), &Device::Cpu)?
        .permute((0, 3, 1, 2))?
        .contiguous()
}

/// Shape scenes of the stream `seed`, from sample `start` on: (index, rgb, shape, position).
pub fn shape_samples(seed: u64, start: u64, count: usize) -> Vec<(u64, Vec<u8>, usize, usize)> {
    let Some(g) = Generator::new(SIZE as u32) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(count);
    let mut i = start;
    while out.len() < count {
        let s = g.sample(seed, i);
        if let Some((shape, position)) = labels(&s.scene) {
            out.push((i, s.rgb, shape, position));
        }
        i += 1;
    }
    out
}

/// Accuracy of shape and position on held-out real samples.
#[derive(Debug, Clone, Copy)]
pub struct ClassifierReport {
    pub shape_accuracy: f32,
    pub position_accuracy: f32,
}

/// Train on stream `seed` for `steps` batches of 64 and save to `out`; returns the accuracy on
/// 512 held-out samples of stream `seed + 1`.
pub fn train_classifier(seed: u64, steps: usize, out: &Path) -> Result<ClassifierReport> {
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
    let model = ShapeClassifier::new(vb).map_err(Error::candle("build the classifier"))?;
    let mut opt = AdamW::new(
        vars.all_vars(),
        ParamsAdamW {
            lr: 2e-3,
            weight_decay: 1e-4,
            ..Default::default()
        },
    )
    .map_err(Error::candle("create the optimiser"))?;
    let mut next = 0u64;
    for step in 0..steps {
        let batch = shape_samples(seed, next, 64);
        next = batch.last().map_or(next, |b| b.0 + 1);
        let refs: Vec<&[u8]> = batch.iter().map(|b| b.1.as_slice()).collect();
        let x = images_tensor(&refs).map_err(Error::candle("batch"))?;
        let shapes = Tensor::new(
            batch.iter().map(|b| b.2 as u32).collect::<Vec<_>>(),
            &Device::Cpu,
        )
        .map_err(Error::candle("batch"))?;
        let positions = Tensor::new(
            batch.iter().map(|b| b.3 as u32).collect::<Vec<_>>(),
            &Device::Cpu,
        )
        .map_err(Error::candle("batch"))?;
        let (s, p) = model.forward(&x).map_err(Error::candle("forward"))?;
        let l = (loss::cross_entropy(&s, &shapes).map_err(Error::candle("loss"))?
            + loss::cross_entropy(&p, &positions).map_err(Error::candle("loss"))?)
        .map_err(Error::candle("loss"))?;
        opt.backward_step(&l).map_err(Error::candle("step"))?;
        if step % 100 == 0 {
            tracing::info!(
                step,
                loss = l.to_scalar::<f32>().unwrap_or(f32::NAN),
                "classifier"
            );
        }
    }
    vars.save(out)
        .map_err(Error::candle("save the classifier"))?;
    evaluate_real(&model, seed + 1, 512)
}

/// Accuracy on `n` real samples of stream `seed`.
pub fn evaluate_real(model: &ShapeClassifier, seed: u64, n: usize) -> Result<ClassifierReport> {
    let samples = shape_samples(seed, 0, n);
    let mut shape_ok = 0;
    let mut position_ok = 0;
    for chunk in samples.chunks(64) {
        let refs: Vec<&[u8]> = chunk.iter().map(|b| b.1.as_slice()).collect();
        let x = images_tensor(&refs).map_err(Error::candle("batch"))?;
        for (pred, truth) in model
            .predict(&x)
            .map_err(Error::candle("predict"))?
            .iter()
            .zip(chunk)
        {
            shape_ok += usize::from(pred.0 == truth.2);
            position_ok += usize::from(pred.1 == truth.3);
        }
    }
    Ok(ClassifierReport {
        shape_accuracy: shape_ok as f32 / n.max(1) as f32,
        position_accuracy: position_ok as f32 / n.max(1) as f32,
    })
}
