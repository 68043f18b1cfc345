//! Stop strings: holds back streamed text that might be the start of a stop string.
//!
//! Generation stops as soon as any stop string is complete; when several complete in the
//! same chunk, the one that ends first wins (the longer one on a tie). That rule does not
//! depend on how the text was split into chunks, so streaming and one-shot runs agree.

pub struct StopMatcher {
    stops: Vec<String>,
    /// Text seen but not yet emitted: the tail that could still begin a stop string.
    held: String,
    stopped: bool,
}

/// What to do with a chunk of streamed text.
#[derive(Debug, PartialEq, Eq)]
pub struct StopCheck {
    /// Text that is safe to show now.
    pub emit: String,
    /// A stop string was completed; generation ends after emitting `emit`.
    pub stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are ignored (they would stop before the first token).
    pub fn new(stops: &[String]) -> Self {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            stopped: false,
        }
    }

    pub fn push(&mut self, text: &str) -> StopCheck {
        if self.stopped {
            return StopCheck {
                emit: String::new(),
                stopped: true,
            };
        }
        self.held.push_str(text);
        if let Some(start) = self.first_completed_stop() {
            self.held.truncate(start);
            self.stopped = true;
            return StopCheck {
                emit: std::mem::take(&mut self.held),
                stopped: true,
            };
        }
        let keep_from = self.start_of_possible_stop();
        let keep = self.held.split_off(keep_from);
        let emit = std::mem::replace(&mut self.held, keep);
        StopCheck { emit, stopped: false }
    }

    /// End of generation: releases any held-back text.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Start of the stop string that completes earliest in the held text, if any.
    fn first_completed_stop(&self) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()).map(|start| (start + stop.len(), start)))
            .min()
            .map(|(_, start)| start)
    }

    /// Byte offset of the longest suffix of the held text that is a proper prefix of some
    /// stop string (the text length if there is none). Every unfinished occurrence of a
    /// stop string starts inside this suffix, so nothing before it can ever be part of one.
    fn start_of_possible_stop(&self) -> usize {
        self.held
            .char_indices()
            .map(|(start, _)| start)
            .find(|&start| {
                let suffix = &self.held[start..];
                self.stops.iter().any(|stop| stop.starts_with(suffix))
            })
            .unwrap_or(self.held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn check(emit: &str, stopped: bool) -> StopCheck {
        StopCheck {
            emit: emit.to_string(),
            stopped,
        }
    }

    #[test]
    fn text_without_stops_passes_through() {
        let mut m = matcher(&[]);
        assert_eq!(m.push("Hello"), check("Hello", false));
        assert_eq!(m.push(" world"), check(" world", false));
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn stop_inside_one_chunk_cuts_before_it() {
        let mut m = matcher(&["</s>"]);
        assert_eq!(m.push("The end.</s>more"), check("The end.", true));
    }

    #[test]
    fn stop_split_across_chunks() {
        let mut m = matcher(&["USER:"]);
        assert_eq!(m.push("A cat. US"), check("A cat. ", false));
        assert_eq!(m.push("E"), check("", false));
        assert_eq!(m.push("R: next"), check("", true));
    }

    #[test]
    fn false_start_is_released() {
        let mut m = matcher(&["USER:"]);
        assert_eq!(m.push("A US"), check("A ", false));
        assert_eq!(m.push("B flag"), check("USB flag", false));
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn holds_only_the_longest_possible_prefix() {
        // "aab": the suffix "ab" could start "abc"; the first "a" cannot.
        let mut m = matcher(&["abc"]);
        assert_eq!(m.push("xaab"), check("xa", false));
        assert_eq!(m.push("c"), check("", true));
    }

    #[test]
    fn overlapping_restart_is_found() {
        // "ababc": the first "ab" fails at the second "a", the match starts at byte 2.
        let mut m = matcher(&["abc"]);
        assert_eq!(m.push("ab"), check("", false));
        assert_eq!(m.push("a"), check("ab", false));
        assert_eq!(m.push("bc!"), check("", true));
    }

    #[test]
    fn finish_releases_held_text() {
        let mut m = matcher(&["###"]);
        assert_eq!(m.push("total ##"), check("total ", false));
        assert_eq!(m.finish(), "##");
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn earliest_completed_stop_wins() {
        let mut m = matcher(&["world", "lo"]);
        assert_eq!(m.push("hello world"), check("hel", true));
        // Completion order decides, not start position: "c" completes before "abcd".
        let mut m = matcher(&["abcd", "c"]);
        assert_eq!(m.push("xabcd"), check("xab", true));
        let mut m = matcher(&["abcd", "c"]);
        assert_eq!(m.push("xab"), check("x", false));
        assert_eq!(m.push("cd"), check("ab", true));
    }

    #[test]
    fn longer_stop_wins_a_tie() {
        let mut m = matcher(&["b", "ab"]);
        assert_eq!(m.push("xab"), check("x", true));
    }

    #[test]
    fn multibyte_text_is_split_on_char_boundaries() {
        let mut m = matcher(&["éà"]);
        assert_eq!(m.push("café"), check("caf", false));
        assert_eq!(m.push("s"), check("és", false));
        assert_eq!(m.push("ééà"), check("é", true));
    }

    #[test]
    fn nothing_after_a_stop() {
        let mut m = matcher(&["\n\n"]);
        assert_eq!(m.push("line\n"), check("line", false));
        assert_eq!(m.push("\nafter"), check("", true));
        assert_eq!(m.push("more"), check("", true));
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn empty_stop_strings_are_ignored() {
        let mut m = matcher(&["", "END"]);
        assert_eq!(m.push("abc"), check("abc", false));
        assert_eq!(m.push("xEND"), check("x", true));
    }
}
