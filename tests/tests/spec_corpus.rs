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
