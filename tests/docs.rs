//! The manual's links: every relative link of every Markdown file of the
//! project (the README, docs/, infra/) names a file that exists and, when it
//! has one, a heading of that file. Links to other sites are not followed
//! (CI is offline).

// A failed unwrap is a failed test with its location; helpers outside
// #[test] functions are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// The project's Markdown files, outside `target/` and hidden folders.
fn markdown_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            markdown_files(&path, found);
        } else if name.ends_with(".md") {
            found.push(path);
        }
    }
}

/// `text` without its fenced code blocks (links in code are not links).
fn prose(text: &str) -> String {
    let mut in_code = false;
    let mut kept = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        kept.push(if in_code { "" } else { line });
    }
    kept.join("\n")
}

/// GitHub's anchor for a heading: lower case, punctuation dropped (but `-`
/// and `_`), spaces turned into `-`; repeated headings get `-1`, `-2`, ...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose(text).lines() {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let base: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The targets of the inline links `[text](target)` of `text`.
fn link_targets(text: &str) -> Vec<String> {
    let text = prose(text);
    let mut targets = Vec::new();
    for (start, _) in text.match_indices("](") {
        let rest = &text[start + 2..];
        if let Some(end) = rest.find(')') {
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            targets.push(target.to_owned());
        }
    }
    targets
}

/// Every broken relative link in `files`: `(file, target, why)`.
fn broken_links(root: &Path, files: &[PathBuf]) -> Vec<(String, String, String)> {
    let mut broken = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let linked = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !linked.exists() {
                broken.push((shown.clone(), target.clone(), "no such file".to_owned()));
                continue;
            }
            if !anchor.is_empty() && linked.extension().is_some_and(|ext| ext == "md") {
                let headings = anchors(&std::fs::read_to_string(&linked).unwrap());
                if !headings.contains(anchor) {
                    broken.push((shown.clone(), target.clone(), "no such heading".to_owned()));
                }
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_of_the_manual_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    markdown_files(root, &mut files);
    assert!(files.len() >= 8, "found the manual: {files:?}");
    let links: usize = files
        .iter()
        .map(|file| link_targets(&std::fs::read_to_string(file).unwrap()).len())
        .sum();
    assert!(links > 50, "found only {links} links");
    assert_eq!(broken_links(root, &files), Vec::new());
}

#[test]
fn the_link_check_catches_a_missing_file_and_a_missing_heading() {
    let dir = std::env::temp_dir().join(format!("tenantry-links-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("PAGE.md");
    std::fs::write(
        &page,
        "# A page\n\n## The part: one, two\n\n## The part: one, two\n",
    )
    .unwrap();
    let index = dir.join("INDEX.md");
    std::fs::write(
        &index,
        "[ok](PAGE.md) [ok](PAGE.md#the-part-one-two) [ok](PAGE.md#the-part-one-two-1) \
         [ok](https://example.com/nowhere) [ok](#index)\n# Index\n\
         [bad](GONE.md) [bad](PAGE.md#no-such-part)\n```\n[code](NOT-A-LINK.md)\n```\n",
    )
    .unwrap();
    let broken = broken_links(&dir, &[index]);
    std::fs::remove_dir_all(&dir).unwrap();
    let targets: Vec<&str> = broken
        .iter()
        .map(|(_, target, _)| target.as_str())
        .collect();
    assert_eq!(targets, ["GONE.md", "PAGE.md#no-such-part"], "{broken:?}");
}
