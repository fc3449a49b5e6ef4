//! The promotion gate: a deployment into an environment that names others
//! in `targets.requires_success_in` goes ahead only when the same version,
//! built from the very same artifact, succeeded in each of them. Pure:
//! [`check`] judges against the stored history.

use crate::store::DeploymentRecord;

/// Why a deployment may not be promoted yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Checks `required` environments for `service` at `version` with
/// artifact `sha256` against `history` (any order).
pub fn check(
    required: &[String],
    service: &str,
    version: &str,
    sha256: &str,
    history: &[DeploymentRecord],
) -> Result<(), Refused> {
    for env in required {
        let tried: Vec<&DeploymentRecord> = history
            .iter()
            .filter(|d| d.service == service && &d.environment == env && d.version == version)
            .collect();
        if tried
            .iter()
            .any(|d| d.phase == "succeeded" && same_sha(&d.artifact_sha256, sha256))
        {
            continue;
        }
        let why = if let Some(other) = tried.iter().find(|d| d.phase == "succeeded") {
            format!(
                "version {version} of `{service}` succeeded in {env} ({}) with another artifact (sha256 {}…, this one {}…): promote the exact artifact that was tested",
                other.id,
                &other.artifact_sha256[..other.artifact_sha256.len().min(12)],
                &sha256[..sha256.len().min(12)]
            )
        } else if let Some(last) = tried.iter().max_by_key(|d| d.seq) {
            format!(
                "version {version} of `{service}` has not succeeded in {env}: its last deployment there ({}) is {}",
                last.id, last.phase
            )
        } else {
            format!(
                "version {version} of `{service}` was never deployed to {env}: deploy and verify it there first"
            )
        };
        return Err(Refused(format!("promotion gate: {why}")));
    }
    Ok(())
}

/// `sha256:ABC...` and `abc...` are the same checksum.
fn same_sha(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim().trim_start_matches("sha256:").to_ascii_lowercase();
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: i64, env: &str, version: &str, sha: &str, phase: &str) -> DeploymentRecord {
        DeploymentRecord {
            seq,
            id: format!("d{seq}"),
            service: "web".into(),
            version: version.into(),
            spec_toml: String::new(),
            artifact_url: String::new(),
            artifact_sha256: sha.into(),
            rollout_json: String::new(),
            phase: phase.into(),
            created_by: "admin".into(),
            created_at: seq,
            finished_at: Some(seq),
            commit_time: None,
            environment: env.into(),
            rollback_of: None,
        }
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn a_version_tested_in_staging_passes_and_an_untested_one_is_refused() {
        let staging = vec!["staging".to_string()];
        let h = vec![
            rec(1, "staging", "1.4.1", A, "succeeded"),
            rec(2, "staging", "1.4.2", A, "rolled_back"),
            rec(3, "production", "1.4.3", A, "succeeded"),
        ];
        assert!(check(&staging, "web", "1.4.1", A, &h).is_ok());
        let e = check(&staging, "web", "1.4.2", A, &h).unwrap_err();
        assert!(e.0.contains("has not succeeded in staging"), "{e}");
        assert!(e.0.contains("d2) is rolled_back"), "{e}");
        // Succeeding in production does not count for staging.
        let e = check(&staging, "web", "1.4.3", A, &h).unwrap_err();
        assert!(e.0.contains("never deployed to staging"), "{e}");
        // The same checksum, written another way.
        assert!(
            check(
                &staging,
                "web",
                "1.4.1",
                &format!("sha256:{}", A.to_uppercase()),
                &h
            )
            .is_ok()
        );
        // Same version, different bits.
        let e = check(&staging, "web", "1.4.1", B, &h).unwrap_err();
        assert!(e.0.contains("with another artifact"), "{e}");
        // No requirement, no gate.
        assert!(check(&[], "web", "9", B, &h).is_ok());
    }
}
