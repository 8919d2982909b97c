//! The CLIP tokenizer of a Stable Diffusion checkpoint.
//!
//! diffusers repositories ship it as `tokenizer/vocab.json` + `tokenizer/merges.txt` (the files
//! of transformers' `CLIPTokenizer`), some also as `tokenizer/tokenizer.json`. Both load: a
//! `tokenizer.json` is read as it is; the pair is assembled into the pipeline transformers'
//! `CLIPTokenizerFast` builds from them — Unicode NFC, runs of white space folded to one space,
//! lower case; the text split into CLIP's words (the special tokens, English contractions,
//! letter runs, single digits, runs of other symbols); the byte-level alphabet; BPE with `</w>`
//! marking a word's last symbol (unknown symbols become the end token); the start and end
//! tokens around the text.

use std::path::{Path, PathBuf};

use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as Normalizers};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizers;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{Error, Result};

/// CLIP's start token.
pub const START: &str = "<|startoftext|>";
/// CLIP's end token (also its unknown and, in SD 1.x, its padding token).
pub const END: &str = "<|endoftext|>";
/// Marks the last symbol of a word in CLIP's vocabulary.
const WORD_END: &str = "</w>";
/// CLIP's word pattern (OpenAI's `simple_tokenizer.py`, as transformers writes it).
const WORDS: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// Where a checkpoint's tokenizer comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerFiles {
    /// A `tokenizer.json` of the `tokenizers` library.
    Json(PathBuf),
    /// A BPE vocabulary and its merges, in CLIP's format.
    VocabMerges { vocab: PathBuf, merges: PathBuf },
}

impl TokenizerFiles {
    /// `explicit` when given (a `tokenizer.json`), else what `dir` (a checkpoint's `tokenizer/`)
    /// holds: `tokenizer.json`, or `vocab.json` with `merges.txt`.
    pub fn find(dir: &Path, explicit: Option<&Path>) -> Result<Self> {
        if let Some(path) = explicit {
            return Ok(TokenizerFiles::Json(path.to_path_buf()));
        }
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Ok(TokenizerFiles::Json(json));
        }
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if vocab.is_file() && merges.is_file() {
            return Ok(TokenizerFiles::VocabMerges { vocab, merges });
        }
        Err(Error::InvalidRequest {
            field: "tokenizer",
            reason: format!(
                "{} holds neither tokenizer.json nor vocab.json with merges.txt (the CLIP \
                 tokenizer of a diffusers checkpoint)",
                dir.display()
            ),
        })
    }

    /// Load the tokenizer.
    pub fn load(&self) -> Result<Tokenizer> {
        match self {
            TokenizerFiles::Json(path) => {
                Tokenizer::from_file(path).map_err(|e| Error::InvalidRequest {
                    field: "tokenizer",
                    reason: format!("{}: {e}", path.display()),
                })
            }
            TokenizerFiles::VocabMerges { vocab, merges } => clip_bpe(vocab, merges),
        }
    }
}

/// CLIP's tokenizer from `vocab.json` and `merges.txt`.
pub fn clip_bpe(vocab: &Path, merges: &Path) -> Result<Tokenizer> {
    let bad = |path: &Path, reason: String| Error::InvalidRequest {
        field: "tokenizer",
        reason: format!("{}: {reason}", path.display()),
    };
    fn utf8(path: &Path) -> Result<&str> {
        path.to_str().ok_or_else(|| Error::InvalidRequest {
            field: "tokenizer",
            reason: format!("{}: the path is not valid UTF-8", path.display()),
        })
    }
    let model = BPE::from_file(utf8(vocab)?, utf8(merges)?)
        .unk_token(END.into())
        .end_of_word_suffix(WORD_END.into())
        .build()
        .map_err(|e| bad(merges, format!("not a BPE vocabulary and merge list: {e}")))?;
    let mut tokenizer = Tokenizer::new(model);
    let id = |token: &str| {
        tokenizer.token_to_id(token).ok_or_else(|| {
            bad(
                vocab,
                format!("has no `{token}`, so it is not a CLIP vocabulary"),
            )
        })
    };
    let (start, end) = (id(START)?, id(END)?);
    let pattern = |e: tokenizers::Error| bad(vocab, format!("CLIP's patterns do not compile: {e}"));
    tokenizer.with_normalizer(Some(Normalizers::new(vec![
        NFC.into(),
        Replace::new(
            tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()),
            " ",
        )
        .map_err(pattern)?
        .into(),
        Lowercase.into(),
    ])));
    tokenizer.with_pre_tokenizer(Some(PreTokenizers::new(vec![
        Split::new(
            SplitPattern::Regex(WORDS.into()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(pattern)?
        .into(),
        ByteLevel::new(false, true, false).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer.with_post_processor(Some(
        TemplateProcessing::builder()
            .try_single(format!("{START} $A {END}"))
            .and_then(|t| {
                t.special_tokens(vec![(START, start), (END, end)])
                    .build()
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| bad(vocab, format!("cannot frame the text: {e}")))?,
    ));
    tokenizer.add_special_tokens(&[AddedToken::from(START, true), AddedToken::from(END, true)]);
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use crate::diffusion::sd::testing::write_clip_vocab;

    fn write_vocab(dir: &Path, words: &[&str]) {
        write_clip_vocab(dir, words);
    }

    #[test]
    fn vocab_and_merges_tokenise_as_clip_does() {
        let dir = tempfile::tempdir().unwrap();
        write_vocab(dir.path(), &["a", "cat", "summer", "sale"]);
        let files = TokenizerFiles::find(dir.path(), None).unwrap();
        assert!(matches!(files, TokenizerFiles::VocabMerges { .. }));
        let tok = files.load().unwrap();
        let tokens = |text: &str| {
            tok.encode(text, true)
                .unwrap()
                .get_tokens()
                .iter()
                .map(String::as_str)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        // Case and runs of white space fold; punctuation is its own word; words end in </w>.
        assert_eq!(
            tokens("A   Summer\tSALE!"),
            [START, "a</w>", "summer</w>", "sale</w>", "!</w>", END]
        );
        // A word the merges do not finish stays in pieces; digits are single words.
        assert_eq!(
            tokens("cats 12"),
            [START, "ca", "t", "s</w>", "1</w>", "2</w>", END]
        );
        // Unknown symbols become the end token rather than vanishing.
        assert_eq!(tokens("é"), [START, END, END, END]);
        // The special tokens written in the text are kept whole.
        assert_eq!(tokens("cat<|endoftext|>"), [START, "cat</w>", END, END]);
        let ids = tok.encode("a cat", true).unwrap().get_ids().to_vec();
        assert_eq!(ids.first().copied(), tok.token_to_id(START));
        assert_eq!(ids.last().copied(), tok.token_to_id(END));
    }

    #[test]
    fn a_json_tokenizer_wins_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = TokenizerFiles::find(dir.path(), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("vocab.json") && err.contains("tokenizer.json"),
            "{err}"
        );
        write_vocab(dir.path(), &["cat"]);
        std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
        assert_eq!(
            TokenizerFiles::find(dir.path(), None).unwrap(),
            TokenizerFiles::Json(dir.path().join("tokenizer.json"))
        );
        // A broken vocabulary is an error naming the file, not a panic.
        std::fs::write(dir.path().join("vocab.json"), "[1, 2]").unwrap();
        let files = TokenizerFiles::VocabMerges {
            vocab: dir.path().join("vocab.json"),
            merges: dir.path().join("merges.txt"),
        };
        let err = files.load().unwrap_err().to_string();
        assert!(
            err.contains("merges.txt") || err.contains("vocab.json"),
            "{err}"
        );
        // A vocabulary without CLIP's special tokens is refused.
        std::fs::write(
            dir.path().join("vocab.json"),
            r#"{"a": 0, "b": 1, "ab": 2}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("merges.txt"), "a b\n").unwrap();
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("not a CLIP vocabulary"), "{err}");
    }
}
