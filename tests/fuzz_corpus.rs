//! The fuzz targets' regression corpus, run as ordinary tests on the stable toolchain: every file
//! under `tests/fuzz/corpus/<target>/` (the minimised corpus `scripts/fuzz` keeps) and
//! `tests/fuzz/regressions/<target>/` (every input that ever failed) goes through the same body,
//! with the same assertions, as the libFuzzer binary `tests/fuzz/fuzz_targets/<target>.rs`.

#[path = "fuzz/src/lib.rs"]
mod targets;

use std::path::{Path, PathBuf};

/// Runs `target`'s body on every corpus and regression file; fails naming each file that panics.
fn run(target: &str) {
    let body = targets::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, body)| *body)
        .unwrap_or_else(|| panic!("no fuzz target {target}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let corpus = files(&root.join("corpus").join(target));
    // An empty or missing corpus would make this test pass without testing anything.
    assert!(!corpus.is_empty(), "tests/fuzz/corpus/{target}/ has no inputs");
    let inputs: Vec<PathBuf> = corpus
        .into_iter()
        .chain(files(&root.join("regressions").join(target)))
        .collect();

    let mut failed = Vec::new();
    for path in &inputs {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if std::panic::catch_unwind(|| body(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail (the panic message of each is above):\n{}",
        failed.len(),
        inputs.len(),
        failed.join("\n")
    );
}

/// The regular files in `dir`, sorted; none when it does not exist (regressions/ may be empty).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    out.sort();
    out
}

#[test]
fn explain() {
    run("explain");
}

#[test]
fn callback_params() {
    run("callback_params");
}

#[test]
fn return_url() {
    run("return_url");
}

#[test]
fn token_error_body() {
    run("token_error_body");
}

#[test]
fn config() {
    run("config");
}

/// Every target in the shared bodies has a test here, a libFuzzer binary and a corpus, so a new
/// target cannot be fuzzed without its corpus also running in CI.
#[test]
fn every_target_is_wired() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("tests/fuzz/Cargo.toml");
    let this_file = include_str!("fuzz_corpus.rs");
    for (name, _) in targets::TARGETS {
        assert!(
            this_file.contains(&format!("fn {name}() {{\n    run(\"{name}\");")),
            "no test runs the {name} corpus"
        );
        assert!(
            root.join("fuzz_targets").join(format!("{name}.rs")).is_file(),
            "no fuzz_targets/{name}.rs"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} is not a [[bin]] of tests/fuzz"
        );
        assert!(root.join("corpus").join(name).is_dir(), "no corpus/{name}/");
    }
}
