//! Dependencies point one way (issue 13): the leaf modules (`values`: sizes, durations, patterns;
//! `config_error`: located errors) use nothing of the crate; the collectors own their config
//! section types and use the leaves, never `config`; `config` assembles the sections. So there is
//! no import cycle between `config` and the collectors.
//!
//! This reads the sources, not the compiled crate: every `crate::…` path (in `use` lines and
//! inline), grouped `crate::{…}` imports and `super::` chains that climb to the crate root. Unit
//! tests (`#[cfg(test)]` modules) are left out: a collector's test may load a whole config, as an
//! integration test does.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use regex::Regex;

/// Modules that must use nothing of the crate.
const LEAVES: &[&str] = &["values", "config_error"];
/// Top-level modules a collector must not use: the config that assembles the collectors' sections,
/// and the scrape and the HTTP server that run them.
const ABOVE_COLLECTORS: &[&str] = &["config", "scrape", "http"];

/// The module path of a source file: `src/collector/services/plan.rs` → `collector::services::plan`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut path: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        path.pop();
    }
    path
}

/// The code of a file without its unit tests: everything before the first `#[cfg(test)]`.
fn without_tests(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |at| &text[..at])
}

/// The crate's top-level modules that `code`, the code of the module at `module`, refers to.
fn top_level_uses(module: &[String], code: &str) -> BTreeSet<String> {
    let code: String = code
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut used = BTreeSet::new();
    let single = Regex::new(r"(?:^|[^$\w])crate\s*::\s*(\w+)").unwrap();
    used.extend(single.captures_iter(&code).map(|c| c[1].to_string()));
    let grouped = Regex::new(r"(?:^|[^$\w])crate\s*::\s*\{([^}]*)\}").unwrap();
    let first_word = Regex::new(r"^\s*(\w+)").unwrap();
    for group in grouped.captures_iter(&code) {
        for item in group[1].split(',') {
            used.extend(first_word.captures(item).map(|c| c[1].to_string()));
        }
    }
    // `super::super::x` climbs one module per `super`; it reaches the root after as many steps
    // as the module is deep (a file `a/b.rs` is module `a::b`: two steps).
    let supers = Regex::new(r"(?:^|[^\w])((?:super\s*::\s*)+)(\w+)").unwrap();
    for chain in supers.captures_iter(&code) {
        let steps = chain[1].matches("super").count();
        if steps >= module.len() {
            used.insert(chain[2].to_string());
        }
    }
    used.remove("self");
    used
}

/// What breaks the layering in one file: `(module, used module, rule)`.
fn violations(module: &[String], code: &str) -> Vec<String> {
    let used = top_level_uses(module, without_tests(code));
    let name = module.join("::");
    let mut found = Vec::new();
    let top = module.first().map(String::as_str).unwrap_or("");
    if LEAVES.contains(&top) {
        for other in used.iter().filter(|u| u.as_str() != top) {
            found.push(format!(
                "{name} is a leaf but uses crate::{other}: a leaf uses nothing of the crate"
            ));
        }
    }
    if top == "collector" {
        for above in used
            .iter()
            .filter(|u| ABOVE_COLLECTORS.contains(&u.as_str()))
        {
            found.push(format!(
                "{name} uses crate::{above}: collectors sit below config, scrape and http (a \
                 collector owns its config section type and uses the leaves; config assembles \
                 the sections; the server's own counters live in collector::exporter)"
            ));
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module(path: &str) -> Vec<String> {
    path.split("::").map(str::to_string).collect()
}

#[test]
fn dependencies_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for file in &files {
        let module = module_path(&src, file);
        seen.insert(module.join("::"));
        let text = std::fs::read_to_string(file).unwrap();
        found.extend(violations(&module, &text));
    }
    // The rules name modules that must exist, or they check nothing.
    for expected in LEAVES.iter().chain(ABOVE_COLLECTORS) {
        assert!(
            seen.contains(*expected),
            "no src/{expected}.rs: update tests/layers.rs"
        );
    }
    assert!(seen.iter().any(|m| m.starts_with("collector::")));
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_each_kind_of_violation() {
    let storage = module("collector::storage");
    for code in [
        "use crate::config::ConfigDuration;\n",
        "use crate::http::connections;\n",
        "use crate::{config::Config, metrics::MetricSet};\n",
        "use crate::{\n    metrics,\n    config,\n};\n",
        "fn f(c: &mut crate::config::Config) {}\n",
        "use super::super::config::Config;\n",
    ] {
        assert_eq!(violations(&storage, code).len(), 1, "{code}");
    }
    let plan = module("collector::services::plan");
    assert_eq!(
        violations(&plan, "use super::super::super::config;\n").len(),
        1
    );
    assert!(violations(&plan, "use super::super::metrics;\n").is_empty());
    for code in [
        "use crate::collector::nginx::NginxConfig;\n",
        "use crate::logging::Condition;\n",
        "use super::Budget;\n",
    ] {
        assert_eq!(violations(&module("values"), code).len(), 1, "{code}");
    }
    // Fine: the leaves from a collector, its siblings, `$crate` in a macro, tests, comments.
    for code in [
        "use crate::values::ConfigDuration;\nuse crate::config_error::{at, Nonsense};\n",
        "use crate::collector::services::Services;\n",
        "$crate::logging::throttled(x)\n",
        "// crate::config is assembled from these\n",
        "#[cfg(test)]\nmod tests {\n    use crate::config::load_str;\n}\n",
    ] {
        assert!(violations(&storage, code).is_empty(), "{code}");
    }
    assert!(violations(&module("values"), "use std::time::Duration;\n").is_empty());
}
