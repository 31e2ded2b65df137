//! The module layout ARCHITECTURE.md describes, checked from the source itself.
//!
//! Reads every file under `src/`, finds which top-level modules each one names
//! (`use crate::x`, `crate::x::…`), and checks that
//! - dependencies only point down the layers: leaves ← stages ← connection ← wiring;
//! - there are no cycles between top-level modules, inside a layer either;
//! - the crate root stays a thin facade and no file grows past what one person can hold;
//! - ARCHITECTURE.md's "Where the tests live", the one index of the tests, names every
//!   test and fixture file;
//! - the docs speak of the repo itself: no tracker numbers (`issue 12`, `#12`).
//!
//! A new top-level module must be given a layer here (the test says so), which is the
//! moment to decide where it belongs.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Every top-level module and its layer, lowest first.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaf",
        &[
            "identity", "error", "lane", "body", "cache", "reload", "metrics", "yaml", "logging",
            "audit",
        ],
    ),
    (
        "stage",
        &[
            "paths",
            "routes",
            "apiserver",
            "authn",
            "authz",
            "tls",
            "upstream",
        ],
    ),
    ("connection", &["server", "guard", "admin", "auth_endpoint"]),
    ("wiring", &["config", "app", "doctor"]),
];

/// The crate root is a facade: module list, docs, re-exports.
const MAX_LIB_LINES: usize = 80;
/// Past this a file is split along its concerns.
const MAX_FILE_LINES: usize = 600;

fn src() -> PathBuf {
    repo().join("src")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/tls/pem.rs` → `tls`), or `None` for
/// the crate root and the binary.
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src()).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The text without `//` comments (doc comments included), so prose cannot count.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names of top-level modules a file refers to: `crate::x` anywhere, and the first
/// segment of each item in `use crate::{x::…, y, …}`.
fn references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // A grouped import: split its top level on commas.
            let mut depth = 0;
            let mut start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.insert(ident(group[start..j].trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(ident(group[start..j].trim()));
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|name| !name.is_empty() && name != "self");
    found
}

/// Top-level module → the top-level modules it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let text = fs::read_to_string(&file).unwrap();
        let mut uses = references(&code(&text));
        uses.remove(&module);
        graph.entry(module).or_default().extend(uses);
    }
    graph
}

fn layer(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

#[test]
fn every_module_has_a_layer() {
    let missing: Vec<_> = graph().into_keys().filter(|m| layer(m).is_none()).collect();
    assert!(
        missing.is_empty(),
        "give these modules a layer in tests/integration/layout.rs (and ARCHITECTURE.md): {missing:?}"
    );
}

#[test]
fn dependencies_point_down_the_layers() {
    let mut upward = Vec::new();
    for (module, uses) in graph() {
        let Some(from) = layer(&module) else { continue };
        for used in uses {
            match layer(&used) {
                Some(to) if to <= from => {}
                Some(to) => upward.push(format!(
                    "{module} ({}) imports {used} ({})",
                    LAYERS[from].0, LAYERS[to].0
                )),
                None => upward.push(format!("{module} imports unknown module {used}")),
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layering:\n{upward:#?}"
    );
}

#[test]
fn no_cycles_between_modules() {
    let graph = graph();
    // Depth-first search from every module; a back edge closes a cycle.
    fn visit<'a>(
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        module: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(start) = path.iter().position(|m| *m == module) {
            let mut cycle = path[start..].to_vec();
            cycle.push(module);
            cycles.push(cycle.join(" → "));
            return;
        }
        if !done.insert(module) {
            return;
        }
        path.push(module);
        for used in graph.get(module).into_iter().flatten() {
            visit(graph, used, path, done, cycles);
        }
        path.pop();
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(&graph, module, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "module cycles:\n{cycles:#?}");
}

#[test]
fn the_crate_root_is_thin_and_files_stay_small() {
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    let lines = lib.lines().count();
    assert!(
        lines < MAX_LIB_LINES,
        "src/lib.rs has {lines} lines; the wiring belongs in app.rs"
    );
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let large: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let lines = fs::read_to_string(file).unwrap().lines().count();
            (lines > MAX_FILE_LINES).then(|| format!("{} ({lines} lines)", file.display()))
        })
        .collect();
    assert!(
        large.is_empty(),
        "split these along their concerns: {large:?}"
    );
}

#[test]
fn the_reader_finds_references() {
    let code =
        code("use crate::{a::X, b, c::{d, e}};\n// crate::commented\nlet x = crate::f::g();");
    let found: Vec<_> = references(&code).into_iter().collect();
    assert_eq!(found, ["a", "b", "c", "f"]);
}

// === the index of the tests ===

/// The directories whose `.rs` files are tests or fixtures, and the files in them that
/// are only a target's root or a module list (named by their directory instead).
const TEST_DIRS: &[(&str, &[&str])] = &[
    ("tests/integration", &["main.rs"]),
    ("tests/support/src", &["lib.rs"]),
    ("e2e/cluster", &["support.rs"]),
    ("e2e/cluster/node", &[]),
    ("benches", &[]),
];

/// The "Where the tests live" section of ARCHITECTURE.md.
fn test_index() -> String {
    let text = fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
    let start = text
        .find("## Where the tests live")
        .expect("ARCHITECTURE.md has a section \"Where the tests live\"");
    let section = &text[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    section[..end].to_owned()
}

#[test]
fn the_test_index_names_every_test_file() {
    let index = test_index();
    let mut missing = Vec::new();
    for (dir, roots) in TEST_DIRS {
        assert!(index.contains(dir), "the index never names {dir}/");
        for entry in fs::read_dir(repo().join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let named =
                index.contains(&format!("`{name}`")) || index.contains(&format!("/{name}`"));
            if name.ends_with(".rs") && !roots.contains(&name.as_str()) && !named {
                missing.push(format!("{dir}/{name}"));
            }
        }
    }
    for root in ["tests/integration/main.rs", "e2e/cluster.rs"] {
        if !index.contains(root) {
            missing.push(root.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "name these in ARCHITECTURE.md, \"Where the tests live\" (the index of the tests): {missing:?}"
    );
}

// === tracker numbers ===

/// Where a tracker reference starts in `line`: `issue 12`, `issue-12`, `issues #12`, or
/// a `#12` that does not follow a letter or digit (`PKCS#8` is no reference).
fn tracker_reference(line: &str) -> Option<usize> {
    let lower = line.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let digit_at = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    for (i, _) in lower.match_indices("issue") {
        let mut j = i + "issue".len();
        if bytes.get(j) == Some(&b's') {
            j += 1;
        }
        if matches!(bytes.get(j), Some(b' ' | b'-')) {
            j += 1;
        }
        if bytes.get(j) == Some(&b'#') {
            j += 1;
        }
        if digit_at(j) && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            return Some(i);
        }
    }
    lower
        .match_indices('#')
        .map(|(i, _)| i)
        .find(|&i| digit_at(i + 1) && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()))
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

#[test]
fn the_docs_name_no_tracker_numbers() {
    let mut files = Vec::new();
    markdown_files(&repo(), &mut files);
    let found: Vec<String> = files
        .iter()
        .flat_map(|file| {
            let text = fs::read_to_string(file).unwrap();
            let relative = file.strip_prefix(repo()).unwrap().display().to_string();
            text.lines()
                .enumerate()
                .filter(|(_, line)| tracker_reference(line).is_some())
                .map(|(n, line)| format!("{relative}:{}: {line}", n + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        found.is_empty(),
        "the repo speaks of itself, not of the tracker: say what changed, not which issue asked:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_reader_finds_tracker_references() {
    for line in [
        "see issue 12",
        "Issue-6 targets",
        "(issues #3)",
        "fixed in #12",
        "#7",
    ] {
        assert!(tracker_reference(line).is_some(), "{line}");
    }
    for line in [
        "PKCS#8 keys",
        "## Heading",
        "[link](#where-the-tests-live)",
        "tissue 3",
    ] {
        assert!(tracker_reference(line).is_none(), "{line}");
    }
}
