//! The import rules between modules, checked on the sources: `config` is a leaf (it names no
//! other module of the crate, so the value types it produces cannot pull behaviour back into
//! it), and `kafka` sits below the modules that move records (it names none of them).

use std::path::{Path, PathBuf};

/// The `crate::<module>` paths in `text` (code, comments and docs alike: a doc link is a
/// dependency too) whose top module is not in `allowed`, with their line numbers. `super::`
/// chains that climb out of a folder `depth` levels below `src/` count as `crate::` paths.
fn foreign_paths(text: &str, depth: usize, allowed: &[&str]) -> Vec<(usize, String)> {
    let escape = "super::".repeat(depth + 1);
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.contains(&escape) {
            found.push((n + 1, line.trim().to_owned()));
            continue;
        }
        for (at, _) in line.match_indices("crate::") {
            // `bigpipe_crate::x` or `my_crate::x` are other names, not this crate.
            let before = line[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &line[at + "crate::".len()..];
            let module: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !allowed.contains(&module.as_str()) {
                found.push((n + 1, line.trim().to_owned()));
            }
        }
    }
    found
}

/// Every `.rs` file under `dir`, with its depth below `src/` (1 for `src/config/x.rs`).
fn sources(dir: &Path, depth: usize, out: &mut Vec<(PathBuf, usize)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path();
        if path.is_dir() {
            sources(&path, depth + 1, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((path, depth));
        }
    }
}

/// The violations of the rule "files under `src/<module>` name only `allowed` modules"; with
/// `code_only`, a file's tests (from its first `#[cfg(test)]` on) are not checked.
fn violations(module: &str, allowed: &[&str], code_only: bool) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(module);
    let mut files = Vec::new();
    sources(&dir, 1, &mut files);
    assert!(files.len() > 1, "no sources found under {}", dir.display());
    let mut out = Vec::new();
    for (path, depth) in files {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = match text.find("#[cfg(test)]") {
            Some(at) if code_only => &text[..at],
            _ => &text[..],
        };
        // `super` in src/config/x.rs is `config`; in src/config/mod.rs it is already the crate.
        let depth = if path.ends_with("mod.rs") {
            depth - 1
        } else {
            depth
        };
        for (line, code) in foreign_paths(text, depth, allowed) {
            out.push(format!("{}:{line}: {code}", path.display()));
        }
    }
    out
}

#[test]
fn config_is_a_leaf() {
    let found = violations("config", &["config"], false);
    assert!(
        found.is_empty(),
        "config names other modules:\n{}",
        found.join("\n")
    );
}

#[test]
fn kafka_names_none_of_the_modules_that_move_records() {
    // Tests may name anything (`record_size` checks the dead-letter writer keeps within the
    // reserve it states); the code names only itself, the config and the small utilities.
    let allowed = [
        "kafka", "config", "backoff", "crypto", "logging", "message", "shutdown", "stats",
    ];
    let found = violations("kafka", &allowed, true);
    assert!(
        found.is_empty(),
        "kafka names modules above it:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_sees_every_way_of_naming_another_module() {
    let text = "use crate::config::Settings;\n\
                use crate::delivery::forward::ForwardRules;\n\
                /// see [`crate::policy::net`]\n\
                let x = crate::kafka::record_size::largest_record(1);\n\
                use super::super::super::producer;\n\
                use super::values::net::Rule;\n\
                use my_crate::thing;\n";
    let found: Vec<usize> = foreign_paths(text, 2, &["config"])
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(found, [2, 3, 4, 5]);
}
