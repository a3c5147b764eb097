//! The dependency direction ARCHITECTURE.md states, checked on the source:
//! every `crate::` path in a library file names a module of a lower layer
//! (or its own), so nothing points back up and no import circle can form.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// Top-level modules of the library by layer, highest first. A module may
/// use modules of lower layers only; modules of one layer do not use each
/// other. Keep in step with ARCHITECTURE.md's "Dependency direction".
const LAYERS: &[&[&str]] = &[
    &["server"],
    &["config"],
    &["cli"],
    // The adapters: each knows the core, neither knows the other.
    &["http", "grpc"],
    &["app"],
    &["policy"],
    &["witness"],
    &[
        "authz",
        "limits",
        "mask",
        "audit",
        "authn",
        "listen",
        "logging",
        "telemetry",
        "gateway",
    ],
    &["keys"],
    &["diagnostics", "keyfile", "metrics", "proto", "tls"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level modules a file's code (not its comments) refers to.
fn references(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let path = regex::Regex::new(r"crate::(\w+)").unwrap();
    for capture in path.captures_iter(&code) {
        found.insert(capture[1].to_owned());
    }
    // `use crate::{a::b, c, d::{e, f}}`: the names at the group's top level.
    let group = regex::Regex::new(r"use crate::\{").unwrap();
    for start in group.find_iter(&code) {
        let mut depth = 1;
        let mut name = String::new();
        let mut expecting_name = true;
        for ch in code[start.end()..].chars() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => {
                    expecting_name = true;
                    continue;
                }
                _ => {}
            }
            if depth == 1 && expecting_name {
                if ch.is_alphanumeric() || ch == '_' {
                    name.push(ch);
                } else if !name.is_empty() {
                    found.insert(std::mem::take(&mut name));
                    expecting_name = false;
                }
            }
        }
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

fn library_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            library_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn nothing_points_back_up() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    library_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap();
        let module = first.as_os_str().to_str().unwrap().trim_end_matches(".rs");
        // The binary's edge (main.rs, commands/) may use anything; lib.rs
        // only declares the modules.
        if ["main", "commands", "lib"].contains(&module) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for target in references(&text) {
            if target != module {
                edges.entry(module.to_owned()).or_default().insert(target);
            }
        }
    }
    assert!(
        edges.len() > 5,
        "the analysis found almost nothing: {edges:?}"
    );

    let mut violations = Vec::new();
    for (from, targets) in &edges {
        let Some(from_layer) = layer_of(from) else {
            violations.push(format!("module {from} is in no layer of LAYERS"));
            continue;
        };
        for to in targets {
            match layer_of(to) {
                None => violations.push(format!("{from} -> {to}: {to} is in no layer")),
                Some(to_layer) if to_layer <= from_layer => violations.push(format!(
                    "{from} -> {to}: {to} is not below {from} ({})",
                    if to_layer == from_layer {
                        "same layer"
                    } else {
                        "points back up"
                    }
                )),
                Some(_) => {}
            }
        }
    }
    assert!(
        violations.is_empty(),
        "dependency direction broken:\n  {}\nedges: {edges:#?}",
        violations.join("\n  ")
    );
}

/// The generated protobuf code belongs to `proto`: whatever build.rs makes
/// it name (`codec_path`, `extern_path`) must sit in proto's layer or below,
/// or the generated code hides an upward edge no source file shows.
#[test]
fn generated_code_points_nowhere_up() {
    let build =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("build.rs")).unwrap();
    let named = references(&build);
    assert!(!named.is_empty(), "build.rs names no crate path");
    let proto = layer_of("proto").unwrap();
    for module in named {
        let layer = layer_of(&module).unwrap_or_else(|| panic!("{module} is in no layer"));
        assert!(
            layer >= proto,
            "build.rs makes the generated code (proto) use {module}, which is above it"
        );
    }
}

/// Inside each top-level module, the files' `super::`/`crate::MODULE::`
/// references between submodules form no circle either.
#[test]
fn no_circle_between_submodules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    library_files(&src, &mut files);
    // node: "audit::log", edges to sibling submodules of the same parent.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let sup = regex::Regex::new(r"super::(\w+)").unwrap();
    let group = regex::Regex::new(r"use super::\{([^;]*)\};").unwrap();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let parts: Vec<String> = relative
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_str().unwrap().to_owned())
            .collect();
        if parts.len() < 2 || ["main", "commands", "lib"].contains(&parts[0].as_str()) {
            continue;
        }
        let top = &parts[0];
        let sub = &parts[1];
        if sub == "mod" || sub == "tests" {
            continue;
        }
        let node = format!("{top}::{sub}");
        let text = std::fs::read_to_string(file).unwrap();
        let code: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut targets = BTreeSet::new();
        let own = regex::Regex::new(&format!(r"crate::{top}::(\w+)")).unwrap();
        for capture in own.captures_iter(&code) {
            targets.insert(capture[1].to_owned());
        }
        if parts.len() == 2 || (parts.len() == 3 && parts[2] == "mod") {
            // `super::x` from `top/sub.rs` or `top/sub/mod.rs` names a
            // sibling of `sub`.
            for capture in sup.captures_iter(&code) {
                targets.insert(capture[1].to_owned());
            }
            for capture in group.captures_iter(&code) {
                for name in capture[1].split(',') {
                    let name = name.trim().split("::").next().unwrap_or("").trim();
                    if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        targets.insert(name.to_owned());
                    }
                }
            }
        }
        for target in targets {
            let is_module = src.join(top).join(format!("{target}.rs")).exists()
                || src.join(top).join(&target).is_dir();
            if target != *sub && is_module {
                edges
                    .entry(node.clone())
                    .or_default()
                    .insert(format!("{top}::{target}"));
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(1) => {
                let start = path.iter().position(|n| n == node).unwrap();
                let mut circle = path[start..].to_vec();
                circle.push(node.to_owned());
                return Some(circle);
            }
            Some(_) => return None,
            None => {}
        }
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, state, path) {
                return Some(circle);
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if let Some(circle) = visit(node, &edges, &mut state, &mut Vec::new()) {
            panic!("import circle: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn the_analysis_reads_groups_and_paths() {
    let text = "use crate::{\n    audit::{self, Record},\n    keys,\n};\n// crate::server in a comment\nfn f() { crate::mask::x(); }\n";
    let found: Vec<String> = references(text).into_iter().collect();
    assert_eq!(found, ["audit", "keys", "mask"]);
}
