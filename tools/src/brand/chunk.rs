//! Splitting guideline documents and brand facts into retrievable chunks.
//!
//! Documents split at Markdown headings, then at paragraphs; paragraphs are packed into chunks
//! of at most [`ChunkOptions::max_words`] words, and each chunk after the first of a section
//! starts with the tail of the one before ([`ChunkOptions::overlap_words`]) so a passage cut
//! at a boundary is still found whole. Nothing is dropped: an over-long paragraph splits at
//! sentences, an over-long sentence at words.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::kit::{BrandKit, Document};
use super::summary::KitSummary;

/// Where a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChunkKind {
    /// A passage of a guideline document.
    Guideline,
    /// A structured fact from `brand.toml` (palette, logo rules, forbidden content …).
    Fact,
    /// The kit's structured summary as JSON ([`KitSummary`]), one per brand; searches for
    /// passages never return it.
    Kit,
    /// A file the layout tools need (a logo), base64 in `text`, named by `section`; searches
    /// for passages never return it.
    Asset,
}

impl ChunkKind {
    /// The payload value.
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkKind::Guideline => "guideline",
            ChunkKind::Fact => "fact",
            ChunkKind::Kit => "kit",
            ChunkKind::Asset => "asset",
        }
    }
}

/// One retrievable passage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The document's name in the kit (`guidelines/colour.md`), or `brand.toml` for facts.
    pub document: String,
    /// Heading path, `Colour > Using Ember`.
    pub section: String,
    pub kind: ChunkKind,
    /// Position within its document.
    pub ordinal: u32,
    pub text: String,
}

impl Chunk {
    /// Digest of everything that defines the chunk; unchanged content keeps its hash.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.document.as_str(),
            self.section.as_str(),
            self.kind.as_str(),
            self.text.as_str(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(self.ordinal.to_le_bytes());
        hex::encode(h.finalize())
    }

    /// The text that is embedded: the heading path gives a passage its context.
    pub fn embedding_text(&self) -> String {
        if self.kind == ChunkKind::Asset {
            // The bytes mean nothing to a text model; the name is enough to store a vector.
            return format!("brand asset {}", self.section);
        }
        if self.section.is_empty() {
            self.text.clone()
        } else {
            format!("{}: {}", self.section, self.text)
        }
    }
}

/// Chunk size limits.
#[derive(Debug, Clone, Copy)]
pub struct ChunkOptions {
    /// Most words in a chunk, overlap included (MiniLM reads 256 tokens ≈ 180 words at once).
    pub max_words: usize,
    /// Words of the previous chunk repeated at the start of the next one in a section.
    pub overlap_words: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self {
            max_words: 150,
            overlap_words: 30,
        }
    }
}

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Split a paragraph that is too long at sentence ends, then at words.
fn split_long(paragraph: &str, max: usize) -> Vec<String> {
    if words(paragraph) <= max {
        return vec![paragraph.to_string()];
    }
    let mut sentences = Vec::new();
    let mut start = 0;
    let bytes = paragraph.as_bytes();
    for (i, ch) in paragraph.char_indices() {
        let end = i + ch.len_utf8();
        if matches!(ch, '.' | '!' | '?') && (end == bytes.len() || bytes[end].is_ascii_whitespace())
        {
            sentences.push(paragraph[start..end].trim().to_string());
            start = end;
        }
    }
    if start < paragraph.len() && !paragraph[start..].trim().is_empty() {
        sentences.push(paragraph[start..].trim().to_string());
    }
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for sentence in sentences {
        let pieces: Vec<String> = if words(&sentence) > max {
            sentence
                .split_whitespace()
                .collect::<Vec<_>>()
                .chunks(max)
                .map(|w| w.join(" "))
                .collect()
        } else {
            vec![sentence]
        };
        for piece in pieces {
            if !current.is_empty() && words(&current) + words(&piece) > max {
                out.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(&piece);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn tail_words(s: &str, n: usize) -> String {
    let w: Vec<&str> = s.split_whitespace().collect();
    w[w.len().saturating_sub(n)..].join(" ")
}

/// Sections of a Markdown (or plain text) document: (heading path, paragraphs).
fn sections(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut headings: Vec<(usize, String)> = Vec::new();
    let mut paragraphs: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_fence = false;
    let path = |h: &[(usize, String)]| {
        h.iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join(" > ")
    };
    let flush_para = |current: &mut String, paragraphs: &mut Vec<String>| {
        let p = current.trim();
        if !p.is_empty() {
            paragraphs.push(p.to_string());
        }
        current.clear();
    };
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
        }
        let level = trimmed.chars().take_while(|&c| c == '#').count();
        let is_heading = !in_fence && (1..=6).contains(&level) && trimmed[level..].starts_with(' ');
        if is_heading {
            flush_para(&mut current, &mut paragraphs);
            if !paragraphs.is_empty() {
                out.push((path(&headings), std::mem::take(&mut paragraphs)));
            }
            headings.retain(|(l, _)| *l < level);
            headings.push((
                level,
                trimmed[level..]
                    .trim()
                    .trim_end_matches('#')
                    .trim()
                    .to_string(),
            ));
        } else if line.trim().is_empty() && !in_fence {
            flush_para(&mut current, &mut paragraphs);
        } else {
            if !current.is_empty() {
                current.push('\n');
            }
            current.push_str(line.trim_end());
        }
    }
    flush_para(&mut current, &mut paragraphs);
    if !paragraphs.is_empty() {
        out.push((path(&headings), paragraphs));
    }
    out
}

/// Chunks of one guideline document.
pub fn chunk_document(doc: &Document, options: ChunkOptions) -> Vec<Chunk> {
    let max = options.max_words.max(8);
    let overlap = options.overlap_words.min(max / 2);
    let mut texts: Vec<(String, String)> = Vec::new();
    for (section, paragraphs) in sections(&doc.text) {
        let pieces: Vec<String> = paragraphs
            .iter()
            .flat_map(|p| split_long(p, max - overlap))
            .collect();
        let mut current = String::new();
        let mut fresh_words = 0usize;
        for piece in pieces {
            if fresh_words > 0 && words(&current) + words(&piece) > max {
                let tail = tail_words(&current, overlap);
                texts.push((section.clone(), std::mem::take(&mut current)));
                current = if overlap > 0 {
                    format!("… {tail}")
                } else {
                    String::new()
                };
                fresh_words = 0;
            }
            if !current.is_empty() {
                current.push_str("\n\n");
            }
            current.push_str(&piece);
            fresh_words += words(&piece);
        }
        if fresh_words > 0 {
            texts.push((section, current));
        }
    }
    texts
        .into_iter()
        .enumerate()
        .map(|(i, (section, text))| Chunk {
            document: doc.name.clone(),
            section,
            kind: ChunkKind::Guideline,
            ordinal: u32::try_from(i).unwrap_or(u32::MAX),
            text,
        })
        .collect()
}

/// The structured facts of `brand.toml` as chunks, so they can be retrieved and cited.
pub fn brand_facts(kit: &BrandKit) -> Vec<Chunk> {
    let mut facts: Vec<(String, String)> = Vec::new();
    let palette: Vec<String> = kit
        .palette
        .iter()
        .map(|c| format!("{} {} ({})", c.name, c.hex, c.role))
        .collect();
    facts.push((
        "Palette".into(),
        format!("{} brand palette: {}.", kit.name, palette.join(", ")),
    ));
    for c in &kit.palette {
        let usage = if c.usage.is_empty() {
            String::new()
        } else {
            format!(" {}", c.usage)
        };
        facts.push((
            format!("Palette > {}", c.name),
            format!(
                "{} is a {} colour of {}, hex {}.{usage}",
                c.name, c.role, kit.name, c.hex
            ),
        ));
    }
    let fallback = if kit.fonts.fallback.is_empty() {
        String::new()
    } else {
        format!(" Fallbacks: {}.", kit.fonts.fallback.join(", "))
    };
    facts.push((
        "Typography".into(),
        format!(
            "{} headlines are set in {}; body text in {}.{fallback}",
            kit.name, kit.fonts.headline, kit.fonts.body
        ),
    ));
    for (i, logo) in kit.logos.iter().enumerate() {
        let file = logo
            .path
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        let placement: Vec<String> = logo
            .placement
            .iter()
            .map(|p| {
                serde_json::to_value(p)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .collect();
        let backgrounds = if logo.backgrounds.is_empty() {
            String::new()
        } else {
            format!(
                " Place it only on {} backgrounds.",
                logo.backgrounds.join(" or ")
            )
        };
        facts.push((
            format!("Logo rules > {}", if i == 0 { "primary logo".to_string() } else { file.clone() }),
            format!(
                "Logo {file}: {} Allowed placement: {}. Minimum width {} px; keep clear space of {:.0}% of the logo width around it.{backgrounds}",
                logo.description,
                placement.join(", "),
                logo.min_width_px,
                logo.clear_space * 100.0
            ),
        ));
    }
    if !kit.voice.tone.is_empty() || !kit.voice.summary.is_empty() {
        facts.push((
            "Tone of voice".into(),
            format!(
                "{} tone of voice: {}. {}",
                kit.name,
                kit.voice.tone.join(", "),
                kit.voice.summary
            ),
        ));
    }
    if !kit.dos.is_empty() {
        facts.push((
            "Do".into(),
            format!("{} — do: {}", kit.name, kit.dos.join("; ")),
        ));
    }
    if !kit.donts.is_empty() {
        facts.push((
            "Don't".into(),
            format!("{} — don't: {}", kit.name, kit.donts.join("; ")),
        ));
    }
    if !kit.forbidden_content.is_empty() {
        facts.push((
            "Forbidden content".into(),
            format!(
                "{} never shows: {}.",
                kit.name,
                kit.forbidden_content.join("; ")
            ),
        ));
    }
    if !kit.forbidden_colours.is_empty() {
        let list: Vec<String> = kit
            .forbidden_colours
            .iter()
            .map(|c| {
                if c.reason.is_empty() {
                    format!("{} {}", c.name, c.hex)
                } else {
                    format!("{} {} ({})", c.name, c.hex, c.reason)
                }
            })
            .collect();
        facts.push((
            "Forbidden colours".into(),
            format!(
                "{} never uses these colours: {}.",
                kit.name,
                list.join("; ")
            ),
        ));
    }
    if !kit.required.is_empty() {
        facts.push((
            "Required elements".into(),
            format!(
                "Every {} design must include: {}.",
                kit.name,
                kit.required.join("; ")
            ),
        ));
    }
    if !kit.sizes.is_empty() {
        let list: Vec<String> = kit
            .sizes
            .iter()
            .map(|s| format!("{} {}×{}", s.name, s.width, s.height))
            .collect();
        facts.push((
            "Default sizes".into(),
            format!("{} default sizes: {}.", kit.name, list.join(", ")),
        ));
    }
    facts
        .into_iter()
        .enumerate()
        .map(|(i, (section, text))| Chunk {
            document: "brand.toml".into(),
            section,
            kind: ChunkKind::Fact,
            ordinal: u32::try_from(i).unwrap_or(u32::MAX),
            text,
        })
        .collect()
}

/// Section name of the kit summary's chunk.
pub const KIT_SECTION: &str = "Kit summary";

/// The kit's structured summary as a chunk of kind [`ChunkKind::Kit`].
pub fn kit_chunk(kit: &BrandKit) -> Chunk {
    Chunk {
        document: "brand.toml".into(),
        section: KIT_SECTION.into(),
        kind: ChunkKind::Kit,
        ordinal: 0,
        text: serde_json::to_string(&KitSummary::of(kit)).unwrap_or_default(),
    }
}

/// Largest logo file stored with a brand (bigger ones are left out of the store, and layouts
/// made from the store go without them).
pub const MAX_ASSET_BYTES: usize = 512 * 1024;

/// The kit's logo files as chunks of kind [`ChunkKind::Asset`] (base64), so they live where the
/// brand's vectors live and layouts can be composed wherever the agent runs. Files that cannot be
/// read or exceed [`MAX_ASSET_BYTES`] are skipped with a warning.
pub fn asset_chunks(kit: &BrandKit) -> Vec<Chunk> {
    use base64::Engine as _;
    let mut out = Vec::new();
    for (i, logo) in kit.logos.iter().enumerate() {
        let name = logo
            .path
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        match std::fs::read(&logo.path) {
            Ok(bytes) if bytes.len() <= MAX_ASSET_BYTES => out.push(Chunk {
                document: name.clone(),
                section: name,
                kind: ChunkKind::Asset,
                ordinal: i as u32,
                text: base64::engine::general_purpose::STANDARD.encode(bytes),
            }),
            Ok(bytes) => tracing::warn!(
                file = %logo.path.display(),
                bytes = bytes.len(),
                max = MAX_ASSET_BYTES,
                "logo too large to store with the brand; layouts go without it"
            ),
            Err(e) => tracing::warn!(file = %logo.path.display(), error = %e, "logo unreadable"),
        }
    }
    out
}

/// Every chunk of a kit: its summary, its logo files, its facts, then each document's passages.
pub fn chunk_kit(kit: &BrandKit, options: ChunkOptions) -> Vec<Chunk> {
    let mut all = vec![kit_chunk(kit)];
    all.extend(asset_chunks(kit));
    all.extend(brand_facts(kit));
    for doc in &kit.documents {
        all.extend(chunk_document(doc, options));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document {
        Document {
            name: "g.md".into(),
            text: text.into(),
        }
    }

    #[test]
    fn headings_make_section_paths() {
        let chunks = chunk_document(
            &doc(
                "# Colour\n\nIntro.\n\n## Ember\n\nUse Ember for calls to action.\n\n# Voice\n\nWarm.",
            ),
            ChunkOptions::default(),
        );
        let sections: Vec<_> = chunks.iter().map(|c| c.section.as_str()).collect();
        assert_eq!(sections, ["Colour", "Colour > Ember", "Voice"]);
        assert_eq!(chunks[1].text, "Use Ember for calls to action.");
    }

    #[test]
    fn nothing_is_dropped_and_chunks_respect_the_limit() {
        let sentence = "The quick brown fox jumps over the lazy dog. ";
        let text = format!("# A\n\n{}\n\n{}", sentence.repeat(40), "word ".repeat(500));
        let options = ChunkOptions {
            max_words: 60,
            overlap_words: 10,
        };
        let chunks = chunk_document(&doc(&text), options);
        assert!(chunks.len() > 10);
        for c in &chunks {
            assert!(words(&c.text) <= 61, "{} words", words(&c.text)); // + the "…" marker
        }
        let fresh: usize = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                words(&c.text)
                    - if i == 0 || !c.text.starts_with('…') {
                        0
                    } else {
                        11
                    }
            })
            .sum();
        assert_eq!(fresh, words(&text) - 2); // the heading's "# A" is not text
    }

    #[test]
    fn hashes_change_with_content_only() {
        let a = chunk_document(&doc("# A\n\nOne.\n\n# B\n\nTwo."), ChunkOptions::default());
        let b = chunk_document(
            &doc("# A\n\nOne.\n\n# B\n\nTwo, changed."),
            ChunkOptions::default(),
        );
        assert_eq!(a[0].content_hash(), b[0].content_hash());
        assert_ne!(a[1].content_hash(), b[1].content_hash());
    }
}
