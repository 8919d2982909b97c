//! `atelier brands …`: ingest brand kits, search, list and delete stored guidelines.

use anyhow::Context;
use atelier_tools::brand::{BrandKit, ChunkKind, Ingestor, Scope};
use atelier_tools::retrieve::{RetrieveArgs, retrieve_brand_guidelines};

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
                KindArg::Guideline => ChunkKind::Guideline,
                KindArg::Fact => ChunkKind::Fact,
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
