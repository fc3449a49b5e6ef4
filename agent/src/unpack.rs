//! Unpacks a release archive (`.tar` or `.tar.gz`) into a directory,
//! refusing anything that could write outside it or create something a
//! release has no business containing:
//!
//! - absolute paths and `..` components;
//! - symbolic links whose target leaves the release (absolute, or climbing
//!   above the release root), and entries written through a symlink;
//! - hard links to anything but a regular file already unpacked;
//! - device nodes, FIFOs and other special entries;
//! - setuid, setgid and sticky bits (stripped, not refused);
//! - more than `max_bytes` unpacked or `max_entries` entries.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("archive entry `{entry}`: {why}")]
    Refused { entry: String, why: &'static str },
    #[error("archive unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("archive has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("archive is not a readable tar or tar.gz")]
    Corrupt(#[source] io::Error),
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Limits for one archive.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: u64,
}

/// Normalizes an entry path into components below the root, refusing
/// absolute paths and `..`.
fn clean(entry: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in entry.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
        }
    }
    Ok(out)
}

/// Resolves a symlink target lexically against the link's directory;
/// `None` when it leaves the root.
fn resolve_link(link_rel: &Path, target: &Path) -> Option<PathBuf> {
    if target.is_absolute() {
        return None;
    }
    let mut stack: Vec<std::ffi::OsString> = link_rel
        .parent()
        .map(|p| p.components().map(|c| c.as_os_str().to_owned()).collect())
        .unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(p) => stack.push(p.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                stack.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(stack.iter().collect())
}

/// Whether resolving `target` from the link's directory walks through a
/// path that is already a symlink in the release: chained links could
/// otherwise climb out one lexically harmless step at a time.
fn passes_through_link(root: &Path, link_rel: &Path, target: &Path) -> bool {
    let mut cur: PathBuf = link_rel.parent().map(Path::to_path_buf).unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(p) => {
                cur.push(p);
                if fs::symlink_metadata(root.join(&cur)).is_ok_and(|m| m.file_type().is_symlink()) {
                    return true;
                }
            }
            Component::ParentDir => {
                cur.pop();
            }
            _ => {}
        }
    }
    false
}

/// Fails if any existing ancestor of `rel` under `root` is a symlink, so a
/// link unpacked earlier cannot redirect a later write.
fn no_symlink_parents(root: &Path, rel: &Path) -> Result<(), &'static str> {
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err("written through a symbolic link");
                }
                Ok(m) if !m.is_dir() => return Err("parent is not a directory"),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Opens an archive, detecting gzip by its magic bytes.
pub fn open(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut f = File::open(path)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    let f = File::open(path)?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::GzDecoder::new(BufReader::new(f))))
    } else {
        Ok(Box::new(BufReader::new(f)))
    }
}

/// Unpacks `reader` into `root` (which must exist and be empty). On error
/// the caller removes `root`: nothing is ever written outside it.
pub fn unpack(reader: impl Read, root: &Path, limits: Limits) -> Result<u64, UnpackError> {
    let mut archive = tar::Archive::new(reader);
    let mut total: u64 = 0;
    let mut count: u64 = 0;
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UnpackError::Write { path, source }
    };
    for entry in archive.entries().map_err(UnpackError::Corrupt)? {
        let mut entry = entry.map_err(UnpackError::Corrupt)?;
        count += 1;
        if count > limits.max_entries {
            return Err(UnpackError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let raw = entry.path().map_err(UnpackError::Corrupt)?.into_owned();
        let name = raw.display().to_string();
        let refuse = |why| UnpackError::Refused {
            entry: name.clone(),
            why,
        };
        let rel = clean(&raw).map_err(refuse)?;
        if rel.as_os_str().is_empty() {
            continue; // "./"
        }
        no_symlink_parents(root, &rel).map_err(refuse)?;
        let dest = root.join(&rel);
        // No setuid, setgid, sticky, or group/other write: a release is not
        // writable by anyone but the agent, whatever the archive says.
        let mode = entry.header().mode().unwrap_or(0o644) & 0o755;
        let kind = entry.header().entry_type();
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(write_err(parent))?;
        }
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(refuse("directory replaces another entry")),
                    Err(_) => fs::create_dir(&dest).map_err(write_err(&dest))?,
                }
                fs::set_permissions(&dest, fs::Permissions::from_mode((mode | 0o700) & 0o755))
                    .map_err(write_err(&dest))?;
            }
            // GNU sparse entries read back as their full contents.
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                if fs::symlink_metadata(&dest).is_ok() {
                    return Err(refuse("entry appears twice"));
                }
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&dest)
                    .map_err(write_err(&dest))?;
                let budget = limits.max_bytes.saturating_sub(total);
                let copied = io::copy(&mut (&mut entry).take(budget + 1), &mut f)
                    .map_err(UnpackError::Corrupt)?;
                total += copied;
                if total > limits.max_bytes {
                    return Err(UnpackError::TooLarge {
                        limit: limits.max_bytes,
                    });
                }
                f.sync_all().map_err(write_err(&dest))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Corrupt)?
                    .ok_or_else(|| refuse("symbolic link without a target"))?
                    .into_owned();
                if resolve_link(&rel, &target).is_none() {
                    return Err(refuse("symbolic link points outside the release"));
                }
                if passes_through_link(root, &rel, &target) {
                    return Err(refuse(
                        "symbolic link target passes through another symbolic link",
                    ));
                }
                std::os::unix::fs::symlink(&target, &dest).map_err(write_err(&dest))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Corrupt)?
                    .ok_or_else(|| refuse("hard link without a target"))?
                    .into_owned();
                let target_rel =
                    clean(&target).map_err(|_| refuse("hard link points outside the release"))?;
                no_symlink_parents(root, &target_rel).map_err(refuse)?;
                let src = root.join(&target_rel);
                match fs::symlink_metadata(&src) {
                    Ok(m) if m.is_file() => {}
                    _ => {
                        return Err(refuse(
                            "hard link to something that is not a file in the release",
                        ));
                    }
                }
                fs::hard_link(&src, &dest).map_err(write_err(&dest))?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(refuse("device files are not allowed"));
            }
            tar::EntryType::Fifo => return Err(refuse("FIFOs are not allowed")),
            _ => return Err(refuse("unsupported entry type")),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        // Write the raw name so tests can build paths `tar::Builder` refuses.
        let bytes = path.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_cksum();
        h
    }

    type Spec<'a> = (&'a str, tar::EntryType, &'a [u8], Option<&'a str>, u32);

    fn archive(entries: &[Spec<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link, mode) in entries {
            let mut h = header(path, *kind, data.len() as u64, *mode);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
                h.set_cksum();
            }
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn unpack_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<u64, UnpackError>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("release");
        fs::create_dir(&root).unwrap();
        let r = unpack(
            bytes,
            &root,
            Limits {
                max_bytes: 1 << 20,
                max_entries: 100,
            },
        );
        (dir, r)
    }

    fn refused(bytes: &[u8], why: &str) {
        let (dir, r) = unpack_bytes(bytes);
        match r {
            Err(UnpackError::Refused { why: w, .. }) => assert!(w.contains(why), "{w}"),
            other => panic!("expected refusal ({why}), got {other:?}"),
        }
        // Nothing outside the release directory.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("release")]);
    }

    use tar::EntryType as E;

    #[test]
    fn a_normal_release_unpacks_with_modes_and_inner_links() {
        let bytes = archive(&[
            ("bin/", E::Directory, b"", None, 0o755),
            ("bin/app", E::Regular, b"#!/bin/sh\n", None, 0o4755),
            ("etc/app.conf", E::Regular, b"x=1\n", None, 0o644),
            ("bin/app-link", E::Symlink, b"", Some("app"), 0o777),
            ("etc/hard", E::Link, b"", Some("etc/app.conf"), 0o644),
        ]);
        let (dir, r) = unpack_bytes(&bytes);
        r.unwrap();
        let root = dir.path().join("release");
        let mode = fs::metadata(root.join("bin/app"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o755, "setuid must be stripped");
        assert_eq!(
            fs::read_link(root.join("bin/app-link")).unwrap(),
            PathBuf::from("app")
        );
        assert_eq!(fs::read(root.join("etc/hard")).unwrap(), b"x=1\n");
    }

    #[test]
    fn absolute_paths_are_refused() {
        refused(
            &archive(&[("/etc/evil", E::Regular, b"x", None, 0o644)]),
            "absolute path",
        );
    }

    #[test]
    fn parent_directory_components_are_refused() {
        refused(
            &archive(&[("a/../../evil", E::Regular, b"x", None, 0o644)]),
            "`..`",
        );
    }

    #[test]
    fn symlinks_leaving_the_release_are_refused() {
        refused(
            &archive(&[("link", E::Symlink, b"", Some("/etc/passwd"), 0o777)]),
            "outside",
        );
        refused(
            &archive(&[("a/link", E::Symlink, b"", Some("../../x"), 0o777)]),
            "outside",
        );
    }

    #[test]
    fn writing_through_a_symlink_is_refused() {
        refused(
            &archive(&[
                ("dir", E::Symlink, b"", Some("."), 0o777),
                ("dir/file", E::Regular, b"x", None, 0o644),
            ]),
            "through a symbolic link",
        );
    }

    #[test]
    fn chained_symlinks_cannot_climb_out_one_step_at_a_time() {
        refused(
            &archive(&[
                ("d/", E::Directory, b"", None, 0o755),
                ("d/up", E::Symlink, b"", Some(".."), 0o777),
                ("a1", E::Symlink, b"", Some("d/up/.."), 0o777),
            ]),
            "passes through another symbolic link",
        );
    }

    #[test]
    fn world_writable_modes_are_not_kept() {
        let (dir, r) = unpack_bytes(&archive(&[
            ("w/", E::Directory, b"", None, 0o777),
            ("w/f", E::Regular, b"x", None, 0o666),
        ]));
        r.unwrap();
        let root = dir.path().join("release");
        assert_eq!(
            fs::metadata(root.join("w")).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(
            fs::metadata(root.join("w/f")).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    #[test]
    fn hard_links_outside_the_release_are_refused() {
        refused(
            &archive(&[("h", E::Link, b"", Some("/etc/passwd"), 0o644)]),
            "outside",
        );
        refused(
            &archive(&[("h", E::Link, b"", Some("missing"), 0o644)]),
            "not a file",
        );
    }

    #[test]
    fn devices_and_fifos_are_refused() {
        refused(&archive(&[("dev", E::Char, b"", None, 0o644)]), "device");
        refused(&archive(&[("blk", E::Block, b"", None, 0o644)]), "device");
        refused(&archive(&[("fifo", E::Fifo, b"", None, 0o644)]), "FIFO");
    }

    #[test]
    fn archives_over_the_size_limit_are_refused() {
        let big = vec![0u8; 2 << 20];
        let (_d, r) = unpack_bytes(&archive(&[("big", E::Regular, &big, None, 0o644)]));
        assert!(matches!(r, Err(UnpackError::TooLarge { .. })));
    }

    #[test]
    fn garbage_is_reported_as_corrupt() {
        let (_d, r) = unpack_bytes(&[7u8; 1024]);
        assert!(r.is_err());
    }

    #[test]
    fn symlink_targets_resolve_lexically() {
        assert_eq!(
            resolve_link(Path::new("a/b/l"), Path::new("../c")),
            Some(PathBuf::from("a/c"))
        );
        assert_eq!(resolve_link(Path::new("l"), Path::new("../x")), None);
        assert_eq!(resolve_link(Path::new("a/l"), Path::new("/x")), None);
    }
}
