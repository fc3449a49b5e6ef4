//! Property tests of what reaches an agent from outside: commands decoded
//! from the wire, artifacts unpacked, its own config file, and the text of
//! apps' metrics endpoints. None may panic; an archive never writes
//! outside its directory.
//!
//! Named `fuzz_*`: CI runs them with proptest's default 256 cases; for
//! minutes of fuzzing, `bench/fuzz.sh` (PROPTEST_CASES=...).

use std::io::Write;

use cutover_agent::command::Command;
use cutover_agent::config::AgentConfig;
use cutover_agent::unpack::{Limits, unpack};
use cutover_common::fuzz::mutate;
use cutover_proto::v1 as pb;
use proptest::prelude::*;
use prost::Message;

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..16)
}

/// A small valid archive: directories, files, a link inside.
fn archive() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], kind: tar::EntryType, link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        b.append_data(&mut h, path, data).unwrap();
    };
    add("bin/", b"", tar::EntryType::Directory, None);
    add(
        "bin/web",
        b"#!/bin/sh\necho hi\n",
        tar::EntryType::Regular,
        None,
    );
    add(
        "etc/app.conf",
        b"port = 8080\n",
        tar::EntryType::Regular,
        None,
    );
    add("current", b"", tar::EntryType::Symlink, Some("bin/web"));
    b.into_inner().unwrap()
}

/// Every path under `dir`, relative.
fn tree(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn fuzz_mutated_archives_unpack_inside_their_directory_or_are_refused(e in edits()) {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("release");
        std::fs::create_dir(&root).unwrap();
        let bytes = mutate(archive(), &e);
        let _ = unpack(&bytes[..], &root, Limits { max_bytes: 1 << 20, max_entries: 64 });
        // Nothing beside the release directory, whatever the archive said.
        let beside: Vec<_> = std::fs::read_dir(outer.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        prop_assert_eq!(beside, vec![std::ffi::OsString::from("release")]);
        // No link inside points out of it.
        for p in tree(&root) {
            let full = root.join(&p);
            if let Ok(target) = std::fs::read_link(&full) {
                prop_assert!(!target.is_absolute(), "{p:?} -> {target:?}");
                let joined = full.parent().unwrap().join(&target);
                let mut depth: i64 = 0;
                for c in joined.strip_prefix(&root).unwrap_or(&joined).components() {
                    match c {
                        std::path::Component::ParentDir => depth -= 1,
                        std::path::Component::Normal(_) => depth += 1,
                        _ => {}
                    }
                    prop_assert!(depth >= 0, "{p:?} -> {target:?} leaves the release");
                }
            }
        }
    }

    #[test]
    fn fuzz_arbitrary_bytes_as_an_archive_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("release");
        std::fs::create_dir(&root).unwrap();
        let _ = unpack(&bytes[..], &root, Limits { max_bytes: 1 << 20, max_entries: 64 });
        prop_assert_eq!(std::fs::read_dir(outer.path()).unwrap().count(), 1);
    }

    #[test]
    fn fuzz_commands_from_the_wire_decode_and_convert_without_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        if let Ok(m) = pb::CoordinatorMessage::decode(&bytes[..])
            && let Some(pb::coordinator_message::Body::Command(c)) = m.body
        {
            let _ = Command::try_from(c);
        }
        if let Ok(c) = pb::Command::decode(&bytes[..]) {
            let _ = Command::try_from(c);
        }
    }

    #[test]
    fn fuzz_stage_commands_with_mutated_spec_json_are_refused_or_valid(
        e in edits(),
    ) {
        let spec = include_str!("../../tests/specs/good/rolling.toml");
        let parsed = cutover_common::deploy::DeploySpec::parse(spec, "rolling.toml").unwrap();
        let json = serde_json::to_vec(&parsed.service_spec()).unwrap();
        let c = pb::Command {
            command_id: "c1".into(),
            kind: Some(pb::command::Kind::Stage(pb::StageCommand {
                service: parsed.service.clone(),
                release_id: "1-abc".into(),
                version: "1".into(),
                artifact_url: "https://a/b.tgz".into(),
                artifact_sha256: "a".repeat(64),
                max_bytes: 0,
                service_spec_json: mutate(json, &e),
            })),
            ..Default::default()
        };
        if let Ok(cmd) = Command::try_from(c)
            && let cutover_agent::command::Kind::Stage { spec, .. } = cmd.kind
        {
            prop_assert!(spec.validate().is_ok());
        }
    }

    #[test]
    fn fuzz_agent_config_files_load_or_name_the_problem(
        which in 0..2usize,
        e in edits(),
    ) {
        let base = [
            include_str!("../../packaging/examples/agent.toml"),
            "state_dir = \"/tmp/x\"\nlabels = { role = \"web\" }\n[policy]\nallow_root = true\n",
        ][which];
        let text = mutate(base.as_bytes().to_vec(), &e);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&text).unwrap();
        if let Err(err) = AgentConfig::load(Some(f.path())) {
            prop_assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn fuzz_an_apps_metrics_text_never_panics_the_scrape(text in "\\PC{0,600}", extra in "[a-z_{}=\",. 0-9+e-]{0,200}") {
        let m = cutover_common::service::AppMetrics {
            listener: Some("http".into()),
            port: None,
            path: "/metrics".into(),
            requests: "http_requests_total".into(),
            status_label: "status".into(),
            latency: Some("http_request_duration_seconds".into()),
            interval: std::time::Duration::from_secs(1),
        };
        let _ = cutover_agent::scrape::parse(&text, &m);
        let shaped = format!("http_requests_total{extra}\nhttp_request_duration_seconds_bucket{extra}\n");
        let _ = cutover_agent::scrape::parse(&shaped, &m);
    }
}
