//! The corpus of deployment specs in `tests/specs/`: every good one
//! validates, and every bad one fails with the precise error its first
//! line announces (`# expect: ...`), through `cutover validate` as a user
//! would run it.

use std::process::Command;

use cutover_tests::bin;

fn specs(kind: &str) -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("specs")
        .join(kind);
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(!v.is_empty());
    v
}

#[test]
fn every_good_spec_validates() {
    for p in specs("good") {
        let out = Command::new(bin("cutover"))
            .arg("validate")
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_bad_spec_fails_with_its_precise_error() {
    let mut checked = 0;
    for p in specs("bad") {
        let text = std::fs::read_to_string(&p).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", p.display()));
        let out = Command::new(bin("cutover"))
            .arg("validate")
            .arg(&p)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} validated", p.display());
        assert!(
            err.contains(&p.display().to_string()),
            "{}: the error must name the file: {err}",
            p.display()
        );
        assert!(
            err.contains(expect),
            "{}: expected `{expect}` in: {err}",
            p.display()
        );
        checked += 1;
    }
    assert!(checked >= 10);
}

/// Every key path of a value: `a.b.c`, with `[]` for arrays of tables.
/// Maps with user-chosen keys (`run.env`) stop at the map.
fn key_paths(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) if prefix == "run.env" || m.is_empty() => {
            out.push(prefix.to_string())
        }
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                key_paths(&p, v, out);
            }
        }
        serde_json::Value::Array(a) if a.iter().any(|x| x.is_object()) => {
            for x in a {
                key_paths(&format!("{prefix}[]"), x, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// The spec reference is checked against the code: every field the spec
/// types have (all set in `every-field-*.toml`) is described, by its full
/// dotted path, in docs/spec-reference.md.
#[test]
fn the_spec_reference_describes_every_field() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../docs/spec-reference.md")).unwrap();
    let mut paths = Vec::new();
    for f in ["every-field-a.toml", "every-field-b.toml"] {
        let p = root.join("specs/good").join(f);
        let text = std::fs::read_to_string(&p).unwrap();
        let spec = cutover_common::deploy::DeploySpec::parse(&text, f).unwrap();
        key_paths("", &serde_json::to_value(&spec).unwrap(), &mut paths);
    }
    paths.sort();
    paths.dedup();
    assert!(paths.len() > 60, "too few fields found: {paths:?}");
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !doc.contains(&format!("`{p}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/spec-reference.md does not describe: {missing:#?}"
    );
}
