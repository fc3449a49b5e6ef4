//! What this host allows a deployment to do (`[policy]` in agent.toml).
//!
//! A deployer writes specs; the agent runs them as root. Without a limit
//! a deployer is root on every host: `run.user` unset (the agent's user),
//! a hook reading `/etc/shadow`, `file:///etc/shadow` as an artifact,
//! `env_files` naming any file, `http://` URLs probing the host's ports.
//! The host's owner says here what its deployments may do; a spec asking
//! for more is refused at `Stage`, before anything is fetched, with the
//! rule it broke, and the refusal shows in `cutover status`.

use std::path::{Component, Path, PathBuf};

use cutover_common::service::{Check, ServiceSpec};
use serde::{Deserialize, Serialize};

/// The host's rules. Defaults are the safe ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Users apps (and their hooks and exec probes, which run as the app's
    /// user) may run as, by name or uid; `"*"` for any user (root only
    /// with `allow_root`).
    pub run_users: Vec<String>,
    /// Whether apps may run as root: `run.user = "root"` (or uid 0), or
    /// `run.user` unset while the agent runs as root.
    pub allow_root: bool,
    /// URL schemes artifacts may come from: `https`, `http`, `file`.
    pub artifact_schemes: Vec<String>,
    /// When not empty, an artifact URL must start with one of these (for
    /// example `https://artifacts.example.com/`): the agent fetches from
    /// nowhere else, so a spec cannot make it probe other addresses.
    pub artifact_prefixes: Vec<String>,
    /// Directories `run.env_files` may name files in (symbolic links are
    /// followed before the check).
    pub env_file_dirs: Vec<PathBuf>,
    /// Whether specs may have hooks.
    pub hooks: bool,
    /// Whether specs may have `exec` probes.
    pub exec_probes: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            run_users: vec!["*".into()],
            allow_root: false,
            artifact_schemes: vec!["https".into(), "http".into()],
            artifact_prefixes: Vec::new(),
            env_file_dirs: vec![PathBuf::from("/etc/cutover/env")],
            hooks: true,
            exec_probes: true,
        }
    }
}

/// A spec this host's policy does not allow: which rule, and how to allow
/// it if that is wanted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by this host's policy ([policy] in the agent's config): {0}")]
pub struct Refused(pub String);

/// The uid a `run.user` stands for, if it can be told.
pub type ResolveUser = fn(&str) -> Option<u32>;

/// Resolves a user as the agent will when it starts the app.
pub fn resolve_user(user: &str) -> Option<u32> {
    crate::instance::lookup_user(user).ok().map(|(uid, _)| uid)
}

impl Policy {
    /// Checks the config itself.
    pub fn validate(&self) -> Result<(), String> {
        for s in &self.artifact_schemes {
            if !matches!(s.as_str(), "https" | "http" | "file") {
                return Err(format!(
                    "policy.artifact_schemes: `{s}` is not a scheme the agent fetches (https, http, file)"
                ));
            }
        }
        for (i, d) in self.env_file_dirs.iter().enumerate() {
            if !d.is_absolute() {
                return Err(format!(
                    "policy.env_file_dirs[{i}]: expected an absolute directory, found `{}`",
                    d.display()
                ));
            }
        }
        Ok(())
    }

    /// Whether this host runs `spec` with its artifact from `url`, the
    /// agent running as `agent_uid`.
    pub fn check(
        &self,
        spec: &ServiceSpec,
        url: &str,
        agent_uid: u32,
        resolve: ResolveUser,
    ) -> Result<(), Refused> {
        self.check_user(spec, agent_uid, resolve)?;
        self.check_artifact(url)?;
        self.check_env_files(spec)?;
        if !self.hooks {
            for name in [
                "before_start",
                "after_start",
                "validate",
                "pre_drain",
                "post_drain",
            ] {
                if spec.hooks.get(name).is_some() {
                    return Err(Refused(format!(
                        "hooks.{name}: hooks are not allowed on this host (policy.hooks = false)"
                    )));
                }
            }
        }
        if !self.exec_probes {
            for (role, p) in [
                ("startup", &spec.probes.startup),
                ("readiness", &spec.probes.readiness),
                ("liveness", &spec.probes.liveness),
            ] {
                if let Some(p) = p
                    && matches!(p.check, Check::Exec { .. })
                {
                    return Err(Refused(format!(
                        "probes.{role}.exec: exec probes are not allowed on this host (policy.exec_probes = false)"
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_user(
        &self,
        spec: &ServiceSpec,
        agent_uid: u32,
        resolve: ResolveUser,
    ) -> Result<(), Refused> {
        let uid = match &spec.run.user {
            None => Some(agent_uid),
            Some(u) => resolve(u),
        };
        if uid == Some(0) && !self.allow_root {
            return Err(Refused(match &spec.run.user {
                None => "run.user is unset, so the app, its hooks and exec probes would run as root (the agent's user): set run.user to an unprivileged user, or allow root with policy.allow_root = true".into(),
                Some(u) => format!(
                    "run.user `{u}` is root: apps may not run as root here (policy.allow_root = false)"
                ),
            }));
        }
        if let Some(u) = &spec.run.user {
            let listed = self.run_users.iter().any(|allowed| {
                allowed == "*"
                    || allowed == u
                    || (uid.is_some() && allowed.parse::<u32>().ok() == uid)
                    || resolve(allowed).is_some_and(|a| Some(a) == uid)
            });
            if !listed {
                return Err(Refused(format!(
                    "run.user `{u}` is not one of policy.run_users ({})",
                    self.run_users.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn check_artifact(&self, url: &str) -> Result<(), Refused> {
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        if !self.artifact_schemes.iter().any(|s| s == scheme) {
            return Err(Refused(format!(
                "artifact URL scheme `{scheme}` is not one of policy.artifact_schemes ({})",
                self.artifact_schemes.join(", ")
            )));
        }
        // A dot segment could climb out of an allowed prefix.
        let path = url.split_once("://").map_or("", |(_, rest)| rest);
        let path = path.split(['?', '#']).next().unwrap_or("");
        if path.split('/').any(|seg| seg == ".." || seg == ".") {
            return Err(Refused(
                "artifact URL has a `.` or `..` segment: give the artifact's own path".into(),
            ));
        }
        if !self.artifact_prefixes.is_empty()
            && !self.artifact_prefixes.iter().any(|p| url.starts_with(p))
        {
            return Err(Refused(format!(
                "artifact URL is not under one of policy.artifact_prefixes ({})",
                self.artifact_prefixes.join(", ")
            )));
        }
        Ok(())
    }

    fn check_env_files(&self, spec: &ServiceSpec) -> Result<(), Refused> {
        for (i, f) in spec.run.env_files.iter().enumerate() {
            // Where it really is: a link out of an allowed directory
            // counts as where it points. A file not there yet is judged by
            // its path (reading it fails later anyway).
            let real = std::fs::canonicalize(f).unwrap_or_else(|_| lexical(f));
            let inside = self
                .env_file_dirs
                .iter()
                .any(|d| real.starts_with(std::fs::canonicalize(d).unwrap_or_else(|_| lexical(d))));
            if !inside {
                return Err(Refused(format!(
                    "run.env_files[{i}] `{}` is not in one of policy.env_file_dirs ({})",
                    f.display(),
                    self.env_file_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// `p` with `.` and `..` resolved by name only.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra_run: &str, rest: &str) -> ServiceSpec {
        let text =
            format!("service = \"web\"\n{rest}\n[run]\ncommand = [\"bin/web\"]\n{extra_run}\n");
        cutover_common::service::parse_toml(&text).unwrap()
    }

    fn users(name: &str) -> Option<u32> {
        match name {
            "root" | "0" => Some(0),
            "web" | "1000" => Some(1000),
            "nobody" => Some(65534),
            _ => None,
        }
    }

    const URL: &str = "https://artifacts.example/web-1.tar.gz";

    #[test]
    fn by_default_apps_do_not_run_as_root() {
        let p = Policy::default();
        let e = p.check(&spec("", ""), URL, 0, users).unwrap_err();
        assert!(e.to_string().contains("run.user is unset"), "{e}");
        let e = p
            .check(&spec("user = \"root\"", ""), URL, 0, users)
            .unwrap_err();
        assert!(e.to_string().contains("is root"), "{e}");
        assert!(
            p.check(&spec("user = \"0\"", ""), URL, 1000, users)
                .is_err()
        );
        // An unprivileged user is fine; so is an unprivileged agent.
        p.check(&spec("user = \"web\"", ""), URL, 0, users).unwrap();
        p.check(&spec("", ""), URL, 1000, users).unwrap();
        let open = Policy {
            allow_root: true,
            ..Policy::default()
        };
        open.check(&spec("", ""), URL, 0, users).unwrap();
    }

    #[test]
    fn only_listed_users_when_a_list_is_given() {
        let p = Policy {
            run_users: vec!["web".into()],
            ..Policy::default()
        };
        p.check(&spec("user = \"web\"", ""), URL, 0, users).unwrap();
        p.check(&spec("user = \"1000\"", ""), URL, 0, users)
            .unwrap();
        let e = p
            .check(&spec("user = \"nobody\"", ""), URL, 0, users)
            .unwrap_err();
        assert!(e.to_string().contains("policy.run_users"), "{e}");
    }

    #[test]
    fn artifacts_come_only_from_allowed_schemes_and_prefixes() {
        let web = spec("user = \"web\"", "");
        let p = Policy::default();
        let e = p.check(&web, "file:///etc/shadow", 0, users).unwrap_err();
        assert!(e.to_string().contains("scheme `file`"), "{e}");
        let p = Policy {
            artifact_prefixes: vec!["https://artifacts.example/".into()],
            ..Policy::default()
        };
        p.check(&web, URL, 0, users).unwrap();
        assert!(p.check(&web, "http://127.0.0.1:22/x", 0, users).is_err());
        assert!(
            p.check(&web, "https://artifacts.example/../../x", 0, users)
                .is_err()
        );
        let files = Policy {
            artifact_schemes: vec!["file".into()],
            artifact_prefixes: vec!["file:///srv/artifacts/".into()],
            ..Policy::default()
        };
        files
            .check(&web, "file:///srv/artifacts/web.tgz", 0, users)
            .unwrap();
        assert!(
            files
                .check(&web, "file:///srv/artifacts/../../etc/shadow", 0, users)
                .is_err()
        );
    }

    #[test]
    fn env_files_only_from_allowed_directories_links_followed() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("env");
        std::fs::create_dir(&allowed).unwrap();
        std::fs::write(allowed.join("web.env"), "A=1\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", allowed.join("sneaky.env")).unwrap();
        let p = Policy {
            env_file_dirs: vec![allowed.clone()],
            ..Policy::default()
        };
        let with = |f: &Path| {
            spec(
                &format!("user = \"web\"\nenv_files = [\"{}\"]", f.display()),
                "",
            )
        };
        p.check(&with(&allowed.join("web.env")), URL, 0, users)
            .unwrap();
        for bad in [
            allowed.join("sneaky.env"),
            allowed.join("../web.env"),
            PathBuf::from("/etc/shadow"),
        ] {
            let e = p.check(&with(&bad), URL, 0, users).unwrap_err();
            assert!(e.to_string().contains("policy.env_file_dirs"), "{e}");
        }
    }

    #[test]
    fn hooks_and_exec_probes_can_be_turned_off() {
        let p = Policy {
            hooks: false,
            exec_probes: false,
            ..Policy::default()
        };
        let hooked = spec(
            "user = \"web\"",
            "[hooks.before_start]\ncommand = [\"/bin/cat\", \"/etc/shadow\"]",
        );
        assert!(
            p.check(&hooked, URL, 0, users)
                .unwrap_err()
                .to_string()
                .contains("hooks.before_start")
        );
        let probed = spec(
            "user = \"web\"",
            "[probes.readiness]\nexec = { command = [\"/bin/true\"] }",
        );
        assert!(
            p.check(&probed, URL, 0, users)
                .unwrap_err()
                .to_string()
                .contains("probes.readiness.exec")
        );
    }
}
