//! Docs that stay true: every design-document citation in the repository points at a page,
//! section and rule that exist in `docs/`, nothing cites the design notes' old home outside
//! the repository, the README's flags table says what `keyvault-agent --help` says, and the
//! README's runnable blocks run and print what it shows.
//! `make doc-check` runs this module alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::util::Harness;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The binary under test.
fn binary() -> String {
    std::env::var("KEYVAULT_AGENT_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_keyvault-agent").to_owned())
}

/// Text files of the repository that may cite a design document (build output, VCS data and
/// virtual environments skipped).
fn cited_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                let skip = ["target", "build", "node_modules", "__pycache__"];
                if (name.starts_with('.') && name != ".ci")
                    || skip.contains(&name.as_str())
                    || name.starts_with("venv")
                {
                    continue;
                }
                walk(&path, out);
            } else if ft.is_file() {
                let ext = path.extension().and_then(|x| x.to_str()).unwrap_or("");
                let text = ["rs", "py", "md", "sh", "yaml", "yml", "toml", "txt", "conf"];
                if text.contains(&ext)
                    || name == "Makefile"
                    || name.starts_with("Containerfile")
                    || name == "run"
                {
                    out.push(path);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo(), &mut out);
    out.sort();
    out
}

/// One page of `docs/`: its section ids (`1`, `1.2`, `A.7`), heading texts and rule numbers.
struct Page {
    sections: BTreeSet<String>,
    headings: Vec<String>,
    rules: BTreeSet<u32>,
}

fn page(text: &str) -> Page {
    let mut sections = BTreeSet::new();
    let mut headings = Vec::new();
    let mut rules = BTreeSet::new();
    let mut in_rules = false;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix('#') {
            let h = h.trim_start_matches('#').trim();
            headings.push(h.to_owned());
            in_rules = h == "Rules";
            let first = h.split_whitespace().next().unwrap_or("");
            let id = first.trim_end_matches(['.', ':']);
            if !id.is_empty()
                && id
                    .split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
                && id
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
                && id.len() <= 8
                && (id.contains('.')
                    || first.ends_with('.')
                    || id.chars().all(|c| c.is_ascii_digit()))
            {
                sections.insert(id.to_owned());
            }
        } else if in_rules
            && let Some((n, _)) = line.split_once(". ")
            && let Ok(n) = n.parse()
        {
            rules.insert(n);
        }
    }
    Page {
        sections,
        headings,
        rules,
    }
}

/// `§1.2`, `§A.7`, `§1–2`, `§2.1–§2.5` in `text`: the ids cited (each end of a range).
fn section_refs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('§') {
        // RFC sections (`RFC 6761 §6.4`) are not ours.
        let before = rest[..i].trim_end();
        let is_rfc = before
            .rsplit(' ')
            .nth(1)
            .is_some_and(|w| w.eq_ignore_ascii_case("rfc"));
        rest = &rest[i + '§'.len_utf8()..];
        let mut ids = vec![take_id(rest)];
        rest = &rest[ids[0].len()..];
        if let Some(r) = rest.strip_prefix('–').or_else(|| rest.strip_prefix('-')) {
            let r = r.strip_prefix('§').unwrap_or(r);
            let id = take_id(r);
            if !id.is_empty() {
                rest = &r[id.len()..];
                ids.push(id);
            }
        }
        if !is_rfc {
            out.extend(
                ids.into_iter()
                    .map(|id| id.trim_end_matches('.').to_owned())
                    .filter(|id| !id.is_empty()),
            );
        }
    }
    out
}

fn take_id(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect()
}

/// `rule 4`, `rules 1 and 4`, `rules 6 (x), 7 (y), 10`: the rule numbers cited.
fn rule_refs(text: &str) -> Vec<u32> {
    // Parentheticals hold prose (and numbers that are not rules).
    let mut flat = String::new();
    let mut depth = 0u32;
    for c in text.chars() {
        match c {
            '(' => depth = depth.saturating_add(1),
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => flat.push(c),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let words: Vec<&str> = flat.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        if *w != "rule" && *w != "rules" {
            continue;
        }
        for w in &words[i.saturating_add(1)..] {
            let n = w.trim_end_matches([',', ';', '.', ':']);
            if let Ok(n) = n.parse() {
                out.push(n);
                if w.ends_with([';', '.', ':']) {
                    break;
                }
            } else if *w != "and" && *w != "," {
                break;
            }
        }
    }
    out
}

/// Where a comment block or paragraph continues: the same comment marker, or (Markdown) a
/// non-blank line.
fn continues(prev: &str, line: &str) -> bool {
    let marker = |l: &str| {
        let t = l.trim_start();
        ["//!", "///", "//", "#"]
            .into_iter()
            .find(|m| t.starts_with(m))
            .map(str::to_owned)
    };
    match (marker(prev), marker(line)) {
        (Some(a), Some(b)) => a == b,
        (None, None) => !line.trim().is_empty() && !prev.trim().is_empty(),
        _ => false,
    }
}

// reference: docs/README.md (citations are repository paths, checked here)
#[test]
fn every_cited_design_document_and_section_exists() {
    let docs_dir = repo().join("docs");
    let mut pages = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(&docs_dir)
        .expect("docs/ exists")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".md") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            pages.insert(stem.to_owned(), page(&text));
        }
    }
    for required in [
        "architecture",
        "reference-provider",
        "atomic-writer",
        "protocol",
    ] {
        assert!(
            pages.contains_key(required),
            "docs/{required}.md is missing"
        );
    }
    let this_file = repo().join("agent/tests/docs.rs");
    let old_home = [
        concat!("../", "shared"),
        concat!("shared", "/docs"),
        concat!("shared", "/fixtures"),
    ];

    let mut problems = Vec::new();
    let mut citations = 0usize;
    for file in cited_files() {
        if file == this_file {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let rel = file
            .strip_prefix(repo())
            .unwrap_or(&file)
            .display()
            .to_string();
        let own_page = rel
            .strip_prefix("docs/")
            .and_then(|n| n.strip_suffix(".md"))
            .map(str::to_owned);
        let mut current: Option<String> = None;
        let mut prev = "";
        for (no, line) in text.lines().enumerate() {
            let at = format!("{rel}:{}", no.saturating_add(1));
            for old in old_home {
                if line.contains(old) {
                    problems.push(format!(
                        "{at}: cites `{old}`, which is not in the repository"
                    ));
                }
            }
            // Bare design-document names must be repository paths (`docs/protocol.md`).
            if own_page.is_none() {
                for name in pages.keys().filter(|n| n.as_str() != "README") {
                    let bare = format!("{name}.md");
                    let mut from = 0;
                    while let Some(i) = line[from..].find(&bare) {
                        let i = from.saturating_add(i);
                        let prefix = &line[..i];
                        if !prefix.ends_with("docs/") && !prefix.ends_with(['/', '-', '_']) {
                            problems.push(format!("{at}: cites `{bare}`; write `docs/{bare}`"));
                        }
                        from = i.saturating_add(bare.len());
                    }
                }
            }
            if !continues(prev, line) {
                current = own_page.clone();
            }
            prev = line;
            // Split the line at each `docs/NAME.md`: what follows one belongs to it.
            let mut segments: Vec<(Option<String>, &str)> = Vec::new();
            let mut rest = line;
            let mut owner = current.clone();
            while let Some(i) = rest.find("docs/") {
                let tail = &rest[i.saturating_add(5)..];
                let name: String = tail
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                if !tail[name.len()..].starts_with(".md") || name.is_empty() {
                    segments.push((owner.clone(), &rest[..i.saturating_add(5)]));
                    rest = tail;
                    continue;
                }
                segments.push((owner.clone(), &rest[..i]));
                citations = citations.saturating_add(1);
                if !pages.contains_key(&name) {
                    problems.push(format!("{at}: cites docs/{name}.md, which does not exist"));
                }
                owner = Some(name.clone());
                rest = &tail[name.len().saturating_add(3)..];
                // `docs/threat-model.md "How to prove it"`: a heading by name.
                let quoted = rest.trim_start_matches(['`', ')', ' ']);
                if let Some(q) = quoted.strip_prefix('"')
                    && let Some((title, _)) = q.split_once('"')
                    && let Some(p) = pages.get(&name)
                    && !p.headings.iter().any(|h| h.contains(title))
                {
                    problems.push(format!("{at}: docs/{name}.md has no heading \"{title}\""));
                }
            }
            segments.push((owner.clone(), rest));
            current = owner;
            for (owner, text) in segments {
                let Some(name) = owner else { continue };
                let Some(p) = pages.get(&name) else { continue };
                for id in section_refs(text) {
                    if !p.sections.contains(&id) {
                        problems.push(format!("{at}: docs/{name}.md has no section §{id}"));
                    }
                }
                if !p.rules.is_empty() {
                    for n in rule_refs(text) {
                        if !p.rules.contains(&n) {
                            problems.push(format!("{at}: docs/{name}.md has no rule {n}"));
                        }
                    }
                }
            }
        }
    }
    assert!(
        citations > 100,
        "only {citations} citations found: is the walk skipping the sources?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_reads_sections_ranges_and_rules() {
    assert_eq!(
        section_refs("§1.2 (x), §A.7 and §1–2"),
        ["1.2", "A.7", "1", "2"]
    );
    assert_eq!(section_refs("§2.1–§2.5, RFC 6761 §6.4."), ["2.1", "2.5"]);
    assert_eq!(
        rule_refs("rules 6 (bounded listeners), 7 (signals), 10 (exit codes)."),
        [6, 7, 10]
    );
    assert_eq!(
        rule_refs("rule 4 (depth; 64k levels took 38.6 s); issue 9"),
        [4]
    );
    assert_eq!(rule_refs("rules 1 and 4 (config)"), [1, 4]);
    let p = page(
        "# T\n## 1. One\n### 1.2 Two\n## A. Upstream\n### A.7 Tests\n## Rules\n1. **a**\n10. **b**\n",
    );
    assert!(
        ["1", "1.2", "A", "A.7"]
            .iter()
            .all(|s| p.sections.contains(*s))
    );
    assert!(!p.sections.contains("T"));
    assert_eq!(p.rules.iter().copied().collect::<Vec<_>>(), [1, 10]);
}

/// `--help`: for each long flag, (env var, default) as clap prints them.
/// The flags of `exec` are listed in the same table (`--config` is the same flag).
fn help_flags() -> std::collections::BTreeMap<String, (String, Option<String>, String)> {
    let mut flags = help_flags_of(&["--help"]);
    for (flag, v) in help_flags_of(&["exec", "--help"]) {
        flags.entry(flag).or_insert(v);
    }
    flags
}

fn help_flags_of(
    args: &[&str],
) -> std::collections::BTreeMap<String, (String, Option<String>, String)> {
    let out = std::process::Command::new(binary())
        .args(args)
        .env_clear()
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flags = std::collections::BTreeMap::new();
    let mut cur: Option<(String, String, Option<String>, String)> = None;
    for line in help.lines() {
        let t = line.trim();
        if line.starts_with("      --") || line.starts_with("  -") {
            if let Some((f, e, d, v)) = cur.take() {
                flags.insert(f, (e, d, v));
            }
            let spec = t.split(", ").last().unwrap_or(t);
            let (flag, value) = spec.split_once(' ').unwrap_or((spec, ""));
            let value = value
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned();
            cur = Some((flag.to_owned(), String::new(), None, value));
        } else if let Some((_, env, default, _)) = cur.as_mut() {
            if let Some(e) = t.strip_prefix("[env: ") {
                *env = e.split('=').next().unwrap_or("").to_owned();
            } else if let Some(d) = t.strip_prefix("[default: ") {
                *default = Some(d.trim_end_matches(']').to_owned());
            }
        }
    }
    if let Some((f, e, d, v)) = cur.take() {
        flags.insert(f, (e, d, v));
    }
    flags.remove("--help");
    flags.remove("--version");
    flags
}

#[test]
fn the_readme_flags_table_says_what_help_says() {
    let help = help_flags();
    assert!(help.len() > 20, "{help:?}");
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("### Command line and environment")
        .nth(1)
        .expect("README has a Command line and environment section");
    let section = section.split("\n#").next().unwrap();
    let backticked = |cell: &str| -> Option<String> {
        let (_, rest) = cell.split_once('`')?;
        Some(rest.split_once('`')?.0.replace("\\|", "|"))
    };
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `--")) {
        let row = row.replace("\\|", "\u{1}");
        let cells: Vec<String> = row
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().replace('\u{1}', "\\|"))
            .collect();
        let spec = backticked(&cells[0]).unwrap_or_default();
        let (flag, value) = spec.split_once(' ').unwrap_or((spec.as_str(), ""));
        seen.insert(flag.to_owned());
        let Some((env, default, value_name)) = help.get(flag) else {
            problems.push(format!(
                "README documents {flag}, which --help does not have"
            ));
            continue;
        };
        if value != value_name {
            problems.push(format!(
                "{flag}: README says `{value}`, --help says <{value_name}>"
            ));
        }
        if backticked(&cells[1]).as_deref() != Some(env.as_str()) {
            problems.push(format!("{flag}: README env `{}`, --help {env}", cells[1]));
        }
        let documented = backticked(&cells[2]);
        match (default, documented) {
            (Some(d), Some(r)) if *d == r => {}
            (None, None) if ["—", "off", "required"].contains(&cells[2].as_str()) => {}
            (d, r) => problems.push(format!("{flag}: README default {r:?}, --help {d:?}")),
        }
    }
    for flag in help.keys().filter(|f| !seen.contains(*f)) {
        problems.push(format!(
            "{flag} is in --help but not in the README flags table"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// The troubleshooting table quotes what the agent prints for an untrusted server certificate.
#[tokio::test]
async fn the_readme_quotes_the_tls_error_the_agent_prints() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## Troubleshooting")
        .nth(1)
        .expect("README has a Troubleshooting section");
    let row = section
        .lines()
        .find(|l| l.starts_with("| ") && l.contains("--ca-file") && l.contains("certificate"))
        .expect("a troubleshooting row for an untrusted certificate");
    let quoted: Vec<&str> = row
        .split('|')
        .nth(1)
        .unwrap()
        .split('`')
        .skip(1)
        .step_by(2)
        .collect();
    assert!(!quoted.is_empty(), "{row}");

    let h = Harness::start().await;
    let spc = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let mut s = h.settings(&spc);
    s.ca_files.clear();
    let e = keyvault_agent::run_once(s, Harness::env(&h.wi_env()))
        .await
        .unwrap_err();
    let m = e.to_string();
    for q in quoted {
        assert!(m.contains(q), "README quotes `{q}`; the agent prints: {m}");
    }
}

/// A fenced block of the README: its info string (after the backticks), first line number and text.
struct Fence {
    info: String,
    line: usize,
    body: String,
}

fn fences(text: &str) -> Vec<Fence> {
    let mut out = Vec::new();
    let mut open: Option<Fence> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Fence {
                    info: info.trim().to_owned(),
                    line: i + 1,
                    body: String::new(),
                })
            }
            (Some(_), Some("")) => out.extend(open.take()),
            (Some(f), _) => {
                f.body.push_str(line);
                f.body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// Is every line of `expected` (blank lines and lines with `...` skipped) a line of `got`, in
/// order? Returns the first line that is not.
fn first_missing<'a>(expected: &'a str, got: &str) -> Option<&'a str> {
    let got: Vec<&str> = got.lines().map(str::trim_end).collect();
    let mut at = 0;
    for want in expected.lines().map(str::trim_end) {
        if want.is_empty() || want.contains("...") {
            continue;
        }
        match got[at..].iter().position(|g| *g == want) {
            Some(p) => at += p + 1,
            None => return Some(want),
        }
    }
    None
}

// The README's runnable shell blocks (```sh runnable) run as a reader would paste them, from
// the repository root with the agent on PATH, outside any pod (no identity variables); each
// must exit 0, and an ```... output block right after one lists lines its output must show, in
// order. A block marked `file=PATH` must be that file, byte for byte.
// reference: issue 12 item 5 (docs that are true: runnable README blocks)
#[test]
fn the_readme_runnable_blocks_run_and_print_what_the_readme_shows() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = fences(&readme);
    let bin_dir = Path::new(&binary()).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut problems = Vec::new();
    let mut ran = 0;
    for (i, b) in blocks.iter().enumerate() {
        if let Some(file) = b
            .info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("file="))
        {
            let on_disk = std::fs::read_to_string(repo().join(file)).unwrap_or_default();
            if on_disk != b.body {
                problems.push(format!("README:{}: the block differs from {file}", b.line));
            }
        }
        if !b.info.split_whitespace().eq(["sh", "runnable"]) {
            continue;
        }
        ran += 1;
        let tmp = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c"])
            .arg(format!("exec 2>&1\n{}", b.body))
            .current_dir(repo())
            .env_clear()
            .env("PATH", &path)
            .env("HOME", tmp.path())
            .env("TMPDIR", tmp.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            problems.push(format!("README:{}: exited {}:\n{text}", b.line, out.status));
            continue;
        }
        let Some(expected) = blocks.get(i + 1).filter(|n| n.info.ends_with(" output")) else {
            continue;
        };
        if let Some(missing) = first_missing(&expected.body, &text) {
            problems.push(format!(
                "README:{}: the output shown at line {} has `{missing}` (in that order), the command printed:\n{text}",
                b.line, expected.line
            ));
        }
    }
    assert!(
        ran >= 2,
        "the README has {ran} runnable blocks; the check would prove nothing"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_output_matcher_wants_every_line_in_order() {
    assert_eq!(first_missing("a\n...\nc\n", "a\nb\nc\n"), None);
    assert_eq!(first_missing("c\na\n", "a\nb\nc\n"), Some("a"));
    assert_eq!(first_missing("a\nz\n", "a\nb\n"), Some("z"));
    let f = fences("x\n```sh runnable\necho hi\n```\n\n```text output\nhi\n```\n");
    assert_eq!(f.len(), 2);
    assert_eq!(
        (f[0].info.as_str(), f[0].line, f[0].body.as_str()),
        ("sh runnable", 2, "echo hi\n")
    );
    assert_eq!(f[1].info, "text output");
}
