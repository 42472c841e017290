//! A multi-document YAML stream cut into documents, each with its own text (so objects the
//! migration does not touch are printed back byte for byte, comments included) and its
//! parsed value.
//!
//! A line that starts with `---` or `...` followed by white space or the line's end is a
//! document marker wherever it appears: YAML forbids such a line inside any scalar
//! (`c-forbidden`), so cutting there never splits a value. Text after `---` on the marker
//! line (`--- # note`, `--- {a: b}`) belongs to the document it opens.
//!
//! The whole stream is checked by [`crate::config::limits`] before anything is parsed
//! (size, nesting depth, aliases), with a token budget sized for manifest streams.

use serde_yaml::Value;

use crate::config::limits;

/// Tokens accepted in one stream: about 3,000 workloads of 150 tokens, parsed in about a
/// second (libyaml spends about 2 µs a token).
pub const MAX_STREAM_TOKENS: usize = 500_000;

/// One document of the stream.
#[derive(Debug, Clone)]
pub struct Doc {
    /// Its text without the marker line, comments included, ending with a line break.
    pub text: String,
    /// The parsed value (`Null` for a document of comments only).
    pub value: Value,
}

/// Checks the stream's limits, cuts it and parses every document. Every problem is
/// returned at once, one line each.
pub fn parse(text: &str) -> Result<Vec<Doc>, Vec<String>> {
    let mut budget = MAX_STREAM_TOKENS;
    limits::check_within(text, &mut budget).map_err(|e| vec![format!("the input {e}")])?;
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for (i, (line, body)) in split(text).into_iter().enumerate() {
        if body.trim().is_empty() {
            continue;
        }
        match serde_yaml::from_str::<Value>(&body) {
            Ok(value) => docs.push(Doc { text: body, value }),
            Err(e) => errors.push(format!(
                "document {} (from line {line}): {}: fix the YAML and run migrate again",
                i.saturating_add(1),
                one_line_error(&e, line)
            )),
        }
    }
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(errors)
    }
}

/// The parser's message with its line counted in the whole stream.
fn one_line_error(e: &serde_yaml::Error, first_line: usize) -> String {
    let message = e.to_string();
    let message = message.lines().next().unwrap_or("invalid YAML").to_owned();
    match e.location() {
        Some(loc) => {
            let line = loc.line().saturating_add(first_line).saturating_sub(1);
            // serde_yaml appends "at line L column C" relative to the document.
            let head = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_owned();
            format!("{head} at line {line} column {}", loc.column())
        }
        None => message,
    }
}

/// The documents' texts with the line each starts on.
pub fn split(text: &str) -> Vec<(usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 1usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let n = i.saturating_add(1);
        let marker = |m: &str| {
            line.strip_prefix(m)
                .filter(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
        };
        if let Some(rest) = marker("---") {
            out.push((start, std::mem::take(&mut cur)));
            start = n;
            if !rest.trim().is_empty() {
                cur.push_str(rest.trim_start_matches([' ', '\t']));
            } else {
                start = n.saturating_add(1);
            }
        } else if marker("...").is_some() {
            out.push((start, std::mem::take(&mut cur)));
            start = n.saturating_add(1);
        } else {
            cur.push_str(line);
        }
    }
    out.push((start, cur));
    for (_, body) in &mut out {
        if !body.ends_with('\n') && !body.is_empty() {
            body.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: issue 11 item 7 (objects not converted pass through unchanged)
    #[test]
    fn documents_are_cut_at_markers_only() {
        let text =
            "# lead\na: 1\n---\nb: |\n  --- not a marker\n  x\n--- # c\nc: 3\n...\n--- {d: 4}\n";
        let docs = split(text);
        let bodies: Vec<&str> = docs.iter().map(|(_, b)| b.as_str()).collect();
        assert_eq!(
            bodies,
            [
                "# lead\na: 1\n",
                "b: |\n  --- not a marker\n  x\n",
                "# c\nc: 3\n",
                "",
                "{d: 4}\n"
            ]
        );
        assert_eq!(docs[1].0, 4);
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.len(), 4);
        assert_eq!(parsed[1].value["b"].as_str(), Some("--- not a marker\nx\n"));
    }

    // reference: docs/threat-model.md rule 4 (cap depth and aliases before parsing)
    #[test]
    fn limits_apply_before_parsing_and_errors_name_the_document() {
        let e = parse("a: &x [1]\n---\nb: *x\n").unwrap_err();
        assert!(e[0].contains("alias"), "{e:?}");
        let e = parse("a: 1\n---\nb: [\n---\nc: {\n").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("document 2 (from line 3): "), "{e:?}");
        assert!(e[1].starts_with("document 3 (from line 5): "), "{e:?}");
    }
}
