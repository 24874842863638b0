//! Dependencies point one way (issue 13): the leaf modules (`values`: sizes, durations, patterns;
//! `config_error`: located errors) use nothing of the crate; the collectors own their config
//! section types and use the leaves, never `config`; `config` assembles the sections. So there is
//! no import cycle between `config` and the collectors.
//!
//! This reads the sources, not the compiled crate: every `crate::…` path (in `use` lines and
//! inline), grouped `crate::{…}` imports and `super::` chains that climb to the crate root. Unit
//! tests (`#[cfg(test)]` modules) are left out: a collector's test may load a whole config, as an
//! integration test does.
//!
//! Two more checks keep the map of the code honest: no import cycle between the collectors'
//! modules (`collector::mysql` may use `collector::target`, so `target` must not use `mysql`), and
//! every source file named in docs/architecture.md's module map.

use std::collections::{BTreeMap, BTreeSet};
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

/// The code of a file without its `//` comments, joined into one text.
fn without_comments(code: &str) -> String {
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The sibling modules of `collector` that `code`, the code of the module at `module` (somewhere
/// under `collector::NAME`), refers to: `crate::collector::x`, `crate::collector::{x, y}`, and
/// `super::` chains that climb to `collector` (`super::x`, `super::{x, y::Z}`). Names that are not
/// in `siblings` (an item of `collector` itself, such as `Work`) are left out, as is the module's
/// own name.
fn collector_uses(module: &[String], code: &str, siblings: &BTreeSet<String>) -> BTreeSet<String> {
    let code = without_comments(code);
    let first_word = Regex::new(r"^\s*(\w+)").unwrap();
    let mut used = BTreeSet::new();
    let add_group = |group: &str, used: &mut BTreeSet<String>| {
        for item in group.split(',') {
            used.extend(first_word.captures(item).map(|c| c[1].to_string()));
        }
    };
    let absolute =
        Regex::new(r"(?:^|[^$\w])crate\s*::\s*collector\s*::\s*(?:\{([^}]*)\}|(\w+))").unwrap();
    for path in absolute.captures_iter(&code) {
        match (path.get(1), path.get(2)) {
            (Some(group), _) => add_group(group.as_str(), &mut used),
            (_, Some(name)) => {
                used.insert(name.as_str().to_string());
            }
            _ => {}
        }
    }
    // From `collector::a` one `super` reaches `collector`; from `collector::a::b`, two.
    let climb = module.len() - 1;
    let relative = Regex::new(r"(?:^|[^\w])((?:super\s*::\s*)+)(?:\{([^}]*)\}|(\w+))").unwrap();
    for path in relative.captures_iter(&code) {
        if path[1].matches("super").count() != climb {
            continue;
        }
        match (path.get(2), path.get(3)) {
            (Some(group), _) => add_group(group.as_str(), &mut used),
            (_, Some(name)) => {
                used.insert(name.as_str().to_string());
            }
            _ => {}
        }
    }
    used.retain(|u| siblings.contains(u) && Some(u) != module.get(1));
    used
}

/// Every cycle in `edges` (module → the modules it uses), each as `a → b → … → a`; a cycle is
/// reported once, from its smallest module.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn walk(
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        found: &mut Vec<String>,
    ) {
        let last = path.last().unwrap().clone();
        for next in edges.get(&last).into_iter().flatten() {
            if *next == path[0] {
                found.push(format!("{} → {}", path.join(" → "), path[0]));
            } else if *next > path[0] && !path.contains(next) {
                path.push(next.clone());
                walk(edges, path, found);
                path.pop();
            }
        }
    }
    let mut found = Vec::new();
    for start in edges.keys() {
        walk(edges, &mut vec![start.clone()], &mut found);
    }
    found
}

/// The collector modules' uses of each other: `collector::services::plan`'s count as
/// `services`'s. `collector` itself (mod.rs, which registers them all) is no node.
fn collector_graph(files: &[(Vec<String>, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let siblings: BTreeSet<String> = files
        .iter()
        .filter(|(m, _)| m.len() >= 2 && m[0] == "collector")
        .map(|(m, _)| m[1].clone())
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in files {
        if module.len() < 2 || module[0] != "collector" {
            continue;
        }
        let used = collector_uses(module, without_tests(code), &siblings);
        edges.entry(module[1].clone()).or_default().extend(used);
    }
    edges
}

fn source_files() -> Vec<(Vec<String>, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            (module_path(&src, file), text)
        })
        .collect()
}

#[test]
fn no_cycle_between_the_collectors_modules() {
    let edges = collector_graph(&source_files());
    // The check sees the edges it exists for, or it checks nothing.
    assert!(
        edges["mysql"].contains("target"),
        "no edge mysql → target: update tests/layers.rs"
    );
    let found = cycles(&edges);
    assert!(
        found.is_empty(),
        "import cycles between collector modules (move the code both need into one of them, \
         or have collector/mod.rs pass it in):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_cycle_check_sees_each_way_of_naming_a_sibling() {
    let file = |path: &str, code: &str| (module(path), code.to_string());
    let siblings: BTreeSet<String> = ["mysql", "target", "redis", "services"]
        .map(String::from)
        .into();
    let target = module("collector::target");
    for code in [
        "use super::mysql::Mysql;\n",
        "use super::{mysql::Mysql, Work};\n",
        "use crate::collector::mysql;\n",
        "use crate::collector::{mysql::Mysql, metrics};\n",
        "fn f() -> crate::collector::mysql::Mysql { todo!() }\n",
    ] {
        assert_eq!(
            collector_uses(&target, code, &siblings),
            BTreeSet::from(["mysql".to_string()]),
            "{code}"
        );
    }
    let rounds = module("collector::target::rounds");
    assert_eq!(
        collector_uses(&rounds, "use super::super::redis::Session;\n", &siblings),
        BTreeSet::from(["redis".to_string()])
    );
    // Fine: its own children, items of `collector`, comments.
    for code in [
        "use super::Work;\n",
        "use super::target::Kind;\n",
        "// super::mysql::Mysql\n",
    ] {
        assert!(
            collector_uses(&target, code, &siblings).is_empty(),
            "{code}"
        );
    }
    assert!(collector_uses(&rounds, "use super::Target;\n", &siblings).is_empty());

    let cycle = [
        file("collector::mysql", "use super::target::Rows;\n"),
        file("collector::target", "fn f() { super::redis::x() }\n"),
        file(
            "collector::target::rounds",
            "use super::super::mysql::Session;\n",
        ),
        file("collector::redis", "use crate::collector::target::Rows;\n"),
        file("collector", "use mysql::Mysql;\nuse target::Kind;\n"),
    ];
    let found = cycles(&collector_graph(&cycle));
    assert_eq!(
        found,
        [
            "mysql → target → mysql".to_string(),
            "redis → target → redis".to_string()
        ]
    );
    let tree = [
        file("collector::mysql", "use super::target::Rows;\n"),
        file("collector::target", "use super::Work;\n"),
        file("collector::target::rounds", "use super::Target;\n"),
        file("collector", "use mysql::Mysql;\nuse target::Kind;\n"),
    ];
    assert!(cycles(&collector_graph(&tree)).is_empty());
}

/// The source files docs/architecture.md's module map names. In a row, the first file is named
/// from the repository's root (`src/collector/services.rs`) and the others either so or from the
/// first one's directory (`services/plan.rs`, `postgres.rs`).
fn files_in_module_map(doc: &str) -> BTreeSet<String> {
    let ticked = Regex::new(r"`([^`]+\.rs)`").unwrap();
    let mut named = BTreeSet::new();
    for row in doc.lines().filter(|l| l.starts_with("| `src/")) {
        let first_cell = row.split('|').nth(1).unwrap_or("");
        let names: Vec<&str> = ticked
            .captures_iter(first_cell)
            .map(|c| c.get(1).unwrap().as_str())
            .collect();
        let base = Path::new(names[0]).parent().unwrap();
        for name in names {
            let path = match name.starts_with("src/") {
                true => PathBuf::from(name),
                false => base.join(name),
            };
            named.insert(path.to_string_lossy().into_owned());
        }
    }
    named
}

#[test]
fn every_source_file_is_in_the_module_map() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let present: BTreeSet<String> = files
        .iter()
        .map(|f| f.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let named = files_in_module_map(&doc);
    let missing: Vec<&String> = present.difference(&named).collect();
    let stale: Vec<&String> = named.difference(&present).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/architecture.md's module map is out of date: add a row (or a name to a row) for \
         {missing:?}; remove {stale:?}, which no longer exist"
    );
}

#[test]
fn the_module_map_check_reads_rows_as_written() {
    let doc = "| file | owns |\n|---|---|\n\
               | `src/collector/mysql.rs`, `mysql/figures.rs`, `postgres.rs` | x |\n\
               | `src/values.rs`, `src/config_error.rs` | `src/not_a_row.rs` |\n\
               not a row `src/main.rs`\n";
    let named: Vec<String> = files_in_module_map(doc).into_iter().collect();
    assert_eq!(
        named,
        [
            "src/collector/mysql.rs",
            "src/collector/mysql/figures.rs",
            "src/collector/postgres.rs",
            "src/config_error.rs",
            "src/values.rs",
        ]
    );
}
