//! Size, nesting-depth, token-count and alias limits checked on raw YAML text *before* it
//! reaches the YAML parser (docs/threat-model.md rules 1 and 4).
//!
//! libyaml (under `serde_yaml`) spends time quadratic in the nesting depth (64k levels took
//! 38.6 s), a few microseconds per token (4 MiB of `x,` took seconds), and replays anchored
//! subtrees for every alias ("billion laughs"). A SecretProviderClass needs none of that, so
//! every YAML text the agent parses (the config file, the `objects` string and each of its
//! elements) first goes through [`check`] (or [`check_within`] for a shared budget), a
//! linear scan that refuses:
//! - texts over [`MAX_YAML_BYTES`];
//! - nesting deeper than [`MAX_DEPTH`];
//! - more than [`MAX_TOKENS`] tokens (scalars, indicators, brackets): about 2,000 objects of
//!   8 fields, 6,000 of 2 (issue 10 asks for 5,000);
//! - aliases (`*name`, including merge keys `<<: *name`).
//!
//! The depth estimate is a small YAML tokenizer, not a parser. It tracks quoted scalars
//! (also across lines), comments, block scalars (`|`, `>`: their content lines are skipped),
//! plain scalars (so `it's` or `a [b` in block context are text), flow brackets, and block
//! nodes by column: each `- `, `? ` or `key:` opens a collection at its column (an
//! indentless sequence under a key counts as one more level). Depth is the number of open
//! block collections plus the flow depth. It is built to err high: where it cannot tell
//! text from structure it counts structure, so a refusal can at worst hit a contrived but
//! valid text, never let a deep document through to the parser.

use std::fmt;

/// Largest YAML text parsed (the config file limit), 4 MiB.
pub const MAX_YAML_BYTES: usize = 4 << 20;
/// Deepest nesting of collections accepted. A SecretProviderClass manifest needs 3
/// (`spec.parameters.<key>`); an `objects` string 2.
pub const MAX_DEPTH: usize = 64;
/// Most tokens in one YAML text, and in the `objects` parameter with all its elements
/// together. One object of 8 fields is about 25 tokens, one of 2 fields (name and type) 8, so
/// this allows about 2,000 and 6,000 objects (issue 10 sizes the agent for 5,000), and bounds
/// the parser's work (measured: about 2 µs a token, so about 0.1 s).
pub const MAX_TOKENS: usize = 50_000;

/// Why a YAML text was refused before parsing. `Display` says where and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlLimit {
    /// Over [`MAX_YAML_BYTES`].
    #[error("is {size} bytes, over the limit of {limit} bytes: is this the right file?")]
    TooLarge {
        /// Size of the text.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error(
        "nests collections deeper than the limit of {limit} levels at {at}: a SecretProviderClass needs only a few levels"
    )]
    TooDeep {
        /// The limit.
        limit: usize,
        /// Where the limit was crossed.
        at: Position,
    },
    /// More than [`MAX_TOKENS`] tokens.
    #[error(
        "has more than {limit} YAML tokens (keys, values, indicators) by {at}: split the objects across several SecretProviderClasses"
    )]
    TooManyTokens {
        /// The limit (what was left of the budget).
        limit: usize,
        /// Where the limit was crossed.
        at: Position,
    },
    /// A YAML alias.
    #[error(
        "uses a YAML alias at {at}: aliases (*name, <<: *name) are not supported, write the value out"
    )]
    Alias {
        /// Where.
        at: Position,
    },
}

/// A 1-based line and column (in characters of the scanned text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Seq,
    Map,
}

/// Checks size, depth, token count and aliases of a YAML text before it is parsed.
/// Linear in the text.
pub fn check(text: &str) -> Result<(), YamlLimit> {
    let mut budget = MAX_TOKENS;
    check_within(text, &mut budget)
}

/// [`check`] with a token budget shared by several texts (the `objects` string and its
/// elements): the text's tokens are taken from `budget`.
pub fn check_within(text: &str, budget: &mut usize) -> Result<(), YamlLimit> {
    if text.len() > MAX_YAML_BYTES {
        return Err(YamlLimit::TooLarge {
            size: text.len(),
            limit: MAX_YAML_BYTES,
        });
    }
    let mut s = Scanner::new(MAX_DEPTH, *budget);
    s.run(text)?;
    *budget = budget.saturating_sub(s.tokens);
    Ok(())
}

/// The deepest nesting [`check`] would estimate for `text` (no limit applied). For tests
/// and the benchmark.
pub fn estimate_depth(text: &str) -> usize {
    let mut s = Scanner::new(usize::MAX, usize::MAX);
    let _ = s.run(text);
    s.max_depth
}

/// The number of tokens [`check`] counts in `text` (no limit applied).
pub fn count_tokens(text: &str) -> usize {
    let mut s = Scanner::new(usize::MAX, usize::MAX);
    let _ = s.run(text);
    s.tokens
}

/// YAML's white space (line breaks are split off before).
fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

struct Scanner<'a> {
    max_depth_allowed: usize,
    max_tokens: usize,
    /// Open block collections: (column, kind).
    stack: Vec<(usize, Kind)>,
    flow: usize,
    /// Inside a quoted scalar (`'` or `"`), possibly across lines.
    quote: Option<u8>,
    /// Inside a block scalar: lines indented more than this (or blank) are its content;
    /// `Some(None)` for a block scalar at the document root (ends at `---`/`...`).
    block_scalar: Option<Option<usize>>,
    /// The previous line ended inside a plain scalar (its next line may continue it).
    plain_open: bool,
    max_depth: usize,
    tokens: usize,
    line: usize,
    current: &'a str,
}

/// Where one line's scan stands.
struct LineState {
    /// The next byte may start a token (quote, alias, flow collection, indicator).
    token_start: bool,
    /// A plain scalar is being read.
    in_plain: bool,
    /// Column at which a `key:` on this line would open its mapping.
    node_col: usize,
    /// This line already opened a mapping with `key:`.
    keyed: bool,
}

impl<'a> Scanner<'a> {
    fn new(max_depth_allowed: usize, max_tokens: usize) -> Self {
        Scanner {
            max_depth_allowed,
            max_tokens,
            stack: Vec::new(),
            flow: 0,
            quote: None,
            block_scalar: None,
            plain_open: false,
            max_depth: 0,
            tokens: 0,
            line: 0,
            current: "",
        }
    }

    fn run(&mut self, text: &'a str) -> Result<(), YamlLimit> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (i, raw) in text.split('\n').enumerate() {
            self.line = i + 1;
            self.current = raw;
            self.scan_line(raw.trim_end_matches('\r').as_bytes())?;
        }
        Ok(())
    }

    /// Position of byte `column0` of the current line, counted in characters.
    fn at(&self, column0: usize) -> Position {
        let prefix = self.current.get(..column0).unwrap_or(self.current);
        Position {
            line: self.line,
            column: prefix.chars().count() + 1,
        }
    }

    fn token(&mut self, column0: usize) -> Result<(), YamlLimit> {
        self.tokens = self.tokens.saturating_add(1);
        if self.tokens > self.max_tokens {
            return Err(YamlLimit::TooManyTokens {
                limit: self.max_tokens,
                at: self.at(column0),
            });
        }
        Ok(())
    }

    fn depth_check(&mut self, column0: usize) -> Result<(), YamlLimit> {
        let depth = self.stack.len().saturating_add(self.flow);
        self.max_depth = self.max_depth.max(depth);
        if depth > self.max_depth_allowed {
            return Err(YamlLimit::TooDeep {
                limit: self.max_depth_allowed,
                at: self.at(column0),
            });
        }
        Ok(())
    }

    /// A block collection of `kind` has a node at `col`: close deeper ones, then either
    /// continue the collection already open at `col` or open a new one.
    fn open(&mut self, col: usize, kind: Kind) -> Result<(), YamlLimit> {
        while let Some(&(c, k)) = self.stack.last() {
            // A key at the column of an indentless sequence ends that sequence.
            if c > col || (c == col && k == Kind::Seq && kind == Kind::Map) {
                self.stack.pop();
            } else {
                break;
            }
        }
        match self.stack.last() {
            Some(&(c, k)) if c == col && k == kind => Ok(()),
            _ => {
                self.stack.push((col, kind));
                self.depth_check(col)
            }
        }
    }

    fn scan_line(&mut self, chars: &[u8]) -> Result<(), YamlLimit> {
        let indent = chars.iter().take_while(|c| **c == b' ').count();
        let blank = chars[indent..].iter().all(|c| is_ws(*c));

        if let Some(parent) = self.block_scalar {
            let inside = match parent {
                None => !(chars.starts_with(b"---") || chars.starts_with(b"...")),
                Some(p) => blank || indent > p,
            };
            if inside {
                return Ok(());
            }
            self.block_scalar = None;
        }

        let mut st = LineState {
            token_start: true,
            in_plain: false,
            node_col: indent,
            keyed: false,
        };
        let mut i = 0;
        if self.quote.is_none() && self.flow == 0 {
            // Block context: the line's indentation decides which collections it closes.
            if blank || chars[indent] == b'#' {
                return Ok(());
            }
            if indent == 0 && chars[0] == b'%' {
                return Ok(()); // a directive
            }
            let marker = |m: u8| {
                chars.len() >= 3
                    && chars[..3].iter().all(|c| *c == m)
                    && chars.get(3).is_none_or(|c| is_ws(*c))
            };
            i = indent;
            if marker(b'-') || marker(b'.') {
                self.stack.clear();
                self.plain_open = false;
                i = 3;
                st.node_col = 3;
            } else if self.plain_open && self.stack.last().is_none_or(|(c, _)| indent > *c) {
                // Continuation of a multi-line plain scalar: its first byte is text.
                st.token_start = false;
                st.in_plain = true;
            }
        } else if self.quote.is_none() && self.plain_open {
            // Flow context across lines: a plain scalar may continue here too.
            st.token_start = false;
            st.in_plain = true;
        }
        self.plain_open = false;
        self.scan_inline(chars, i, &mut st)?;
        if self.quote.is_none() && self.block_scalar.is_none() {
            self.plain_open = st.in_plain;
        }
        Ok(())
    }

    fn scan_inline(
        &mut self,
        chars: &[u8],
        mut i: usize,
        st: &mut LineState,
    ) -> Result<(), YamlLimit> {
        let ws = |j: usize| chars.get(j).is_none_or(|c| is_ws(*c));
        while i < chars.len() {
            let c = chars[i];
            if let Some(q) = self.quote {
                i = self.scan_quote(chars, i, q);
                if self.quote.is_none() {
                    st.token_start = false;
                    st.in_plain = false;
                }
                continue;
            }
            let prev_ws = i == 0 || is_ws(chars[i - 1]);
            if is_ws(c) {
                i += 1;
                continue;
            }
            if c == b'#' && prev_ws {
                return Ok(()); // comment
            }
            let flow = self.flow > 0;
            // Block indicators: `- `, `? ` open a collection at their column.
            if !flow && st.token_start && (c == b'-' || c == b'?') && ws(i + 1) {
                self.token(i)?;
                self.open(i, if c == b'-' { Kind::Seq } else { Kind::Map })?;
                i += 1;
                while i < chars.len() && chars[i] == b' ' {
                    i += 1;
                }
                st.node_col = i;
                continue;
            }
            // A value indicator; in flow context also `:` right after a quoted key or a
            // collection (JSON style, `{"a":1}`).
            let json_key = flow && !st.token_start && !st.in_plain;
            if c == b':'
                && (ws(i + 1)
                    || json_key
                    || (flow && chars.get(i + 1).is_some_and(|n| b",[]{}".contains(n))))
            {
                self.token(i)?;
                if !flow && !st.keyed {
                    st.keyed = true;
                    self.open(st.node_col, Kind::Map)?;
                }
                st.token_start = true;
                st.in_plain = false;
                i += 1;
                continue;
            }
            match c {
                b'[' | b'{' if flow || st.token_start => {
                    self.token(i)?;
                    self.flow += 1;
                    self.depth_check(i)?;
                    st.token_start = true;
                    st.in_plain = false;
                }
                b']' | b'}' if flow => {
                    self.token(i)?;
                    self.flow -= 1;
                    st.token_start = false;
                    st.in_plain = false;
                }
                b',' if flow => {
                    self.token(i)?;
                    st.token_start = true;
                    st.in_plain = false;
                }
                b'\'' | b'"' if st.token_start => {
                    self.token(i)?;
                    self.quote = Some(c);
                    i += 1;
                    continue;
                }
                b'*' if st.token_start => return Err(YamlLimit::Alias { at: self.at(i) }),
                b'&' | b'!' if st.token_start => {
                    // An anchor or tag: the node itself follows.
                    self.token(i)?;
                    while i < chars.len() && !is_ws(chars[i]) {
                        i += 1;
                    }
                    continue;
                }
                b'|' | b'>' if st.token_start && !flow => {
                    // Block scalar: content lines are indented more than the node that owns it.
                    self.token(i)?;
                    self.block_scalar = Some(self.stack.last().map(|(c, _)| *c));
                    return Ok(());
                }
                _ => {
                    // A plain scalar is one token, however long.
                    if !st.in_plain {
                        self.token(i)?;
                    }
                    st.token_start = false;
                    st.in_plain = true;
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// Scans a quoted scalar from `i` (just inside the quote); returns where scanning goes on.
    fn scan_quote(&mut self, chars: &[u8], mut i: usize, q: u8) -> usize {
        while i < chars.len() {
            let c = chars[i];
            if q == b'"' && c == b'\\' {
                i += 2;
                continue;
            }
            if c == q {
                if q == b'\'' && chars.get(i + 1) == Some(&b'\'') {
                    i += 2;
                    continue;
                }
                self.quote = None;
                return i + 1;
            }
            i += 1;
        }
        chars.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_flow(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    fn nested_block_maps(depth: usize) -> String {
        let mut s = String::new();
        for d in 0..depth {
            s.push_str(&"  ".repeat(d));
            s.push_str(&format!("k{d}:\n"));
        }
        s
    }

    // reference: docs/threat-model.md rule 4 (cap depth before parsing)
    #[test]
    fn sixty_four_thousand_levels_are_refused_before_parsing() {
        for text in [
            nested_flow(65_536),
            "- ".repeat(65_536) + "x",
            format!("a: {}", "{b: ".repeat(65_536)),
        ] {
            match check(&text) {
                Err(YamlLimit::TooDeep { limit: 64, at }) => assert_eq!(at.line, 1),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_limit_is_exact_for_every_kind_of_nesting() {
        assert_eq!(check(&nested_flow(64)), Ok(()));
        assert!(matches!(
            check(&nested_flow(65)),
            Err(YamlLimit::TooDeep {
                at: Position {
                    line: 1,
                    column: 65
                },
                ..
            })
        ));
        assert_eq!(check(&("- ".repeat(64) + "x")), Ok(()));
        assert!(check(&("- ".repeat(65) + "x")).is_err());
        assert_eq!(check(&nested_block_maps(64)), Ok(()));
        match check(&nested_block_maps(65)) {
            Err(YamlLimit::TooDeep { at, .. }) => {
                assert_eq!(
                    at,
                    Position {
                        line: 65,
                        column: 129
                    }
                )
            }
            other => panic!("{other:?}"),
        }
        // Block and flow depth add up.
        let mixed = format!(
            "{}{}v: {}",
            nested_block_maps(60),
            "  ".repeat(60),
            nested_flow(4)
        );
        assert_eq!(estimate_depth(&mixed), 65);
        assert!(check(&mixed).is_err());
    }

    #[test]
    fn real_depth_matches_for_common_shapes() {
        for (text, want) in [
            ("a: b", 1),
            ("a:\n- b\n- c\nd: e", 2),
            ("a:\n  - b: 1\n    c:\n      - x\n", 4),
            ("- - - a\n  - b\n", 3),
            ("a: [1, {b: [2]}]", 4),
            ("a: \"[[[[\"\nb: '{{{'\n", 1),
            ("a: it's [not flow\nb: x # [[[ comment\n", 1),
            ("a: |\n  [[[[\n  - - - -\nb: >-\n  {{{{\n", 1),
            ("? a\n: b\n", 1),
            ("--- [a]\n--- {b: c}\n", 1),
            ("a: \"multi\n  [[[ line\"\nb: c\n", 1),
            ("a: plain\n  'continued [[[ text\nb: c\n", 1),
            ("a: &anchor [1]\nb: !!str x\n", 2),
        ] {
            assert_eq!(estimate_depth(text), want, "{text:?}");
            assert!(
                serde_yaml::from_str::<serde_yaml::Value>(text).is_ok() || text.starts_with("---"),
                "{text:?}"
            );
        }
    }

    // reference: docs/threat-model.md rule 4 (YAML anchors/aliases, "billion laughs")
    #[test]
    fn aliases_are_refused() {
        let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b]\n";
        assert_eq!(
            check(laughs),
            Err(YamlLimit::Alias {
                at: Position { line: 2, column: 8 }
            })
        );
        assert!(check("base: &b {x: 1}\nother:\n  <<: *b\n").is_err());
        // A `*` inside text is not an alias.
        assert_eq!(check("a: 2*3\nb: '*x'\nc: x *y\n"), Ok(()));
    }

    #[test]
    fn size_limit() {
        let big = "a".repeat(MAX_YAML_BYTES + 1);
        assert_eq!(
            check(&big),
            Err(YamlLimit::TooLarge {
                size: MAX_YAML_BYTES + 1,
                limit: MAX_YAML_BYTES
            })
        );
        assert_eq!(check(&big[1..]), Ok(()));
    }

    #[test]
    fn messages_say_where_and_what() {
        let e = check(&nested_flow(100)).unwrap_err().to_string();
        assert_eq!(
            e,
            "nests collections deeper than the limit of 64 levels at line 1, column 65: a SecretProviderClass needs only a few levels"
        );
    }
}
