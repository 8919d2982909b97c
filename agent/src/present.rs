//! What the user reads of the model's words: the final message, put together from the model's
//! description and the facts the agent knows, and the note of each refinement round.
//!
//! A small model asked to report on its work copies what it is shown: the image prompt, the
//! scores, the failing checks' raw details, and sometimes loops on a phrase until its token
//! budget ends (the smoke evaluation of 2026-11-29 delivered "The image shows Volt Teal,
//! Midnight, Signal Yellow." four times in one message, and alt texts that listed check
//! failures). So the model only describes the image; whether it passed, and which checks it
//! still fails, is written here from the critique, and the model's prose is tidied first:
//! repeated sentences, sentences about checks or scores, a sentence cut off by the length limit
//! and characters of a script the brief does not use are dropped.

use atelier_tools::critique::{Check, Critique};

/// At most this many sentences of the model's message are kept.
pub const MAX_MESSAGE_SENTENCES: usize = 3;
/// Longest `message` the model may write (the decision's schema).
pub const MESSAGE_LIMIT: usize = 500;
/// Alt text: one sentence of at most this many characters (also the schema's limit).
pub const MAX_ALT_TEXT_CHARS: usize = 200;

/// Words that mark a sentence as a report on checks rather than a description: the agent
/// states the outcome itself, so such sentences could only repeat or contradict it.
const REPORT_WORDS: &[&str] = &[
    "score",
    "scores",
    "scored",
    "pass",
    "passes",
    "passed",
    "passing",
    "fail",
    "fails",
    "failed",
    "failing",
    "check",
    "checks",
    "blockiness",
    "iteration",
    "iterations",
];
/// The same for phrases with punctuation or spaces.
const REPORT_PHRASES: &[&str] = &["δe", "delta e", "brand:", "voice:", "prompt used"];

/// Alt-text openings that tell a screen-reader user nothing (they know it is an image).
const ALT_OPENINGS: &[&str] = &[
    "the image shows ",
    "this image shows ",
    "the image depicts ",
    "this image depicts ",
    "an image of ",
    "image of ",
    "a picture of ",
];

/// Of the image prompt, the model is shown only this many comma clauses: shown the whole
/// prompt (a list of a dozen phrases for the image model), a small model copied it into the
/// message and the alt text ("a tall glass with a sun behind it, a sun low in the sky behind
/// it, a cup on a wooden table by a window, …", smoke evaluation of 2026-11-30).
pub const SUBJECT_CLAUSES: usize = 2;
/// Longest subject shown to the model.
pub const SUBJECT_CHARS: usize = 120;
/// Clauses of one sentence the message or alt text may copy from the image prompt.
pub const MAX_COPIED_CLAUSES: usize = 2;

/// The subject of an image prompt: its first clauses, for the model to describe in its own
/// words.
pub fn subject(prompt: &str) -> String {
    let clauses: Vec<&str> = prompt
        .split([',', ';', '.'])
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .take(SUBJECT_CLAUSES)
        .collect();
    clip_words(&clauses.join(", "), SUBJECT_CHARS)
}

/// What the user reads at the end: the model's description, then the outcome of the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalText {
    pub message: String,
    pub alt_text: String,
}

/// Compose the final message and alt text from the model's `message` and `alt_text`, the
/// chosen image's `critique`, why refining `stopped` (if it stopped early), the `brief` and
/// the image `prompt` (fallbacks when nothing of the model's words survives).
pub fn compose(
    message: &str,
    alt_text: &str,
    critique: Option<&Critique>,
    stopped: Option<&str>,
    brief: &str,
    prompt: &str,
) -> FinalText {
    let keep_cjk = has_cjk(brief);
    let message = uncopy(&without_stutter(message), prompt);
    let alt_text = uncopy(&without_stutter(alt_text), prompt);
    let described = tidy(&message, MAX_MESSAGE_SENTENCES, MESSAGE_LIMIT, keep_cjk);
    let described = if described.is_empty() {
        format!(
            "Here is what I made for “{}”.",
            clip_words(brief.trim(), 80)
        )
    } else {
        described
    };
    let alt = tidy(&alt_text, 1, MAX_ALT_TEXT_CHARS, keep_cjk);
    let alt = strip_opening(&alt);
    let alt = if alt.is_empty() {
        sentence_from_prompt(prompt)
    } else {
        alt
    };
    FinalText {
        message: format!("{described}\n\n{}", outcome(critique, stopped)),
        alt_text: clip_sentence(&alt, MAX_ALT_TEXT_CHARS),
    }
}

/// The checks' outcome in a sentence or two: which passed or which still fail (and, when
/// refining `stopped` early, why), and which could not be measured.
pub fn outcome(critique: Option<&Critique>, stopped: Option<&str>) -> String {
    let Some(c) = critique else {
        return "It has not been checked.".to_string();
    };
    let named = |checks: &mut dyn Iterator<Item = &Check>| -> Vec<String> {
        checks
            .map(|f| {
                let detail = clip_words(f.detail.split(';').next().unwrap_or("").trim(), 90);
                if f.passed || detail.is_empty() {
                    human_name(&f.name).to_string()
                } else {
                    format!("{} ({detail})", human_name(&f.name))
                }
            })
            .collect()
    };
    let mut text = if c.passed {
        format!(
            "It passes every check: {}.",
            named(&mut c.checks.iter()).join(", ")
        )
    } else {
        let why = match stopped {
            Some(reason) => format!(
                ": I stopped refining because {}",
                reason.trim_end_matches('.')
            ),
            None => " within the budget".to_string(),
        };
        format!(
            "It does not pass every check yet: {}. It is the best of what I made{why}.",
            named(&mut c.failures()).join("; ")
        )
    };
    if !c.not_measured.is_empty() {
        let unmeasured: Vec<String> = c
            .not_measured
            .iter()
            .map(|n| {
                // The reason's first clause: its parenthesis says how to configure it, which
                // is for the operator's docs, not the user.
                let reason = n.reason.split([';', '(']).next().unwrap_or("").trim();
                format!("{} ({})", human_name(&n.name), clip_words(reason, 90))
            })
            .collect();
        text.push_str(&format!(" Not measured: {}.", unmeasured.join("; ")));
    }
    text
}

/// What may end a sentence or clause; dropped where the refinement note goes on after it.
const CLAUSE_END: [char; 5] = ['.', '!', '?', ';', ','];

/// The progress line of a refinement round: which checks it answers, what changes in the
/// prompt — the model's `change` (one sentence, tidied like the final message) or, when that is
/// empty or only echoes the request for it, the new prompt; "same prompt" when the model wrote
/// the old one back, whatever its `change` claims — and the parameter changes made in code
/// (`adjustments`, such as "more steps (20 → 30)"), which always include a new seed.
pub fn refine_note(
    change: &str,
    failures: &[Check],
    before: &str,
    after: &str,
    adjustments: &[String],
) -> String {
    let same = |a: &str| a.trim().trim_end_matches(CLAUSE_END).trim().to_lowercase();
    let change = tidy(change, 1, 200, true);
    let lower = change.to_lowercase();
    let echo = [
        "what you changed",
        "and why",
        "the new `prompt`",
        "at most 30 words",
    ]
    .iter()
    .any(|p| lower.contains(p));
    let what = if same(before) == same(after) {
        "same prompt".to_string()
    } else if change.is_empty() || echo {
        format!("new prompt “{}”", clip_words(after, 160))
    } else {
        // The note goes on after it ("…; a new seed."): no sentence ending of its own.
        change.trim_end_matches(CLAUSE_END).to_string()
    };
    let mut params: Vec<&str> = adjustments.iter().map(String::as_str).collect();
    params.push("a new seed");
    let params = params.join(", ");
    if failures.is_empty() {
        return format!("Refining: {what}; {params}.");
    }
    let mut names: Vec<&str> = failures.iter().map(|f| human_name(&f.name)).collect();
    names.dedup();
    format!("Refining for {}: {what}; {params}.", names.join(", "))
}

/// The name of a check in plain words.
fn human_name(check: &str) -> &str {
    match check {
        "technical" => "technical quality",
        "requested_colours" => "requested colours",
        "brand_palette" => "brand palette",
        "forbidden_colours" => "colours the brand forbids",
        "alignment" => "match with the brief",
        "size" => "channel size",
        "layout" => "headline layout",
        "safety" => "safety",
        other => other,
    }
}

/// The text with each sentence's run of clauses copied from the image prompt cut after
/// [`MAX_COPIED_CLAUSES`]: a list of prompt phrases is not a description (most of them name
/// variations the image model was offered, not what the image shows). A clause counts as
/// copied when its words, three or more, appear in that order in the prompt.
fn uncopy(text: &str, prompt: &str) -> String {
    let prompt_words = words(prompt);
    if prompt_words.is_empty() {
        return text.to_string();
    }
    // Padded with spaces so that a clause matches whole words only.
    let prompt_words = format!(" {} ", prompt_words.join(" "));
    let copied = |clause: &str| {
        let w = words(clause);
        w.len() >= 3 && prompt_words.contains(&format!(" {} ", w.join(" ")))
    };
    let mut out = Vec::new();
    for (sentence, ended) in sentences(text) {
        let clauses: Vec<&str> = sentence.split(',').collect();
        let mut kept: Vec<&str> = Vec::new();
        let mut copies = 0;
        let mut cut = false;
        for clause in &clauses {
            // The opening clause is matched without its lead-in ("I made …", "The image shows …").
            let body = if kept.is_empty() {
                strip_lead_in(clause)
            } else {
                clause
            };
            if copied(body) {
                copies += 1;
                if copies > MAX_COPIED_CLAUSES {
                    cut = true;
                    continue;
                }
            }
            kept.push(clause);
        }
        let joined = kept.join(",");
        if cut {
            // The sentence ends where the copying was cut; it keeps its own ending otherwise.
            let end = if ended {
                sentence.trim_end().chars().last().unwrap_or('.')
            } else {
                '.'
            };
            let body = joined.trim_end_matches(|c: char| !c.is_alphanumeric());
            out.push(format!("{body}{end}"));
        } else {
            out.push(joined);
        }
    }
    out.concat()
}

/// Shortest run of words that counts as a stutter when it comes twice in a row.
const MIN_STUTTER_WORDS: usize = 3;

/// The text with every run of three or more words said twice in a row said once ("a tall glass
/// with a sun behind it with a sun behind it", smoke evaluation of 2026-11-30). Words compare
/// without case and punctuation; the first occurrence keeps its own spelling.
fn without_stutter(text: &str) -> String {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let mut i = 0;
    while i < words.len() {
        let longest = (words.len() - i) / 2;
        let repeated = (MIN_STUTTER_WORDS..=longest).rev().find(|&n| {
            (0..n).all(|k| {
                let (a, b) = (normalise(words[i + k]), normalise(words[i + n + k]));
                !a.is_empty() && a == b
            })
        });
        match repeated {
            // Keep the second copy's last word, which carries the punctuation that follows.
            Some(n) => {
                let end = words[i + 2 * n - 1];
                words.drain(i + n..i + 2 * n);
                words[i + n - 1] = end;
            }
            None => i += 1,
        }
    }
    if words.len() == text.split_whitespace().count() {
        return text.to_string();
    }
    words.join(" ")
}

/// A clause without the words that introduce a description.
fn strip_lead_in(clause: &str) -> &str {
    const LEAD_INS: &[&str] = &[
        "i made ",
        "i've made ",
        "i have made ",
        "i created ",
        "here is ",
        "here's ",
        "the image shows ",
        "this image shows ",
        "it shows ",
    ];
    let trimmed = clause.trim_start();
    let lower = trimmed.to_lowercase();
    for lead in LEAD_INS {
        if lower.starts_with(lead) && trimmed.is_char_boundary(lead.len()) {
            return &trimmed[lead.len()..];
        }
    }
    trimmed
}

/// Lower-case words of letters and digits.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether a sentence reports on checks or scores.
fn is_report(sentence: &str) -> bool {
    let lower = sentence.to_lowercase();
    REPORT_PHRASES.iter().any(|p| lower.contains(p))
        || lower
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| REPORT_WORDS.contains(&w))
}

/// The model's prose without repeats, reports on checks, stray scripts or a cut-off ending,
/// at most `max` sentences. `limit` is the length the model's answer was held to: an
/// unfinished sentence that reaches it was cut off, one that stops short only lacks its full
/// stop.
fn tidy(text: &str, max: usize, limit: usize, keep_cjk: bool) -> String {
    let cut_off = text.chars().count() + 5 >= limit;
    let text: String = if keep_cjk {
        text.to_string()
    } else {
        text.chars().filter(|c| !is_cjk(*c)).collect()
    };
    let text = tighten(&text);
    let mut seen: Vec<String> = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    let sentences = sentences(&text);
    let complete = sentences.iter().filter(|(_, ended)| *ended).count();
    for (sentence, ended) in sentences {
        let sentence = sentence
            .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ':' | '.'))
            .trim();
        let key = normalise(sentence);
        if key.len() < 3 {
            continue;
        }
        // A repeat, or the unfinished start of one (a loop cut short).
        let repeat = seen.contains(&key) || (!ended && seen.iter().any(|k| k.starts_with(&key)));
        if is_report(sentence) || repeat {
            continue;
        }
        seen.push(key);
        let sentence = if ended {
            sentence.to_string()
        } else if !cut_off {
            format!(
                "{}.",
                sentence.trim_end_matches(|c: char| !c.is_alphanumeric())
            )
        } else if complete > 0 {
            // Cut off by the length limit after complete sentences: drop the stump.
            continue;
        } else {
            // The only sentence, cut off: end it at its last whole clause or word.
            end_cut_sentence(sentence)
        };
        if !sentence.is_empty() {
            kept.push(capitalise(&sentence));
        }
        if kept.len() == max {
            break;
        }
    }
    kept.join(" ")
}

/// Single spaces, none before punctuation (left where characters were removed).
fn tighten(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        let glued = word.starts_with(['.', ',', ';', ':', '!', '?']);
        if !out.is_empty() && !glued {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Split into sentences, each with whether it ended with its own punctuation.
fn sentences(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(c);
        let terminal = matches!(c, '.' | '!' | '?' | '。' | '！' | '？');
        if terminal && chars.peek().is_none_or(|n| n.is_whitespace() || *n == ',') {
            out.push((std::mem::take(&mut current), true));
        }
    }
    if !current.trim().is_empty() {
        out.push((current, false));
    }
    out
}

/// A sentence cut off mid-way, ended at its last comma (if that keeps most of it) or word.
fn end_cut_sentence(sentence: &str) -> String {
    let cut = match sentence.rfind(',') {
        Some(i) if i > sentence.len() / 2 => &sentence[..i],
        _ => sentence.rfind(' ').map_or(sentence, |i| &sentence[..i]),
    };
    let cut = cut.trim_end_matches(|c: char| !c.is_alphanumeric());
    if cut.is_empty() {
        String::new()
    } else {
        format!("{cut}.")
    }
}

fn strip_opening(alt: &str) -> String {
    let lower = alt.to_lowercase();
    for opening in ALT_OPENINGS {
        if lower.starts_with(opening) && alt.is_char_boundary(opening.len()) {
            return capitalise(&alt[opening.len()..]);
        }
    }
    alt.to_string()
}

/// Alt text when the model gave none worth keeping: the image prompt's first clause.
fn sentence_from_prompt(prompt: &str) -> String {
    let first = prompt.split([',', ';', '.']).next().unwrap_or("").trim();
    if first.is_empty() {
        return "A generated image.".to_string();
    }
    format!(
        "{}.",
        capitalise(&clip_words(first, MAX_ALT_TEXT_CHARS - 1))
    )
}

/// At most `max` characters, cut at a word and ended with “…” when cut.
fn clip_words(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max.saturating_sub(1)).collect();
    let head = match head.rfind(' ') {
        Some(i) if i > 0 => &head[..i],
        _ => head.as_str(),
    };
    format!("{}…", head.trim_end_matches(|c: char| !c.is_alphanumeric()))
}

/// A sentence of at most `max` characters, still ending with punctuation.
fn clip_sentence(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max).collect();
    end_cut_sentence(&head)
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Letters and digits only, lower case: two sentences that differ in spacing or punctuation
/// are the same sentence.
fn normalise(sentence: &str) -> String {
    sentence
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x303F   // CJK punctuation
        | 0x3040..=0x30FF // kana
        | 0x3400..=0x4DBF // CJK extension A
        | 0x4E00..=0x9FFF // CJK unified ideographs
        | 0xAC00..=0xD7AF // Hangul
        | 0xFF00..=0xFFEF // full-width forms
    )
}

fn has_cjk(text: &str) -> bool {
    text.chars().any(is_cjk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use atelier_tools::critique::NotMeasured;

    fn check(name: &str, passed: bool, detail: &str) -> Check {
        Check {
            name: name.into(),
            passed,
            score: if passed { 1.0 } else { 0.2 },
            detail: detail.into(),
            fix: None,
        }
    }

    fn critique(checks: Vec<Check>, not_measured: Vec<NotMeasured>) -> Critique {
        Critique {
            passed: checks.iter().all(|c| c.passed),
            score: 0.5,
            checks,
            not_measured,
            quality: atelier_inference::vision::quality::measure(&image::RgbImage::new(8, 8)),
        }
    }

    fn passing() -> Critique {
        critique(
            vec![
                check("technical", true, "sharp"),
                check("brand_palette", true, "90% on palette"),
                check("safety", true, "safe"),
            ],
            Vec::new(),
        )
    }

    #[test]
    fn a_looping_message_keeps_each_sentence_once() {
        // The smoke evaluation's voltline case, as the model wrote it.
        let looped = "The image shows a bright and clean Voltline scooter parked on a city street at night, rider wearing a helmet. The colors are Volt Teal, Midnight, Signal Yellow. The image shows Volt Teal, Midnight, Signal Yellow., teal background with navy and yellow. The image shows Volt Teal, Midnight, Signal Yellow., teal background with navy and yellow. The image shows Volt Teal, Midnight, Signal Yellow., teal backgrou";
        let text = compose(
            looped,
            "A scooter.",
            Some(&passing()),
            None,
            "a scooter at night",
            "",
        );
        let (described, outcome) = text.message.split_once("\n\n").unwrap();
        assert_eq!(
            described,
            "The image shows a bright and clean Voltline scooter parked on a city street at night, rider wearing a helmet. The colors are Volt Teal, Midnight, Signal Yellow. The image shows Volt Teal, Midnight, Signal Yellow."
        );
        assert_eq!(
            outcome,
            "It passes every check: technical quality, brand palette, safety."
        );
    }

    #[test]
    fn copied_check_reports_are_replaced_by_the_agents_own_outcome() {
        let copied = "The best image (score 0.96) did NOT pass. It still fails: technical (a visible grid of 32 px tiles (blockiness 0.7)). Brand: Solstice Coffee Roasters; voice: warm, unhurried.";
        let failing = critique(
            vec![
                check(
                    "technical",
                    false,
                    "a visible grid of 32 px tiles (blockiness 0.7)",
                ),
                check("safety", true, "safe"),
                check(
                    "brand_palette",
                    false,
                    "14% of the image in Voltline's palette; 22% of the image is ΔE 23 from the nearest palette colour (Signal Yellow)",
                ),
            ],
            vec![NotMeasured {
                name: "alignment".into(),
                reason: "no CLIP weights are configured (set `critique.clip` to a directory)"
                    .into(),
            }],
        );
        let text = compose(
            copied,
            "The image shows a green coffee mug on white, but it fails the technical check.",
            Some(&failing),
            None,
            "Something nice for autumn",
            "a green coffee mug, white background",
        );
        assert_eq!(
            text.message,
            "Here is what I made for “Something nice for autumn”.\n\nIt does not pass every check yet: technical quality (a visible grid of 32 px tiles (blockiness 0.7)); brand palette (14% of the image in Voltline's palette). It is the best of what I made within the budget. Not measured: match with the brief (no CLIP weights are configured)."
        );
        // The alt text said nothing but a check report: the prompt describes the image instead.
        assert_eq!(text.alt_text, "A green coffee mug.");
        assert_eq!(outcome(None, None), "It has not been checked.");
        // Refining stopped early: the reason replaces "within the budget".
        let stopped = outcome(Some(&failing), Some("the iteration budget (3) is spent."));
        assert!(
            stopped.contains(
                "It is the best of what I made: I stopped refining because the iteration budget (3) is spent. Not measured"
            ),
            "{stopped}"
        );
    }

    #[test]
    fn a_cut_off_alt_text_ends_at_a_clause_without_its_opening() {
        let cut = "The image shows a tall glass with a sun behind it, a sun low in the sky behind it, a cup on a wooden table by a window, hands around a ceramic mug, steam catching the first light, a pour-over cone mid";
        let text = compose(
            "A glass of iced coffee in the sun.",
            cut,
            None,
            None,
            "iced coffee",
            "",
        );
        assert_eq!(
            text.alt_text,
            "A tall glass with a sun behind it, a sun low in the sky behind it, a cup on a wooden table by a window, hands around a ceramic mug, steam catching the first light."
        );
    }

    #[test]
    fn a_message_copying_the_image_prompt_keeps_two_of_its_clauses() {
        // The smoke evaluation's iced-coffee case (2026-11-30), as the model wrote it.
        let prompt = "a tall glass with a sun behind it, a sun low in the sky behind it, a cup on a wooden table by a window, hands around a ceramic mug, steam catching the first light";
        let text = compose(
            "I made a tall glass with a sun behind it, a sun low in the sky behind it, a cup on a wooden table by a window, hands around a ceramic mug. Enjoy the summer, friends!",
            "The image shows a tall glass with a sun behind it, a sun low in the sky behind it, a cup on a wooden table by a window, steam catching the first light",
            None,
            None,
            "iced coffee for summer",
            prompt,
        );
        let (described, _) = text.message.split_once("\n\n").unwrap();
        assert_eq!(
            described,
            "I made a tall glass with a sun behind it, a sun low in the sky behind it. Enjoy the summer, friends!"
        );
        assert_eq!(
            text.alt_text,
            "A tall glass with a sun behind it, a sun low in the sky behind it."
        );
        // Clauses of the model's own words stay, however many; so does a short copy.
        let own =
            "I made a glass of iced coffee, bright and cold, with a lemon slice, on a blue table.";
        assert!(
            compose(own, "x", None, None, "iced coffee", prompt)
                .message
                .starts_with(own)
        );
        // Shown to the model: the subject only.
        assert_eq!(
            subject(prompt),
            "a tall glass with a sun behind it, a sun low in the sky behind it"
        );
        assert_eq!(subject(""), "");
    }

    #[test]
    fn a_phrase_said_twice_in_a_row_is_said_once() {
        assert_eq!(
            without_stutter(
                "A tall glass with a sun behind it with a sun behind it, red background."
            ),
            "A tall glass with a sun behind it, red background."
        );
        // Short repeats and repeats apart from each other are the writer's own.
        let kept = "A bold, bold look. Teal on navy, and teal on navy again.";
        assert_eq!(without_stutter(kept), kept);
        let text = compose(
            "I made a teal wave on navy a teal wave on navy.",
            "A tall glass with a sun behind it with a sun behind it",
            None,
            None,
            "a wave",
            "",
        );
        assert!(
            text.message.starts_with("I made a teal wave on navy.\n\n"),
            "{}",
            text.message
        );
        assert_eq!(text.alt_text, "A tall glass with a sun behind it.");
    }

    #[test]
    fn stray_characters_of_another_script_go_unless_the_brief_uses_it() {
        let text = compose(
            "A gold banner 金色.",
            "A gold banner on navy 金色",
            None,
            None,
            "a gold banner",
            "",
        );
        assert!(
            text.message.starts_with("A gold banner.\n\n"),
            "{}",
            text.message
        );
        assert_eq!(text.alt_text, "A gold banner on navy.");
        let text = compose("金色的横幅。", "金色的横幅", None, None, "金色的横幅", "");
        assert!(
            text.message.starts_with("金色的横幅。\n\n"),
            "{}",
            text.message
        );
    }

    #[test]
    fn a_good_answer_passes_through_with_the_outcome_after_it() {
        let text = compose(
            "Here is a warm, calm image for your sale. Enjoy!",
            "An orange circle on a cream ground.",
            Some(&passing()),
            None,
            "summer sale",
            "an orange circle",
        );
        assert_eq!(
            text.message,
            "Here is a warm, calm image for your sale. Enjoy!\n\nIt passes every check: technical quality, brand palette, safety."
        );
        assert_eq!(text.alt_text, "An orange circle on a cream ground.");
        // Words that merely contain a report word stay ("passenger", "checkered").
        let text = compose(
            "A checkered flag for every passenger.",
            "x",
            None,
            None,
            "b",
            "",
        );
        assert!(
            text.message
                .starts_with("A checkered flag for every passenger.")
        );
    }

    #[test]
    fn a_refinement_note_names_the_checks_and_never_echoes_its_instruction() {
        let failures = [
            check("technical", false, "a grid"),
            check("requested_colours", false, "missing navy"),
        ];
        let guidance = ["stronger colour guidance (3 → 4)".to_string()];
        assert_eq!(
            refine_note(
                "named the ground colour first",
                &failures,
                "gold circle, navy ground",
                "navy ground, gold circle",
                &guidance
            ),
            "Refining for technical quality, requested colours: Named the ground colour first; \
             stronger colour guidance (3 → 4), a new seed."
        );
        assert_eq!(
            refine_note(
                "say what you changed and why",
                &failures[..1],
                "gold circle",
                "navy ground, gold circle",
                &[]
            ),
            "Refining for technical quality: new prompt “navy ground, gold circle”; a new seed."
        );
        assert_eq!(
            refine_note("", &[], "a mug", "a cup", &[]),
            "Refining: new prompt “a cup”; a new seed."
        );
        // The model's own sentence ending does not run into the note's.
        assert_eq!(
            refine_note("Made the sun bigger!", &[], "a sun", "a big sun", &[]),
            "Refining: Made the sun bigger; a new seed."
        );
        // Seen in the main job: the model wrote the prompt back without its full stop.
        assert_eq!(
            refine_note(
                "made the cup ceramic",
                &failures[1..],
                "A cup on a table.",
                "a cup on a table",
                &guidance
            ),
            "Refining for requested colours: same prompt; stronger colour guidance (3 → 4), a new seed."
        );
    }

    #[test]
    fn at_most_three_sentences_and_a_short_alt_text() {
        let text = compose(
            "One. Two. Three. Four. Five.",
            &"word ".repeat(80),
            None,
            None,
            "b",
            "",
        );
        assert!(
            text.message.starts_with("One. Two. Three.\n\n"),
            "{}",
            text.message
        );
        assert!(
            text.alt_text.chars().count() <= MAX_ALT_TEXT_CHARS,
            "{}",
            text.alt_text
        );
        assert!(text.alt_text.ends_with("word."));
    }
}
