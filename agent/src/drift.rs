//! Drift: a release directory is immutable once staged. At staging the
//! agent records a manifest of it (every path with its type, mode, size,
//! content hash, inode and change time); supervision compares the active
//! release against it now and then, cheaply (metadata only: any write,
//! chmod or replacement moves the inode's change time, which no user can
//! set back), and reports what changed. The coordinator shows it in
//! `cutover drift` and `cutover hosts`.
//!
//! Drift is a change to what was staged: a staged path changed, removed
//! or replaced, or a path added. One kind of added file is the app's own
//! doing and not drift: Python's bytecode cache of a staged source
//! (`pkg/__pycache__/mod.cpython-311.pyc` beside a staged `pkg/mod.py`,
//! not executable) and the `__pycache__` directories holding it. Any other
//! added file, an executable or a new source among them, is drift.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One path of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `f` file, `d` directory, `l` symlink.
    pub kind: char,
    pub mode: u32,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub ino: u64,
    pub ctime_ns: i64,
}

/// Every path of a release directory, relative to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: BTreeMap<String, Entry>,
}

fn walk(
    root: &Path,
    rel: &Path,
    hashes: bool,
    out: &mut BTreeMap<String, Entry>,
) -> std::io::Result<()> {
    for e in std::fs::read_dir(root.join(rel))? {
        let e = e?;
        let path = rel.join(e.file_name());
        let md = std::fs::symlink_metadata(root.join(&path))?;
        let ft = md.file_type();
        let kind = if ft.is_symlink() {
            'l'
        } else if ft.is_dir() {
            'd'
        } else {
            'f'
        };
        let sha256 = if hashes && kind == 'f' {
            let mut f = std::fs::File::open(root.join(&path))?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Some(hex::encode(h.finalize()))
        } else {
            None
        };
        let target = (kind == 'l')
            .then(|| std::fs::read_link(root.join(&path)).ok())
            .flatten()
            .map(|t| t.to_string_lossy().into_owned());
        out.insert(
            path.to_string_lossy().into_owned(),
            Entry {
                kind,
                mode: md.permissions().mode() & 0o7777,
                size: if kind == 'd' { 0 } else { md.len() },
                sha256,
                target,
                ino: md.ino(),
                ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            },
        );
        if kind == 'd' {
            walk(root, &path, hashes, out)?;
        }
    }
    Ok(())
}

/// Scans `dir`; with `hashes`, file contents are hashed too (at staging).
pub fn scan(dir: &Path, hashes: bool) -> std::io::Result<Manifest> {
    let mut entries = BTreeMap::new();
    walk(dir, Path::new(""), hashes, &mut entries)?;
    Ok(Manifest { entries })
}

/// What differs between the recorded manifest and a scan now, one line
/// per path (at most `limit`, then a count of the rest).
pub fn compare(recorded: &Manifest, now: &Manifest, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (path, was) in &recorded.entries {
        match now.entries.get(path) {
            None => out.push(format!("removed {path}")),
            Some(is) if is.kind != was.kind => out.push(format!("replaced {path}")),
            Some(is) if is.mode != was.mode => out.push(format!(
                "mode of {path} changed from {:o} to {:o}",
                was.mode, is.mode
            )),
            Some(is) if is.kind == 'l' && is.target != was.target => {
                out.push(format!("symlink {path} now points elsewhere"))
            }
            Some(is)
                if is.kind == 'f'
                    && (is.size != was.size
                        || is.ino != was.ino
                        || is.ctime_ns != was.ctime_ns) =>
            {
                out.push(format!("modified {path}"))
            }
            Some(_) => {}
        }
    }
    for (path, e) in &now.entries {
        if !recorded.entries.contains_key(path) && !is_bytecode_cache(path, e, recorded) {
            out.push(format!("added {path}"));
        }
    }
    if out.len() > limit {
        let more = out.len() - limit;
        out.truncate(limit);
        out.push(format!("and {more} more"));
    }
    out
}

/// Whether an added `path` is Python's bytecode cache of a staged source
/// (or a `__pycache__` directory): written by the app, not drift.
fn is_bytecode_cache(path: &str, e: &Entry, recorded: &Manifest) -> bool {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    if e.kind == 'd' {
        return name == "__pycache__";
    }
    let Some(pkg) = dir
        .strip_suffix("__pycache__")
        .filter(|p| p.is_empty() || p.ends_with('/'))
    else {
        return false;
    };
    let Some(module) = name.strip_suffix(".pyc").and_then(|n| n.split('.').next()) else {
        return false;
    };
    e.kind == 'f'
        && e.mode & 0o111 == 0
        && recorded
            .entries
            .get(&format!("{pkg}{module}.py"))
            .is_some_and(|src| src.kind == 'f')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_change_to_a_release_shows_and_an_untouched_one_is_clean() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir(r.join("bin")).unwrap();
        std::fs::write(r.join("bin/app"), b"v1").unwrap();
        std::fs::write(r.join("config"), b"a=1").unwrap();
        std::os::unix::fs::symlink("bin/app", r.join("app")).unwrap();
        let m = scan(r, true).unwrap();
        assert!(m.entries["bin/app"].sha256.is_some());
        assert!(compare(&m, &scan(r, false).unwrap(), 10).is_empty());

        // A same-size rewrite is caught too (inode change time).
        std::fs::write(r.join("bin/app"), b"v2").unwrap();
        std::fs::set_permissions(r.join("config"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(r.join("extra"), b"x").unwrap();
        std::fs::remove_file(r.join("app")).unwrap();
        let diff = compare(&m, &scan(r, false).unwrap(), 10);
        assert_eq!(
            diff,
            vec![
                "removed app",
                "modified bin/app",
                "mode of config changed from 644 to 600",
                "added extra"
            ],
            "{diff:?}"
        );
        assert_eq!(
            compare(&m, &scan(r, false).unwrap(), 2),
            vec!["removed app", "modified bin/app", "and 2 more"]
        );
    }

    #[test]
    fn a_python_apps_bytecode_cache_is_not_drift_but_a_new_executable_or_source_is() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir(r.join("pkg")).unwrap();
        std::fs::write(r.join("app.py"), b"import pkg.mod").unwrap();
        std::fs::write(r.join("pkg/mod.py"), b"x = 1").unwrap();
        let m = scan(r, true).unwrap();
        for dir in ["__pycache__", "pkg/__pycache__"] {
            std::fs::create_dir(r.join(dir)).unwrap();
        }
        std::fs::write(r.join("__pycache__/app.cpython-311.pyc"), b"c").unwrap();
        std::fs::write(r.join("pkg/__pycache__/mod.cpython-311.opt-1.pyc"), b"c").unwrap();
        assert_eq!(
            compare(&m, &scan(r, false).unwrap(), 10),
            Vec::<String>::new()
        );

        // Bytecode of no staged source, an executable, a new source.
        std::fs::write(r.join("pkg/__pycache__/evil.cpython-311.pyc"), b"c").unwrap();
        std::fs::write(r.join("__pycache__/run.pyc"), b"c").unwrap();
        std::fs::write(r.join("pkg/__pycache__/mod.cpython-312.pyc"), b"c").unwrap();
        std::fs::set_permissions(
            r.join("pkg/__pycache__/mod.cpython-312.pyc"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(r.join("sitecustomize.py"), b"import os").unwrap();
        assert_eq!(
            compare(&m, &scan(r, false).unwrap(), 10),
            vec![
                "added __pycache__/run.pyc",
                "added pkg/__pycache__/evil.cpython-311.pyc",
                "added pkg/__pycache__/mod.cpython-312.pyc",
                "added sitecustomize.py",
            ]
        );
    }
}
