//! The modules of this crate form layers: a module may use only modules of lower layers (or of
//! its own layer that it is listed after). This test reads every source file and fails on any
//! `crate::` reference that goes up or sideways, so import cycles cannot come back.
//! `docs/architecture.md` shows the same table as a picture.

/// Layer by layer, lowest first; within a layer, later modules may use earlier ones.
const LAYERS: &[&[&str]] = &[
    &["config", "telemetry", "error", "tls", "caller_rate", "conn", "metrics"],
    &["tasks", "listen"],
    &["core"],
    &["records", "peers", "audit", "backup"],
    &["ping", "outbox", "witness", "restored", "agreements", "federation", "retention", "users"],
    &["policies", "replicas"],
    &["transfer"],
    &["issuing", "provider", "recognition", "industry"],
    &["auth"],
    &["node"],
    &["services"],
    &["gateway", "ops"],
    &["server"],
    &["restore", "migrate_store", "process"],
    &["layering", "testkit"],
];

fn rank(module: &str) -> Option<(usize, usize)> {
    LAYERS.iter().enumerate().find_map(|(l, ms)| ms.iter().position(|m| *m == module).map(|p| (l, p)))
}

/// Every module named after `crate::` in `text`, including those inside `use crate::{a, b}`.
fn referenced(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: split at commas outside nested braces.
            let mut depth = 0;
            let mut name = String::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        at_start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && at_start {
                    if c.is_alphanumeric() || c == '_' {
                        name.push(c);
                    } else if !name.is_empty() {
                        out.push(std::mem::take(&mut name));
                        at_start = false;
                    }
                }
            }
            if !name.is_empty() {
                out.push(name);
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.push(name);
        }
    }
    out
}

#[test]
fn every_module_uses_only_modules_below_it() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    let mut seen = 0;
    let mut files = vec![src.clone()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let rel = p.strip_prefix(&src).unwrap().to_string_lossy().to_string();
        let module = rel.split(['/', '.']).next().unwrap().to_string();
        // The crate root declares the modules; this test names `crate::` in its own strings.
        if matches!(module.as_str(), "lib" | "main" | "layering") {
            continue;
        }
        let Some(own) = rank(&module) else {
            problems.push(format!("{rel}: module {module} is in no layer of LAYERS"));
            continue;
        };
        seen += 1;
        // Unit tests may use the test kit and whatever they test.
        let text = std::fs::read_to_string(&p).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
        for used in referenced(code) {
            if used == module {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                Some(_) => problems.push(format!("{rel}: {module} uses crate::{used}, which is not below it")),
                None => problems.push(format!("{rel}: uses crate::{used}, which is in no layer")),
            }
        }
    }
    assert!(seen > 30, "only {seen} source files read");
    assert!(problems.is_empty(), "layering broken:\n{}", problems.join("\n"));
}

#[test]
fn references_are_found_in_paths_and_groups() {
    let text = "use crate::{a::b, c::{d, e}, f};\nlet x = crate::g::h(); // crate::i";
    assert_eq!(referenced(text), ["a", "c", "f", "g", "i"]);
}
