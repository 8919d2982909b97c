//! Super-resolution with ESRGAN-slim (UpscalerJS): a small residual dense network (RDN) that
//! enlarges an image 2× or 4×.
//!
//! The weights ship as TF.js "layers" models: `model.json` holds the Keras functional graph and
//! a manifest of float32 weights, `*.bin` the weights back to back. [`Upscaler`] reads the graph
//! and runs it on candle; it understands exactly the layers these models use (`InputLayer`,
//! `Conv2D` with `same`/`valid` padding and stride 1, `Activation` relu/linear, `Concatenate`,
//! `Add`, `UpSampling2D` nearest) and refuses anything else by name, so a different model is
//! never run half-understood.
//!
//! Images are processed in tiles with a margin wider than the network's receptive field, so the
//! result equals a whole-image pass while memory stays bounded at any size.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Largest side of an upscaled image, in pixels.
pub const MAX_OUTPUT_SIDE: u32 = 8192;
/// Most pixels of an upscaled image (40 megapixels).
pub const MAX_OUTPUT_PIXELS: u64 = 40_000_000;
/// Side of the part of the input one tile computes.
const TILE: u32 = 160;

/// One layer of the graph.
#[derive(Debug)]
enum Op {
    Input,
    Conv {
        kernel: Tensor,
        bias: Tensor,
        padding: usize,
        relu: bool,
    },
    Relu,
    Identity,
    Concat,
    Add,
    Upsample(usize),
}

#[derive(Debug)]
struct Node {
    name: String,
    op: Op,
    inputs: Vec<usize>,
}

/// ESRGAN-slim at one scale, loaded once and shared (`&self` methods, thread-safe).
#[derive(Debug)]
pub struct Upscaler {
    scale: u32,
    nodes: Vec<Node>,
    output: usize,
    /// Input pixels each side of a tile that the network needs to compute the tile exactly.
    margin: u32,
    device: Device,
}

#[derive(Deserialize)]
struct ModelJson {
    #[serde(rename = "modelTopology")]
    topology: Topology,
    #[serde(rename = "weightsManifest")]
    manifest: Vec<ManifestGroup>,
}

#[derive(Deserialize)]
struct Topology {
    model_config: ModelConfig,
}

#[derive(Deserialize)]
struct ModelConfig {
    class_name: String,
    config: GraphConfig,
}

#[derive(Deserialize)]
struct GraphConfig {
    layers: Vec<Layer>,
    input_layers: Vec<(String, usize, usize)>,
    output_layers: Vec<(String, usize, usize)>,
}

#[derive(Deserialize)]
struct Layer {
    class_name: String,
    name: String,
    config: serde_json::Value,
    /// `[[[name, node, tensor, kwargs], …]]`: the inputs of the layer's one call.
    inbound_nodes: Vec<Vec<(String, usize, usize, serde_json::Value)>>,
}

#[derive(Deserialize)]
struct ManifestGroup {
    weights: Vec<WeightSpec>,
}

#[derive(Deserialize)]
struct WeightSpec {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    #[serde(default)]
    quantization: Option<serde_json::Value>,
}

impl Upscaler {
    /// Loads the model of `scale` (2 or 4) from the `esrgan-slim` model directory
    /// (`x2.json` + `x2.bin`, `x4.json` + `x4.bin`).
    pub fn load(dir: &Path, scale: u32) -> Result<Self> {
        if !matches!(scale, 2 | 4) {
            return Err(Error::InvalidRequest {
                field: "scale",
                reason: format!("{scale}× is not available; ESRGAN-slim upscales 2× or 4×"),
            });
        }
        let json_path = dir.join(format!("x{scale}.json"));
        let bin_path = dir.join(format!("x{scale}.bin"));
        let json = std::fs::read(&json_path)
            .map_err(Error::io(format!("reading {}", json_path.display())))?;
        let bin = std::fs::read(&bin_path)
            .map_err(Error::io(format!("reading {}", bin_path.display())))?;
        Self::from_parts(&json, &bin, scale).map_err(|e| Error::Candle {
            action: "load ESRGAN",
            detail: format!("{} with {}: {e}", json_path.display(), bin_path.display()),
        })
    }

    /// Builds the network from the `model.json` text and the weight bytes.
    pub fn from_parts(json: &[u8], bin: &[u8], scale: u32) -> Result<Self> {
        let model: ModelJson = serde_json::from_slice(json).map_err(|e| Error::Candle {
            action: "read the TF.js model",
            detail: e.to_string(),
        })?;
        let device = Device::Cpu;
        let weights = read_weights(&model.manifest, bin, &device)?;
        let graph = &model.topology.model_config;
        if graph.class_name != "Functional" && graph.class_name != "Model" {
            return Err(unsupported(format!(
                "a `{}` model (only functional graphs)",
                graph.class_name
            )));
        }
        let layers = &graph.config.layers;
        let index: HashMap<&str, usize> = layers
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.as_str(), i))
            .collect();
        let mut nodes = Vec::with_capacity(layers.len());
        for layer in layers {
            let inputs = match layer.inbound_nodes.as_slice() {
                [] => Vec::new(),
                [call] => call
                    .iter()
                    .map(|(name, ..)| {
                        index.get(name.as_str()).copied().ok_or_else(|| {
                            unsupported(format!("layer `{}` reads unknown `{name}`", layer.name))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
                _ => {
                    return Err(unsupported(format!(
                        "layer `{}` is called more than once",
                        layer.name
                    )));
                }
            };
            if inputs.iter().any(|&i| i >= nodes.len()) {
                return Err(unsupported(format!(
                    "layer `{}` reads a layer defined after it",
                    layer.name
                )));
            }
            let op = op_of(layer, &weights)?;
            nodes.push(Node {
                name: layer.name.clone(),
                op,
                inputs,
            });
        }
        let find = |list: &[(String, usize, usize)], what: &str| -> Result<usize> {
            match list {
                [(name, ..)] => index
                    .get(name.as_str())
                    .copied()
                    .ok_or_else(|| unsupported(format!("{what} `{name}` is not a layer"))),
                _ => Err(unsupported(format!(
                    "{} {what}s (one expected)",
                    list.len()
                ))),
            }
        };
        let input = find(&graph.config.input_layers, "input")?;
        let output = find(&graph.config.output_layers, "output")?;
        if !matches!(nodes.get(input).map(|n| &n.op), Some(Op::Input)) {
            return Err(unsupported("the input is not an InputLayer".into()));
        }
        let upsampled: usize = nodes
            .iter()
            .map(|n| match n.op {
                Op::Upsample(s) => s,
                _ => 1,
            })
            .product();
        if upsampled != scale as usize {
            return Err(unsupported(format!(
                "the graph upsamples {upsampled}×, not the {scale}× its file name says"
            )));
        }
        let margin = receptive_radius(&nodes, output);
        Ok(Self {
            scale,
            nodes,
            output,
            margin,
            device,
        })
    }

    /// The factor this model enlarges by.
    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// Upscales `image` by [`Upscaler::scale`].
    pub fn upscale(&self, image: &RgbImage) -> Result<RgbImage> {
        let (w, h) = image.dimensions();
        let (ow, oh) = (
            u64::from(w) * u64::from(self.scale),
            u64::from(h) * u64::from(self.scale),
        );
        if w == 0 || h == 0 {
            return Err(Error::InvalidRequest {
                field: "image",
                reason: format!("the image is {w}×{h}; it needs at least one pixel each way"),
            });
        }
        if ow > u64::from(MAX_OUTPUT_SIDE)
            || oh > u64::from(MAX_OUTPUT_SIDE)
            || ow * oh > MAX_OUTPUT_PIXELS
        {
            return Err(Error::InvalidRequest {
                field: "image",
                reason: format!(
                    "{w}×{h} upscaled {}× is {ow}×{oh}; the output is limited to {MAX_OUTPUT_SIDE} \
                     px a side and {} megapixels",
                    self.scale,
                    MAX_OUTPUT_PIXELS / 1_000_000
                ),
            });
        }
        let s = self.scale;
        let mut out = RgbImage::new(w * s, h * s);
        let mut y = 0;
        while y < h {
            let th = TILE.min(h - y);
            let mut x = 0;
            while x < w {
                let tw = TILE.min(w - x);
                // The tile with its margin, clipped to the image: the network sees exactly the
                // pixels (and the zero padding at true borders) a whole-image pass would.
                let x0 = x.saturating_sub(self.margin);
                let y0 = y.saturating_sub(self.margin);
                let x1 = (x + tw + self.margin).min(w);
                let y1 = (y + th + self.margin).min(h);
                let tile = self.run(image, x0, y0, x1 - x0, y1 - y0)?;
                let (dx, dy) = ((x - x0) * s, (y - y0) * s);
                for oy in 0..th * s {
                    for ox in 0..tw * s {
                        out.put_pixel(x * s + ox, y * s + oy, *tile.get_pixel(dx + ox, dy + oy));
                    }
                }
                x += tw;
            }
            y += th;
        }
        Ok(out)
    }

    /// Runs the network on one region of `image`; returns the region upscaled.
    fn run(&self, image: &RgbImage, x0: u32, y0: u32, w: u32, h: u32) -> Result<RgbImage> {
        let (wu, hu) = (w as usize, h as usize);
        let mut planes = vec![0f32; 3 * wu * hu];
        for y in 0..h {
            for x in 0..w {
                let p = image.get_pixel(x0 + x, y0 + y).0;
                let i = (y * w + x) as usize;
                for c in 0..3 {
                    planes[c * wu * hu + i] = f32::from(p[c]);
                }
            }
        }
        let err = Error::candle("run ESRGAN");
        let input = Tensor::from_vec(planes, (1, 3, hu, wu), &self.device).map_err(&err)?;
        let mut values: Vec<Option<Tensor>> = vec![None; self.nodes.len()];
        // Free each intermediate once its last reader ran.
        let mut last_use = vec![0usize; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for &j in &n.inputs {
                last_use[j] = i;
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let arg = |k: usize| -> Result<&Tensor> {
                node.inputs
                    .get(k)
                    .and_then(|&j| values[j].as_ref())
                    .ok_or_else(|| Error::Candle {
                        action: "run ESRGAN",
                        detail: format!("layer `{}` is missing input {k}", node.name),
                    })
            };
            let value = match &node.op {
                Op::Input => input.clone(),
                Op::Conv {
                    kernel,
                    bias,
                    padding,
                    relu,
                } => {
                    let y = arg(0)?
                        .conv2d(kernel, *padding, 1, 1, 1)
                        .and_then(|y| y.broadcast_add(bias))
                        .map_err(&err)?;
                    if *relu { y.relu().map_err(&err)? } else { y }
                }
                Op::Relu => arg(0)?.relu().map_err(&err)?,
                Op::Identity => arg(0)?.clone(),
                Op::Concat => {
                    let parts = (0..node.inputs.len())
                        .map(arg)
                        .collect::<Result<Vec<_>>>()?;
                    Tensor::cat(&parts, 1).map_err(&err)?
                }
                Op::Add => {
                    let mut sum = arg(0)?.clone();
                    for k in 1..node.inputs.len() {
                        sum = (sum + arg(k)?).map_err(&err)?;
                    }
                    sum
                }
                Op::Upsample(s) => {
                    let x = arg(0)?;
                    let (_, _, th, tw) = x.dims4().map_err(&err)?;
                    x.upsample_nearest2d(th * s, tw * s).map_err(&err)?
                }
            };
            values[i] = Some(value);
            for &j in &node.inputs {
                if last_use[j] == i && j != self.output {
                    values[j] = None;
                }
            }
        }
        let out = values[self.output].take().ok_or_else(|| Error::Candle {
            action: "run ESRGAN",
            detail: "the output layer produced nothing".into(),
        })?;
        let (_, c, oh, ow) = out.dims4().map_err(&err)?;
        if c != 3 || oh != hu * self.scale as usize || ow != wu * self.scale as usize {
            return Err(Error::Candle {
                action: "run ESRGAN",
                detail: format!(
                    "output is {c}×{oh}×{ow}, expected 3 channels at {}×",
                    self.scale
                ),
            });
        }
        let data = out
            .clamp(0f32, 255f32)
            .and_then(|t| t.round())
            .and_then(|t| t.permute((0, 2, 3, 1)))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_dtype(DType::U8))
            .and_then(|t| t.to_vec1::<u8>())
            .map_err(&err)?;
        RgbImage::from_raw(ow as u32, oh as u32, data).ok_or_else(|| Error::Candle {
            action: "run ESRGAN",
            detail: "output size does not match its pixels".into(),
        })
    }
}

fn unsupported(detail: String) -> Error {
    Error::Candle {
        action: "build the ESRGAN graph",
        detail,
    }
}

/// The weights named in the manifest, cut from `bin` in order (TF.js stores them back to back).
fn read_weights(
    manifest: &[ManifestGroup],
    bin: &[u8],
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let mut weights = HashMap::new();
    let mut offset = 0usize;
    for spec in manifest.iter().flat_map(|g| &g.weights) {
        if spec.dtype != "float32" || spec.quantization.is_some() {
            return Err(unsupported(format!(
                "weight `{}` is {}{} (only plain float32)",
                spec.name,
                spec.dtype,
                if spec.quantization.is_some() {
                    ", quantised"
                } else {
                    ""
                }
            )));
        }
        let count: usize = spec.shape.iter().product();
        let end = offset + count * 4;
        let bytes = bin.get(offset..end).ok_or_else(|| {
            unsupported(format!(
                "the weights file ends at {} bytes, before `{}` (bytes {offset}..{end})",
                bin.len(),
                spec.name
            ))
        })?;
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let tensor = Tensor::from_vec(values, spec.shape.as_slice(), device)
            .map_err(Error::candle("load ESRGAN weights"))?;
        weights.insert(spec.name.clone(), tensor);
        offset = end;
    }
    if offset != bin.len() {
        return Err(unsupported(format!(
            "the weights file has {} bytes, the manifest describes {offset}",
            bin.len()
        )));
    }
    Ok(weights)
}

/// The op of one Keras layer, with its weights in candle's layout.
fn op_of(layer: &Layer, weights: &HashMap<String, Tensor>) -> Result<Op> {
    let cfg = &layer.config;
    let str_of = |key: &str| cfg.get(key).and_then(|v| v.as_str()).unwrap_or_default();
    let ints_of = |key: &str| -> Vec<usize> {
        cfg.get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64())
                    .map(|x| x as usize)
                    .collect()
            })
            .unwrap_or_default()
    };
    let activation = |what: &str| match str_of("activation") {
        "linear" | "" => Ok(false),
        "relu" => Ok(true),
        other => Err(unsupported(format!(
            "{what} `{}` uses activation `{other}`",
            layer.name
        ))),
    };
    match layer.class_name.as_str() {
        "InputLayer" => Ok(Op::Input),
        "Conv2D" => {
            let k = ints_of("kernel_size");
            if ints_of("strides") != [1, 1]
                || ints_of("dilation_rate").iter().any(|&d| d != 1)
                || cfg.get("groups").and_then(|g| g.as_u64()).unwrap_or(1) != 1
                || str_of("data_format") != "channels_last"
            {
                return Err(unsupported(format!(
                    "Conv2D `{}` has strides, dilation, groups or a layout other than 1/1/1/NHWC",
                    layer.name
                )));
            }
            let padding = match (str_of("padding"), k.as_slice()) {
                ("valid", _) => 0,
                ("same", [a, b]) if a == b && a % 2 == 1 => a / 2,
                (p, _) => {
                    return Err(unsupported(format!(
                        "Conv2D `{}` has padding `{p}` with kernel {k:?}",
                        layer.name
                    )));
                }
            };
            let get = |suffix: &str| {
                weights
                    .get(&format!("{}/{suffix}", layer.name))
                    .ok_or_else(|| unsupported(format!("no weight `{}/{suffix}`", layer.name)))
            };
            // Keras kernels are [kh, kw, in, out]; candle wants [out, in, kh, kw].
            let kernel = get("kernel")?
                .permute((3, 2, 0, 1))
                .and_then(|t| t.contiguous())
                .map_err(Error::candle("load ESRGAN weights"))?;
            let out = kernel.dims()[0];
            let bias = if cfg
                .get("use_bias")
                .and_then(|b| b.as_bool())
                .unwrap_or(true)
            {
                get("bias")?
                    .reshape((1, out, 1, 1))
                    .map_err(Error::candle("load ESRGAN weights"))?
            } else {
                Tensor::zeros((1, out, 1, 1), DType::F32, &Device::Cpu)
                    .map_err(Error::candle("load ESRGAN weights"))?
            };
            Ok(Op::Conv {
                kernel,
                bias,
                padding,
                relu: activation("Conv2D")?,
            })
        }
        "Activation" => {
            if activation("Activation")? {
                Ok(Op::Relu)
            } else {
                Ok(Op::Identity)
            }
        }
        "Concatenate" => match cfg.get("axis").and_then(|a| a.as_i64()) {
            Some(3 | -1) => Ok(Op::Concat),
            other => Err(unsupported(format!(
                "Concatenate `{}` on axis {other:?} (only channels)",
                layer.name
            ))),
        },
        "Add" => Ok(Op::Add),
        "UpSampling2D" => {
            let size = ints_of("size");
            match (size.as_slice(), str_of("interpolation")) {
                ([a, b], "nearest" | "") if a == b && *a >= 1 => Ok(Op::Upsample(*a)),
                _ => Err(unsupported(format!(
                    "UpSampling2D `{}` with size {size:?} and `{}` interpolation",
                    layer.name,
                    str_of("interpolation")
                ))),
            }
        }
        other => Err(unsupported(format!(
            "layer `{}` is a `{other}`, which this runtime does not implement",
            layer.name
        ))),
    }
}

/// How many input pixels beyond a tile the output layer depends on: the sum of the convolution
/// radii along the longest path, those after upsampling counted in input pixels (rounded up).
fn receptive_radius(nodes: &[Node], output: usize) -> u32 {
    let mut radius: Vec<f64> = vec![0.0; nodes.len()];
    let mut factor: Vec<usize> = vec![1; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let (r_in, f_in) = n
            .inputs
            .iter()
            .map(|&j| (radius[j], factor[j]))
            .fold((0.0f64, 1usize), |(r, f), (rj, fj)| (r.max(rj), f.max(fj)));
        let (r, f) = match &n.op {
            Op::Conv { padding, .. } => (r_in + *padding as f64 / f_in as f64, f_in),
            Op::Upsample(s) => (r_in, f_in * s),
            _ => (r_in, f_in),
        };
        radius[i] = r;
        factor[i] = f;
    }
    // Two input pixels to spare beyond the computed radius.
    radius[output].ceil() as u32 + 2
}
