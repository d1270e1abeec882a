//! The top-level modules of `src/` must not import each other in a cycle (ARCHITECTURE.md: dependencies
//! point down the flow and into leaf modules, never back up).
//!
//! The check reads the source text (no compiler needed, a fraction of a second): every `crate::<module>`
//! path in `src/<module>/…` or `src/<module>.rs`, including those inside `use crate::{…}` groups, is an
//! edge. The graph without the edges in [`ALLOWED_BACK_EDGES`] must be acyclic, and every allowed edge
//! must still exist, so the list can only shrink: remove an entry in the change that removes the import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Imports that still run back up the flow, each with the step of issue 11 that removes it. Never add
/// to this list.
const ALLOWED_BACK_EDGES: &[(&str, &str, &str)] = &[];

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// Removes `//` and `/* */` comments and the contents of string and char literals, so that neither a
/// comment nor a literal such as "rtsp://…" is read as a path.
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'#' | b'"'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                // Raw string r#"…"#: skip to the closing quote followed by as many hashes.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"'
                        && b[j + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|&&c| c == b'#')
                            .count()
                            == hashes
                    {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): only skip the former.
                let close = b[i + 1..]
                    .iter()
                    .take(12)
                    .position(|&c| c == b'\'')
                    .map(|p| i + 1 + p);
                match close {
                    Some(c) if c == i + 2 || b[i + 1] == b'\\' => i = c + 1,
                    _ => {
                        out.push('\'');
                        i += 1;
                    }
                }
            }
            _ => {
                // Copy one whole UTF-8 character.
                let len = match b[i] {
                    0x00..=0x7f => 1,
                    0xc0..=0xdf => 2,
                    0xe0..=0xef => 3,
                    _ => 4,
                };
                out.push_str(&text[i..(i + len).min(b.len())]);
                i += len;
            }
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level module names a stripped source file reaches through `crate::`.
fn targets(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before_ok = i == 0 || {
            let c = rest.as_bytes()[i - 1];
            !(c.is_ascii_alphanumeric() || c == b'_' || c == b'$')
        };
        rest = &rest[i + "crate::".len()..];
        if !before_ok {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::{c, d}, e}`: the names at depth 1.
            let mut depth = 1;
            let mut expect_name = true;
            let mut k = 0;
            let g = group.as_bytes();
            while k < g.len() && depth > 0 {
                match g[k] {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    b',' if depth == 1 => expect_name = true,
                    c if depth == 1 && expect_name && (c.is_ascii_alphabetic() || c == b'_') => {
                        out.insert(ident_at(&group[k..]).to_owned());
                        expect_name = false;
                    }
                    _ => {}
                }
                k += 1;
            }
        } else {
            out.insert(ident_at(rest).to_owned());
        }
    }
    out
}

fn graph(src: &Path) -> Graph {
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(src).expect("read src/") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            modules.insert(name.to_owned());
        } else if let Some(stem) = name.strip_suffix(".rs")
            && stem != "lib"
            && stem != "main"
        {
            modules.insert(stem.to_owned());
        }
    }
    let mut g: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    let mut files = Vec::new();
    for m in &modules {
        let file = src.join(format!("{m}.rs"));
        if file.is_file() {
            files.push((m.clone(), file));
        }
        let mut stack = vec![src.join(m)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let p = e.expect("dir entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    files.push((m.clone(), p));
                }
            }
        }
    }
    for (m, file) in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for t in targets(&strip(&text)) {
            if t != m && modules.contains(&t) {
                let rel = file
                    .strip_prefix(src)
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                g.get_mut(&m)
                    .expect("module")
                    .entry(t)
                    .or_default()
                    .insert(rel);
            }
        }
    }
    g
}

/// A cycle in `g` (as a list of modules, first repeated last), if there is one.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        v: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        mark: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        mark.insert(v.to_owned(), Mark::Open);
        path.push(v.to_owned());
        for w in g.get(v).into_iter().flatten() {
            match mark.get(w).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let start = path.iter().position(|p| p == w).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(w.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(w, g, mark, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        mark.insert(v.to_owned(), Mark::Done);
        None
    }
    let mut mark = BTreeMap::new();
    for v in g.keys() {
        if mark.get(v).copied().unwrap_or(Mark::New) == Mark::New
            && let Some(c) = visit(v, g, &mut mark, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

fn describe(g: &Graph) -> String {
    g.iter()
        .map(|(m, to)| {
            let names: Vec<&str> = to.keys().map(String::as_str).collect();
            format!("  {m} -> {}", names.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn top_level_modules_form_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    let allowed: BTreeSet<(&str, &str)> = ALLOWED_BACK_EDGES
        .iter()
        .map(|(a, b, _)| (*a, *b))
        .collect();

    let stale: Vec<String> = ALLOWED_BACK_EDGES
        .iter()
        .filter(|(a, b, _)| !g.get(*a).is_some_and(|to| to.contains_key(*b)))
        .map(|(a, b, _)| format!("{a} -> {b}"))
        .collect();
    assert!(
        stale.is_empty(),
        "these allowed back edges no longer exist; remove them from ALLOWED_BACK_EDGES: {}",
        stale.join(", ")
    );

    let pruned: BTreeMap<String, BTreeSet<String>> = g
        .iter()
        .map(|(m, to)| {
            let kept = to
                .keys()
                .filter(|t| !allowed.contains(&(m.as_str(), t.as_str())))
                .cloned()
                .collect();
            (m.clone(), kept)
        })
        .collect();
    if let Some(cycle) = find_cycle(&pruned) {
        let hops: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                let files: Vec<&str> = g[&w[0]][&w[1]].iter().map(String::as_str).collect();
                format!("  {} -> {} (in {})", w[0], w[1], files.join(", "))
            })
            .collect();
        panic!(
            "import cycle between top-level modules:\n{}\n\nall top-level dependencies:\n{}",
            hops.join("\n"),
            describe(&g)
        );
    }
    // The dependency list, for notes and docs/architecture.md (`cargo test --test module_cycles -- --nocapture`).
    println!("{}", describe(&g));
}

#[test]
fn the_reader_sees_imports_and_ignores_comments_and_strings() {
    let code = strip(
        "use crate::{a::X, b::{c, d}, e};\n\
         // crate::f in a comment\n\
         /* crate::g /* nested */ crate::h */\n\
         let s = \"crate::i\"; let r = r#\"crate::j\"#; let c = '\"';\n\
         fn k<'a>(x: &'a crate::k::K) { crate::l::f(); other_crate::m::n(); }\n",
    );
    let found: Vec<String> = targets(&code).into_iter().collect();
    assert_eq!(found, ["a", "b", "e", "k", "l"]);

    let g = |edges: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            m.entry((*a).into()).or_default().insert((*b).into());
            m.entry((*b).into()).or_default();
        }
        m
    };
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
