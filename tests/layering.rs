//! The crate's top-level modules only point down: no module reaches, through
//! the `crate::` paths of its code, one that reaches it back. Circles made
//! every part depend on every other (the store on the taint checks, the
//! keys on the store, the gateway on its HTTP front end); this keeps them
//! from coming back. A test module (`mod tests`, `tests.rs`) may reach
//! anything, and comments do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module → the modules its code names, with a file that names each.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn graph_of(src: &Path) -> Graph {
    let mut graph = Graph::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".rs") || name == "tests.rs" {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().to_string_lossy().into_owned();
            let module = relative.split('/').next().unwrap().trim_end_matches(".rs").to_owned();
            if module == "main" || module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for target in named_modules(&text) {
                if target != module {
                    graph.entry(module.clone()).or_default().entry(target).or_insert_with(|| relative.clone());
                }
            }
        }
    }
    graph
}

/// The top-level modules `crate::NAME` paths name in the code of a file
/// (up to its test module; comments left out).
fn named_modules(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    let mut names = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// A circle of modules, if there is one: each names the next, the last the first.
fn a_circle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(node: &str, graph: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            return Some(path[start..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            if let Some(circle) = visit(&next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_modules_only_point_down() {
    let graph = graph_of(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 10, "the crate's modules were found: {:?}", graph.keys());
    if let Some(circle) = a_circle(&graph) {
        let links: Vec<String> = circle
            .iter()
            .zip(circle.iter().cycle().skip(1))
            .map(|(a, b)| format!("{a} -> {b} (in src/{})", graph[a][b]))
            .collect();
        panic!("the modules form a circle; make one of these point down instead:\n  {}", links.join("\n  "));
    }
}

/// The check finds a circle where there is one, and none where there is none.
#[test]
fn the_check_sees_a_circle() {
    let edge = |a: &str, b: &str| (a.to_owned(), BTreeMap::from([(b.to_owned(), format!("{a}.rs"))]));
    let circle: Graph = [edge("store", "taint"), edge("taint", "token"), edge("token", "store")].into_iter().collect();
    let found = a_circle(&circle).expect("a circle");
    assert_eq!(found.len(), 3, "{found:?}");
    let line: Graph = [edge("token", "store"), edge("store", "taint")].into_iter().collect();
    assert_eq!(a_circle(&line), None);
    let text = "use crate::store::Store; // crate::gateway\n/// [`crate::http`]\nfn f() { crate::audit::x(); }\n#[cfg(test)]\nmod tests { use crate::cli; }\n";
    assert_eq!(named_modules(text), BTreeSet::from(["store".to_owned(), "audit".to_owned()]));
}
