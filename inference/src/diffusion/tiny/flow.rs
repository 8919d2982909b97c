//! Rectified flow: images move on straight lines from data (t = 0) to noise (t = 1); the network
//! learns the velocity `noise − data`, and sampling integrates it back from noise with Euler steps.
//! Classifier-free guidance mixes the conditional and unconditional velocities.

use candle_core::{Device, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::model::{Condition, TinyDit};

/// Gaussian noise from a seeded generator: the same seed gives the same tensor everywhere.
pub fn seeded_noise(shape: &[usize], rng: &mut impl Rng, device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    Tensor::from_vec(data, shape, device)
}

/// Training times: logit-normal around t = 0.5, where the velocity is hardest to predict.
fn sample_times(batch: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..batch)
        .map(|_| {
            let z: f32 = StandardNormal.sample(rng);
            1.0 / (1.0 + (-z).exp())
        })
        .collect()
}

/// Mean squared error of the predicted velocity for a batch of clean images `x0` in [-1, 1];
/// with `weights` `[B, 1, H, W]`, the weighted mean (each pixel's error counts by its weight).
pub fn loss(
    model: &TinyDit,
    x0: &Tensor,
    cond: &Condition,
    weights: Option<&Tensor>,
    rng: &mut ChaCha8Rng,
) -> Result<Tensor> {
    let (b, c, h, w) = x0.dims4()?;
    let device = x0.device();
    let noise = seeded_noise(&[b, c, h, w], rng, device)?;
    let t = Tensor::from_vec(sample_times(b, rng), b, device)?;
    let t4 = t.reshape((b, 1, 1, 1))?;
    let xt = (x0.broadcast_mul(&(1.0 - &t4)?)? + noise.broadcast_mul(&t4)?)?;
    let target = (noise - x0)?;
    let predicted = model.forward(&xt, &t, cond)?;
    weighted_mse(&predicted, &target, weights)
}

/// `Σ w·(a − b)² / (Σ w · channels)`: the plain mean when `weights` is `None` or all ones.
fn weighted_mse(a: &Tensor, b: &Tensor, weights: Option<&Tensor>) -> Result<Tensor> {
    let squared = (a - b)?.sqr()?;
    match weights {
        None => squared.mean_all(),
        Some(w) => {
            let channels = squared.dim(1)? as f64;
            let total = squared.broadcast_mul(w)?.sum_all()?;
            total.broadcast_div(&(w.sum_all()? * channels)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_weights_give_the_plain_mean_and_weights_move_it_towards_the_weighted_pixels() {
        let device = Device::Cpu;
        // Error 1 on the first pixel, 0 on the other three, in all three channels.
        let a = Tensor::from_vec([1f32, 0., 0., 0.].repeat(3), (1, 3, 2, 2), &device).unwrap();
        let b = a.zeros_like().unwrap();
        let plain = weighted_mse(&a, &b, None)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((plain - 0.25).abs() < 1e-6, "{plain}");
        let ones = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &device).unwrap();
        let same = weighted_mse(&a, &b, Some(&ones))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((same - plain).abs() < 1e-6, "{same}");
        // The erring pixel weighted 5: 5 / (5 + 3) of the weight is on it.
        let w = Tensor::from_vec(vec![5f32, 1., 1., 1.], (1, 1, 2, 2), &device).unwrap();
        let up = weighted_mse(&a, &b, Some(&w))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((up - 5.0 / 8.0).abs() < 1e-6, "{up}");
    }
}

/// How to sample.
#[derive(Debug, Clone, Copy)]
pub struct SampleOptions {
    /// Euler steps (1..=64).
    pub steps: usize,
    /// Classifier-free guidance scale; 1 uses the conditional velocity alone.
    pub guidance: f32,
    /// Seed of the starting noise.
    pub seed: u64,
    /// img2img: how far towards noise the init image is moved before integrating back
    /// (1 = start from pure noise; 0 = return the init image unchanged).
    pub strength: f32,
}

/// Generate `cond.batch()` images `[B, 3, S, S]` in [-1, 1]. `on_step(i, x)` runs after each step
/// (progress, previews) and returns false to stop early (cancellation).
/// `negative` replaces the empty condition of guidance (a negative prompt); `init` `[B, 3, S, S]`
/// in [-1, 1] starts from an image instead of noise.
pub fn sample(
    model: &TinyDit,
    cond: &Condition,
    negative: Option<&Condition>,
    init: Option<&Tensor>,
    options: SampleOptions,
    mut on_step: impl FnMut(usize, &Tensor) -> bool,
) -> Result<Option<Tensor>> {
    let b = cond.batch()?;
    let s = model.config().image_size;
    let device = cond.pooled.device();
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let noise = seeded_noise(&[b, 3, s, s], &mut rng, device)?;
    let start = match init {
        Some(_) => options.strength.clamp(0.0, 1.0),
        None => 1.0,
    };
    let mut x = match init {
        Some(init) => (init.affine(1.0 - start as f64, 0.0)? + (&noise * start as f64)?)?,
        None => noise,
    };
    let guided = (options.guidance - 1.0).abs() > 1e-6;
    let (cond_in, uncond) = if guided {
        let other = match negative {
            Some(n) => n.clone(),
            None => cond.empty_like()?,
        };
        (cond.cat(&other)?, true)
    } else {
        (cond.clone(), false)
    };
    let steps = ((options.steps.max(1) as f32) * start).round() as usize;
    for i in 0..steps {
        let t = start * (1.0 - i as f32 / steps as f32);
        let t_next = start * (1.0 - (i + 1) as f32 / steps as f32);
        let v = if uncond {
            let xx = Tensor::cat(&[&x, &x], 0)?;
            let tt = Tensor::full(t, 2 * b, device)?;
            let v = model.forward(&xx, &tt, &cond_in)?;
            let vc = v.narrow(0, 0, b)?;
            let vu = v.narrow(0, b, b)?;
            (&vu + ((vc - &vu)? * options.guidance as f64)?)?
        } else {
            model.forward(&x, &Tensor::full(t, b, device)?, &cond_in)?
        };
        x = (x + (v * (t_next - t) as f64)?)?;
        if !on_step(i, &x) {
            return Ok(None);
        }
    }
    Ok(Some(x.clamp(-1f32, 1f32)?))
}
