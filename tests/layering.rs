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
    &["http"],
    &["grpc"],
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

#[test]
fn the_analysis_reads_groups_and_paths() {
    let text = "use crate::{\n    audit::{self, Record},\n    keys,\n};\n// crate::server in a comment\nfn f() { crate::mask::x(); }\n";
    let found: Vec<String> = references(text).into_iter().collect();
    assert_eq!(found, ["audit", "keys", "mask"]);
}
