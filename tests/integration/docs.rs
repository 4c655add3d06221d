//! The repository's documents stand alone: no Markdown or YAML file (nor a doc comment in src/)
//! points outside the repository, by a `../` that climbs above its root or by a path on some
//! developer's machine, and every relative Markdown link names a file that exists. Whoever
//! clones the repository has nothing else.

use std::path::{Component, Path, PathBuf};

use regex::Regex;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Build output, git's own files and generated fuzzing state: not documents of the project.
fn skipped(rel: &Path) -> bool {
    let s = rel.to_string_lossy();
    [
        "target",
        ".git",
        "tests/fuzz/target",
        "tests/fuzz/corpus",
        "tests/fuzz/work",
        "tests/fuzz/artifacts",
    ]
    .iter()
    .any(|p| s == *p || s.starts_with(&format!("{p}/")))
}

/// Every file under the root whose name ends in one of `exts`, as paths relative to the root.
fn files(exts: &[&str]) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            let rel = path.strip_prefix(root).expect("under the root").to_path_buf();
            if skipped(&rel) {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, exts, out);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
            {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &root(), exts, &mut out);
    out.sort();
    out
}

/// `target` (relative to the directory of the file `from`, both relative to the root) resolved
/// lexically, or `None` when it climbs above the root.
fn inside(from: &Path, target: &str) -> Option<PathBuf> {
    let mut parts: Vec<Component> = from.parent().unwrap_or(Path::new("")).components().collect();
    for c in Path::new(target).components() {
        match c {
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            other => parts.push(other),
        }
    }
    Some(parts.iter().collect())
}

/// Paths that only exist on someone's machine (the deploy files' /etc, /run and /var paths are
/// inside the images they describe, so those are fine).
fn machine_path() -> Regex {
    Regex::new(r"(?:^|[\s'(`=:\x22<\[])(/(?:work|home|root|Users)/[^\s'`)\x22>\]]*)").expect("regex")
}

/// A `../...` path (quoted, in a link, after `=` or `:`, or between spaces), or a bare `..` as a
/// YAML value (a compose build context).
fn parent_reference() -> Regex {
    Regex::new(r"(?:^|[\s'(`=:\x22<\[])(\.\./[^\s'`)\x22>\]#]*)|^\s*[\w-]+:\s+(\.\.)\s*$").expect("regex")
}

fn problems_in(rel: &Path, text: &str, problems: &mut Vec<String>) {
    for (n, line) in text.lines().enumerate() {
        let at = format!("{}:{}", rel.display(), n + 1);
        for m in machine_path().captures_iter(line) {
            problems.push(format!("{at}: names a path on a machine, {}", &m[1]));
        }
        for m in parent_reference().captures_iter(line) {
            let path = m.get(1).or(m.get(2)).map_or("", |p| p.as_str());
            if inside(rel, path).is_none() {
                problems.push(format!("{at}: {path} climbs out of the repository"));
            }
        }
    }
}

#[test]
fn no_document_points_outside_the_repository() {
    let mut problems = Vec::new();
    let mut documents = files(&["md", "yaml", "yml"]);
    assert!(
        documents.iter().any(|p| p == Path::new("README.md"))
            && documents.iter().any(|p| p == Path::new("docs/api.md")),
        "the walk finds the documents: {documents:?}"
    );
    // Doc comments are read as documents too (rustdoc, and people reading the source).
    documents.extend(files(&["rs"]).into_iter().filter(|p| p.starts_with("src")));
    for rel in &documents {
        let text = std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        let text = if rel.extension().is_some_and(|e| e == "rs") {
            text.lines()
                .map(|l| match l.trim_start().starts_with("//") {
                    true => l,
                    false => "",
                })
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            text
        };
        problems_in(rel, &text, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "documents must stand alone:\n{}",
        problems.join("\n")
    );
}

#[test]
fn relative_markdown_links_name_files_in_the_repository() {
    let link = Regex::new(r"\]\(([^)\s]+)(?:\s+\x22[^\x22]*\x22)?\)").expect("regex");
    let mut problems = Vec::new();
    for rel in files(&["md"]) {
        let text = std::fs::read_to_string(root().join(&rel)).expect("markdown");
        for (n, line) in text.lines().enumerate() {
            for m in link.captures_iter(line) {
                let target = m[1].split('#').next().unwrap_or_default();
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let at = format!("{}:{}", rel.display(), n + 1);
                match inside(&rel, target) {
                    _ if target.starts_with('/') => problems.push(format!("{at}: {target} is an absolute path")),
                    None => problems.push(format!("{at}: {target} climbs out of the repository")),
                    Some(path) if !root().join(&path).exists() => {
                        problems.push(format!("{at}: {target} does not exist"))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    assert!(problems.is_empty(), "broken links:\n{}", problems.join("\n"));
}

#[test]
fn the_checks_catch_what_they_are_for() {
    let mut problems = Vec::new();
    let machine = ["/wo", "rk/shared/contract/broker-api.md"].concat();
    let climbing = ["../", "../shared/contract.md"].concat();
    problems_in(
        Path::new("docs/x.md"),
        &format!(
            "see `{machine}`\n[c]({climbing})\nfine: [d](../README.md), `nbf`..`exp`\n/etc/consent-broker/broker.toml"
        ),
        &mut problems,
    );
    problems_in(Path::new("compose.yaml"), "build:\n  context: ..\n", &mut problems);
    problems_in(
        Path::new("deploy/compose.yaml"),
        "build:\n  context: ..\n",
        &mut problems,
    );
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].contains("docs/x.md:1") && problems[1].contains("docs/x.md:2"),
        "{problems:?}"
    );
    assert!(problems[2].contains("compose.yaml:2"), "{problems:?}");
    assert_eq!(inside(Path::new("deploy/compose.yaml"), ".."), Some(PathBuf::new()));
    assert_eq!(inside(Path::new("README.md"), "../x"), None);
}
