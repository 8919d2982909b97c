//! Brand kits, ingestion and retrieval on real parts: the real MiniLM embedder and Qdrant's
//! embedded engine; the same suite runs against a Qdrant server when `ATELIER_QDRANT_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use atelier_inference::embed::{Embedder, MiniLmEmbedder};
use atelier_inference::models::Catalog;
use atelier_tools::Error;
use atelier_tools::brand::{
    BrandKit, BrandStore, ChunkKind, EdgeStore, Ingestor, KitSummary, Scope, ServerStore,
    ServerStoreConfig,
};
use atelier_tools::retrieve::{RetrieveArgs, retrieve_brand_guidelines};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn brands_dir() -> PathBuf {
    repo().join("examples/brands")
}

fn models_dir() -> PathBuf {
    match std::env::var_os("ATELIER_MODELS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/atelier/models"),
    }
}

/// One embedder for the whole test binary (loading takes a second).
fn embedder() -> Arc<dyn Embedder> {
    static E: OnceLock<Arc<MiniLmEmbedder>> = OnceLock::new();
    E.get_or_init(|| {
        let card = Catalog::builtin()
            .unwrap()
            .get("all-minilm-l6-v2")
            .unwrap()
            .clone();
        let path = card.installed_path(&models_dir()).unwrap_or_else(|e| {
            panic!("{e}\nrun `atelier models pull all-minilm-l6-v2` (scripts/test.sh does this)")
        });
        Arc::new(MiniLmEmbedder::load(path.parent().unwrap()).unwrap())
    })
    .clone()
}

fn kit(name: &str) -> BrandKit {
    BrandKit::load(&brands_dir().join(name)).unwrap()
}

/// Copy an example kit to `dest/<id>` so a test can change it.
fn copy_kit(name: &str, dest: &Path, id: &str) -> PathBuf {
    let to = dest.join(id);
    let from = brands_dir().join(name);
    for entry in walk(&from) {
        let rel = entry.strip_prefix(&from).unwrap();
        let target = to.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
    to
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[test]
fn example_kits_parse_and_are_long_enough() {
    for name in ["solstice", "voltline"] {
        let k = kit(name);
        assert_eq!(k.id, name);
        assert!(k.palette.len() >= 4);
        assert!(k.logos.iter().all(|l| l.path.is_file()));
        assert!(!k.forbidden_content.is_empty() && !k.forbidden_colours.is_empty());
        let words: usize = k
            .documents
            .iter()
            .map(|d| d.text.split_whitespace().count())
            .sum();
        assert!(words >= 3000, "{name} has {words} words of guidelines");
    }
    let s = kit("solstice");
    assert_eq!(s.colour("ember").unwrap().hex.to_string(), "#D9480F");
}

fn parse_err(toml_text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("brand.toml");
    std::fs::write(&file, toml_text).unwrap();
    let err = BrandKit::parse("bad", dir.path(), &file, toml_text).unwrap_err();
    assert!(matches!(err, Error::BrandKit { .. }), "{err:?}");
    err.to_string()
}

const GOOD_HEAD: &str =
    "name = \"X\"\n[fonts]\nheadline = \"A\"\nbody = \"B\"\n[voice]\ntone = []\nsummary = \"\"\n";

#[test]
fn malformed_kits_name_file_line_and_field() {
    let bad_hex =
        format!("{GOOD_HEAD}[[palette]]\nname = \"Red\"\nhex = \"#12G45Z\"\nrole = \"primary\"\n");
    let msg = parse_err(&bad_hex);
    assert!(msg.contains("brand.toml:10:7:"), "{msg}");
    assert!(
        msg.contains("palette[0].hex") && msg.contains("#RRGGBB"),
        "{msg}"
    );

    let missing_name = GOOD_HEAD.replace("name = \"X\"\n", "");
    let msg = parse_err(&format!(
        "{missing_name}[[palette]]\nname = \"Red\"\nhex = \"#FF0000\"\nrole = \"primary\"\n"
    ));
    assert!(
        msg.contains("missing field `name`") && msg.contains("field `name`"),
        "{msg}"
    );

    let unknown = format!("colour_scheme = \"warm\"\n{GOOD_HEAD}");
    let msg = parse_err(&unknown);
    assert!(
        msg.contains("unknown field `colour_scheme`") && msg.contains("brand.toml:1"),
        "{msg}"
    );

    let bad_role =
        format!("{GOOD_HEAD}[[palette]]\nname = \"Red\"\nhex = \"#FF0000\"\nrole = \"loud\"\n");
    let msg = parse_err(&bad_role);
    assert!(msg.contains("loud") && msg.contains("primary"), "{msg}");

    let missing_logo = format!(
        "{GOOD_HEAD}[[palette]]\nname = \"Red\"\nhex = \"#FF0000\"\nrole = \"primary\"\n[[logos]]\nfile = \"nope.svg\"\nplacement = [\"centre\"]\nmin_width_px = 100\n"
    );
    let msg = parse_err(&missing_logo);
    assert!(
        msg.contains("logos[0].file") && msg.contains("nope.svg") && msg.contains(":13:"),
        "{msg}"
    );

    let escape = missing_logo.replace("nope.svg", "../../etc/passwd");
    assert!(parse_err(&escape).contains("inside the kit folder"));
}

// ---- the shared store suite --------------------------------------------------------------

async fn ingestor(store: Arc<dyn BrandStore>) -> Ingestor {
    Ingestor::new(store, embedder())
}

/// Everything a BrandStore must do, run against any backend. `reopen` gives a fresh handle on
/// the same data (close and reopen for the embedded store).
async fn store_suite<F, Fut>(open: F, tenant_a: &str, tenant_b: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn BrandStore>>,
{
    let scratch = tempfile::tempdir().unwrap();
    let store = open().await;
    let ing = ingestor(store.clone()).await;

    // Ingest both brands for tenant A.
    let solstice = kit("solstice");
    let first = ing.ingest(tenant_a, &solstice).await.unwrap();
    assert!(first.chunks > 30, "{first:?}");
    assert_eq!(first.added, first.chunks);
    ing.ingest(tenant_a, &kit("voltline")).await.unwrap();
    let sa = Scope::new(tenant_a, "solstice").unwrap();
    assert_eq!(store.count(&sa).await.unwrap(), first.chunks);

    // Idempotent re-ingest: nothing written, count unchanged.
    let again = ing.ingest(tenant_a, &solstice).await.unwrap();
    assert_eq!(
        (again.added, again.removed, again.unchanged),
        (0, 0, first.chunks)
    );
    assert_eq!(store.count(&sa).await.unwrap(), first.chunks);

    // Tenant isolation: tenant B's "solstice" brand is Voltline's content.
    let impostor = copy_kit("voltline", scratch.path(), "solstice");
    ing.ingest(tenant_b, &BrandKit::load(&impostor).unwrap())
        .await
        .unwrap();
    let hits = ing
        .search(&sa, "riders must wear a helmet on the scooter", 10, None)
        .await
        .unwrap();
    assert_eq!(hits.len(), 10);
    for h in &hits {
        assert!(
            !h.chunk.text.to_lowercase().contains("helmet"),
            "tenant B leaked: {}",
            h.chunk.text
        );
    }
    let sb = Scope::new(tenant_b, "solstice").unwrap();
    let hits_b = ing
        .search(&sb, "riders must wear a helmet", 3, None)
        .await
        .unwrap();
    assert!(
        hits_b
            .iter()
            .any(|h| h.chunk.text.to_lowercase().contains("helmet"))
    );

    // Kind filter.
    let facts = ing
        .search(&sa, "palette colours", 5, Some(ChunkKind::Fact))
        .await
        .unwrap();
    assert!(
        !facts.is_empty()
            && facts
                .iter()
                .all(|h| h.chunk.kind == ChunkKind::Fact && h.chunk.document == "brand.toml")
    );

    // The kit's structured summary is stored with the passages, and no search returns it.
    let summary = ing.kit(tenant_a, "solstice").await.unwrap().unwrap();
    assert_eq!(summary, KitSummary::of(&solstice));
    assert_eq!(summary.palette[0].rgb(), [0xD9, 0x48, 0x0F]);
    let kit_b = ing.kit(tenant_b, "solstice").await.unwrap().unwrap();
    assert_eq!(kit_b.name, "Voltline", "tenant B has its own kit");
    assert!(ing.kit(tenant_a, "nobody").await.unwrap().is_none());
    let everything = ing
        .search(
            &sa,
            "Solstice Coffee Roasters kit summary: palette, fonts, logos, voice, rules",
            100,
            None,
        )
        .await
        .unwrap();
    assert!(everything.iter().all(|h| h.chunk.kind != ChunkKind::Kit));
    // So are the logo files, byte for byte, for layouts; no search returns them either.
    let assets = ing.assets(tenant_a, "solstice").await.unwrap();
    let names: Vec<&str> = assets.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["logo-reversed.svg", "logo.svg"]);
    assert_eq!(
        assets[1].1,
        std::fs::read(solstice.dir.join("logo.svg")).unwrap()
    );
    let logo_hits = ing
        .search(&sa, "brand asset logo.svg", 100, None)
        .await
        .unwrap();
    assert!(logo_hits.iter().all(|h| h.chunk.kind != ChunkKind::Asset));
    let result = retrieve_brand_guidelines(
        &ing,
        tenant_a,
        RetrieveArgs {
            brand: "solstice".into(),
            query: "logo placement".into(),
            top_k: 3,
            kind: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(result.kit, summary);
    assert_eq!(result.passages.len(), 3);

    // A changed section is replaced: one passage changes, the rest stay.
    let changed_dir = copy_kit("solstice", scratch.path(), "solstice-edit");
    let voice = changed_dir.join("guidelines/04-voice.md");
    let text = std::fs::read_to_string(&voice).unwrap();
    std::fs::write(&voice, text.replace("Shop the roast", "Taste the harvest")).unwrap();
    let edited = BrandKit::load(&changed_dir).unwrap();
    ing.ingest(
        tenant_a,
        &BrandKit {
            id: "solstice-edit".into(),
            ..kit("solstice")
        },
    )
    .await
    .unwrap();
    let se = Scope::new(tenant_a, "solstice-edit").unwrap();
    let before = store.count(&se).await.unwrap();
    let report = ing.ingest(tenant_a, &edited).await.unwrap();
    assert!(
        report.added >= 1 && report.removed == report.added,
        "{report:?}"
    );
    assert_eq!(store.count(&se).await.unwrap(), before);
    let hit = &ing.search(&se, "calls to action", 5, None).await.unwrap();
    assert!(
        hit.iter()
            .any(|h| h.chunk.text.contains("Taste the harvest"))
    );
    assert!(!hit.iter().any(|h| h.chunk.text.contains("Shop the roast")));

    // Reopen: same results.
    let query = "which colour should the background be";
    let before: Vec<_> = ing
        .search(&sa, query, 5, None)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    drop(ing);
    drop(store);
    let store = open().await;
    let ing = ingestor(store.clone()).await;
    let after: Vec<_> = ing
        .search(&sa, query, 5, None)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(before, after);
    assert_eq!(store.count(&sa).await.unwrap(), first.chunks);

    // Delete a brand: its points go, the others stay.
    let removed = ing.delete_brand(tenant_a, "solstice").await.unwrap();
    assert_eq!(removed, first.chunks);
    assert_eq!(store.count(&sa).await.unwrap(), 0);
    assert!(
        store
            .count(&Scope::new(tenant_a, "voltline").unwrap())
            .await
            .unwrap()
            > 0
    );
    assert!(store.count(&sb).await.unwrap() > 0);
    let err = retrieve_brand_guidelines(
        &ing,
        tenant_a,
        RetrieveArgs {
            brand: "solstice".into(),
            query: "logo".into(),
            top_k: 3,
            kind: None,
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("`brand`") && err.contains("voltline"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("brands");
    let dims = embedder().dimensions();
    store_suite(
        || {
            let path = path.clone();
            async move { Arc::new(EdgeStore::open(&path, dims).await.unwrap()) as Arc<dyn BrandStore> }
        },
        "tenant-a",
        "tenant-b",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_store_suite() {
    let Some(url) = std::env::var("ATELIER_QDRANT_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!(
            "SKIPPED server_store_suite: set ATELIER_QDRANT_URL (e.g. http://127.0.0.1:6334) to run it against a Qdrant server"
        );
        return;
    };
    let config = ServerStoreConfig {
        url,
        api_key: std::env::var("ATELIER_QDRANT_API_KEY").unwrap_or_default(),
        collection: format!("atelier_test_{}", std::process::id()),
        timeout: Duration::from_secs(30),
    };
    let dims = embedder().dimensions();
    store_suite(
        || {
            let config = config.clone();
            async move {
                Arc::new(ServerStore::connect(&config, dims).await.unwrap()) as Arc<dyn BrandStore>
            }
        },
        "tenant-a",
        "tenant-b",
    )
    .await;
    ServerStore::connect(&config, dims)
        .await
        .unwrap()
        .drop_collection()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_kit_leaves_the_store_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn BrandStore> =
        Arc::new(EdgeStore::open(&dir.path().join("s"), 384).await.unwrap());
    let ing = ingestor(store.clone()).await;
    ing.ingest("t", &kit("voltline")).await.unwrap();
    let scope = Scope::new("t", "voltline").unwrap();
    let n = store.count(&scope).await.unwrap();

    let broken = copy_kit("voltline", dir.path(), "voltline");
    let toml = std::fs::read_to_string(broken.join("brand.toml")).unwrap();
    std::fs::write(broken.join("brand.toml"), toml.replace("#00A6A6", "teal")).unwrap();
    let err = BrandKit::load(&broken).unwrap_err().to_string();
    assert!(
        err.contains("palette[0].hex") && err.contains("`teal` is not a colour"),
        "{err}"
    );
    assert_eq!(store.count(&scope).await.unwrap(), n);
}

#[derive(serde::Deserialize)]
struct Case {
    brand: String,
    query: String,
    expect: String,
}

/// ≥ 90% of the labelled queries find their passage in the top 3, with the real embedder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_queries_find_their_passages() {
    #[derive(serde::Deserialize)]
    struct File {
        case: Vec<Case>,
    }
    let cases: File =
        toml::from_str(&std::fs::read_to_string(brands_dir().join("retrieval-eval.toml")).unwrap())
            .unwrap();
    assert!(cases.case.len() >= 30);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn BrandStore> =
        Arc::new(EdgeStore::open(&dir.path().join("s"), 384).await.unwrap());
    let ing = ingestor(store).await;
    for b in ["solstice", "voltline"] {
        ing.ingest("eval", &kit(b)).await.unwrap();
    }
    let mut found = 0;
    let mut misses = Vec::new();
    for c in &cases.case {
        let args = RetrieveArgs {
            brand: c.brand.clone(),
            query: c.query.clone(),
            top_k: 3,
            kind: None,
        };
        let result = retrieve_brand_guidelines(&ing, "eval", args).await.unwrap();
        let norm = |s: &str| {
            s.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        };
        if result
            .passages
            .iter()
            .any(|p| norm(&p.text).contains(&norm(&c.expect)))
        {
            found += 1;
        } else {
            misses.push(format!(
                "{} / {:?} → {:?}",
                c.brand,
                c.query,
                result
                    .passages
                    .iter()
                    .map(|p| &p.citation)
                    .collect::<Vec<_>>()
            ));
        }
    }
    let rate = found as f64 / cases.case.len() as f64;
    eprintln!(
        "top-3 hit rate {found}/{} = {rate:.2}; misses:\n{}",
        cases.case.len(),
        misses.join("\n")
    );
    assert!(
        rate >= 0.9,
        "top-3 hit rate {rate:.2} < 0.90; misses:\n{}",
        misses.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_owns_an_embedded_store_and_the_dimension_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let first = EdgeStore::open(&path, 384).await.unwrap();
    let err = EdgeStore::open(&path, 384).await.unwrap_err().to_string();
    assert!(err.contains("in use by another process"), "{err}");
    drop(first);
    let err = EdgeStore::open(&path, 1536).await.unwrap_err().to_string();
    assert!(
        err.contains("384-dimensional") && err.contains("1536"),
        "{err}"
    );
    EdgeStore::open(&path, 384).await.unwrap();
}
