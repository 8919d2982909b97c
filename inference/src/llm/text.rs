//! Turning token bytes into text deltas: whole UTF-8 characters only, and nothing that might
//! be the start of a stop string until it is known not to be.

/// What one push produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Step {
    /// Text safe to hand to the caller now.
    pub text: String,
    /// A stop string was reached; generation should end.
    pub stopped: bool,
}

#[derive(Debug, Default)]
pub(crate) struct TextAssembler {
    raw: Vec<u8>,
    pending: String,
    stops: Vec<String>,
}

impl TextAssembler {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        TextAssembler {
            raw: Vec::new(),
            pending: String::new(),
            stops,
        }
    }

    /// Add the bytes of one token.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Step {
        self.raw.extend_from_slice(bytes);
        self.decode_complete_chars();
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            let text = self.pending[..at].to_string();
            self.pending.clear();
            return Step {
                text,
                stopped: true,
            };
        }
        let hold = self.held_back_len();
        let cut = self.pending.len() - hold;
        let text = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        Step {
            text,
            stopped: false,
        }
    }

    /// Everything still held back, at the end of generation.
    pub(crate) fn finish(&mut self) -> String {
        if !self.raw.is_empty() {
            self.pending.push_str(&String::from_utf8_lossy(&self.raw));
            self.raw.clear();
        }
        std::mem::take(&mut self.pending)
    }

    fn decode_complete_chars(&mut self) {
        loop {
            match std::str::from_utf8(&self.raw) {
                Ok(s) => {
                    self.pending.push_str(s);
                    self.raw.clear();
                    return;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Safe: the prefix was just validated.
                    self.pending
                        .push_str(&String::from_utf8_lossy(&self.raw[..valid]));
                    match e.error_len() {
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            self.raw.drain(..valid);
                            return;
                        }
                        // Bytes that can never be valid: replace and go on.
                        Some(bad) => {
                            self.pending.push(char::REPLACEMENT_CHARACTER);
                            self.raw.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Length of the longest suffix of `pending` that begins some stop string.
    fn held_back_len(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            for len in (1..stop.len().min(self.pending.len() + 1)).rev() {
                if len <= best {
                    break;
                }
                let start = self.pending.len() - len;
                if self.pending.is_char_boundary(start)
                    && stop.is_char_boundary(len)
                    && stop.starts_with(&self.pending[start..])
                {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_multibyte_characters_wait_for_their_end() {
        let mut t = TextAssembler::new(vec![]);
        let e = "é".as_bytes();
        assert_eq!(t.push(&e[..1]).text, "");
        assert_eq!(t.push(&e[1..]).text, "é");
    }

    #[test]
    fn stop_strings_are_cut_even_across_tokens() {
        let mut t = TextAssembler::new(vec!["END".into()]);
        assert_eq!(t.push(b"hello E").text, "hello ");
        let step = t.push(b"ND and more");
        assert_eq!(
            step,
            Step {
                text: String::new(),
                stopped: true
            }
        );
    }

    #[test]
    fn held_text_is_released_when_it_is_not_a_stop() {
        let mut t = TextAssembler::new(vec!["END".into()]);
        assert_eq!(t.push(b"E").text, "");
        assert_eq!(t.push(b"x").text, "Ex");
        assert_eq!(t.push(b"EN").text, "");
        assert_eq!(t.finish(), "EN");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut t = TextAssembler::new(vec![]);
        assert_eq!(t.push(&[0xff, b'a']).text, "\u{fffd}a");
    }
}
