#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The shape of `control-plane/src`, checked on every test run: no import cycle
//! between its top-level modules, no source file over 400 lines (the Redis store and
//! test files excepted), and `App` a facade with private fields and one `impl`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 400;
/// Files allowed past `MAX_LINES`: the Redis store (its Lua scripts and protocol in one
/// place) and tests.
fn exempt(rel: &str) -> bool {
    rel == "store/redis.rs" || rel.ends_with("tests.rs") || rel.contains("/tests/")
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file belongs to (`sync/changelog.rs` → `sync`); `None` for
/// the crate roots.
fn module_of(rel: &str) -> Option<String> {
    let first = rel.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Every top-level module a source text names through `crate::` (in `use` lines and
/// in paths), outside comments.
fn dependencies(text: &str) -> BTreeSet<String> {
    let mut deps = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `meshauth_cp::crate::` cannot occur; `xcrate::` is not ours
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                deps.insert(name);
            }
        }
        // `use crate::{a, b::c}`: the names inside the braces.
        if let Some(group) = code.trim_start().strip_prefix("use crate::{") {
            for part in group.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    deps.insert(name);
                }
            }
        }
    }
    deps
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = src();
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let Some(module) = module_of(&rel) else {
            continue;
        };
        let text = std::fs::read_to_string(&f).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        deps.extend(dependencies(&text).into_iter().filter(|d| *d != module));
    }
    graph
}

/// A cycle through `start`, if any (depth-first).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        g: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in g.get(node).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(g, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_import_cycle_between_modules() {
    let g = graph();
    assert!(g.contains_key("app") && g["app"].contains("store"), "{g:?}");
    let cycles: Vec<String> = g
        .keys()
        .filter_map(|m| cycle_from(&g, m))
        .map(|c| c.join(" → "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let a = dependencies("use crate::b::X;\nfn f() { crate::c::g() } // crate::d\n");
    assert_eq!(a, BTreeSet::from(["b".to_string(), "c".to_string()]));
    let braces = dependencies("use crate::{store::Table, sync};\n");
    assert_eq!(
        braces,
        BTreeSet::from(["store".to_string(), "sync".to_string()])
    );
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycle_from(&g, "a").unwrap(), ["a", "b", "c", "a"]);
    g.get_mut("c").unwrap().clear();
    assert_eq!(cycle_from(&g, "a"), None);
}

#[test]
fn no_source_file_over_400_lines() {
    let root = src();
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let rel = f
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES && !exempt(&rel)).then(|| format!("{rel}: {n} lines"))
        })
        .collect();
    long.sort();
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn app_is_a_facade_with_private_fields_and_one_impl() {
    let root = src();
    let mut files = Vec::new();
    sources(&root, &mut files);
    let impls: usize = files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .filter(|l| l.trim_start().starts_with("impl App"))
                .count()
        })
        .sum();
    assert_eq!(impls, 1, "`impl App` blocks");
    let app = std::fs::read_to_string(root.join("app.rs")).unwrap();
    let body = app
        .split("pub struct App {")
        .nth(1)
        .and_then(|b| b.split("\n}").next())
        .unwrap();
    let public: Vec<&str> = body
        .lines()
        .filter(|l| l.trim_start().starts_with("pub"))
        .collect();
    assert!(public.is_empty(), "public fields of App: {public:?}");
}
