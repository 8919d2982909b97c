//! `atelier brands …`: ingest brand kits, search, list and delete stored guidelines.

use anyhow::Context;
use atelier_tools::brand::{BrandKit, ChunkKind, Ingestor, KitSummary, Scope};
use atelier_tools::retrieve::{PassageKind, RetrieveArgs, retrieve_brand_guidelines};

use crate::cli::{BrandsCommand, KindArg};
use crate::settings::Settings;

pub async fn run(settings: &Settings, command: BrandsCommand) -> anyhow::Result<()> {
    let embedder = super::embedder(settings).await?;
    let store = super::brand_store(settings, embedder.dimensions()).await?;
    let ingestor = Ingestor::new(store.clone(), embedder);
    let tenant_of = |t: Option<String>| t.unwrap_or_else(|| settings.brands.default_tenant.clone());
    match command {
        BrandsCommand::Ingest { dirs, tenant } => {
            let tenant = tenant_of(tenant);
            // Load every kit before storing any, so one bad kit changes nothing.
            let kits = dirs
                .iter()
                .map(|d| {
                    BrandKit::load(d).with_context(|| format!("loading brand kit {}", d.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            for kit in kits {
                let started = std::time::Instant::now();
                let r = ingestor.ingest(&tenant, &kit).await?;
                println!(
                    "{tenant}/{}: {} passages ({} new or changed, {} removed, {} unchanged) in {:.1} s",
                    kit.id,
                    r.chunks,
                    r.added,
                    r.removed,
                    r.unchanged,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        BrandsCommand::Search {
            brand,
            query,
            tenant,
            top_k,
            kind,
            json,
        } => {
            let kind = kind.map(|k| match k {
                KindArg::Guideline => PassageKind::Guideline,
                KindArg::Fact => PassageKind::Fact,
            });
            let result = retrieve_brand_guidelines(
                &ingestor,
                &tenant_of(tenant),
                RetrieveArgs {
                    brand,
                    query,
                    top_k,
                    kind,
                },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                for (i, p) in result.passages.iter().enumerate() {
                    println!("{}. [{:.3}] {}\n{}\n", i + 1, p.score, p.citation, p.text);
                }
            }
        }
        BrandsCommand::List { tenant } => {
            let tenant = tenant_of(tenant);
            let brands = store.brands(&tenant).await?;
            if brands.is_empty() {
                println!(
                    "no brands stored for tenant `{tenant}`; add one with `atelier brands ingest DIR`"
                );
            }
            for b in brands {
                let n = store.count(&Scope::new(&tenant, &b)?).await?;
                println!("{b}\t{n} passages");
            }
        }
        BrandsCommand::Show {
            brand,
            tenant,
            json,
        } => {
            let tenant = tenant_of(tenant);
            let Some(kit) = ingestor.kit(&tenant, &brand).await? else {
                let known = store.brands(&tenant).await?;
                anyhow::bail!(
                    "brand `{brand}` is not stored for tenant `{tenant}`; stored: {}",
                    if known.is_empty() {
                        "none (add one with `atelier brand add DIR`)".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            };
            let scope = Scope::new(&tenant, &brand)?;
            let facts = store.chunks(&scope, ChunkKind::Fact).await?.len();
            let passages = store.chunks(&scope, ChunkKind::Guideline).await?.len();
            if json {
                let value = serde_json::json!({
                    "tenant": tenant,
                    "kit": kit,
                    "facts": facts,
                    "passages": passages,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", show_kit(&kit));
                println!(
                    "stored: {passages} guideline passages, {facts} facts (tenant `{tenant}`)"
                );
            }
        }
        BrandsCommand::Delete { brand, tenant } => {
            let tenant = tenant_of(tenant);
            let n = ingestor.delete_brand(&tenant, &brand).await?;
            if n == 0 {
                anyhow::bail!("brand `{brand}` has no stored guidelines for tenant `{tenant}`");
            }
            println!("{tenant}/{brand}: removed {n} passages");
        }
    }
    Ok(())
}

/// A kit summary as readable text.
fn show_kit(kit: &KitSummary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let list = |items: &[String]| items.join("; ");
    let _ = writeln!(out, "{} ({})", kit.name, kit.brand);
    if !kit.tagline.is_empty() {
        let _ = writeln!(out, "  {}", kit.tagline);
    }
    let _ = writeln!(out, "palette:");
    for c in &kit.palette {
        let _ = writeln!(
            out,
            "  {:<12} {}  {:<10} {}",
            c.name,
            c.hex,
            c.role.to_string(),
            c.usage
        );
    }
    let _ = writeln!(
        out,
        "fonts: headline {}, body {}",
        kit.fonts.headline, kit.fonts.body
    );
    for l in &kit.logos {
        let _ = writeln!(
            out,
            "logo {}: {} (min {} px, on {})",
            l.file,
            l.description,
            l.min_width_px,
            l.backgrounds.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "voice: {} — {}",
        kit.voice.tone.join(", "),
        kit.voice.summary
    );
    let _ = writeln!(out, "do: {}", list(&kit.dos));
    let _ = writeln!(out, "don't: {}", list(&kit.donts));
    let _ = writeln!(out, "forbidden content: {}", list(&kit.forbidden_content));
    for c in &kit.forbidden_colours {
        let _ = writeln!(out, "forbidden colour: {} {} ({})", c.name, c.hex, c.reason);
    }
    let _ = writeln!(out, "required: {}", list(&kit.required));
    for s in &kit.sizes {
        let _ = writeln!(out, "size {}: {}×{}", s.name, s.width, s.height);
    }
    out
}
