//! Typed config loading for both binaries: defaults < TOML file <
//! environment variables, with errors that name the file (or variable), the
//! key and what was expected.
//!
//! Each binary has one config struct with `#[serde(deny_unknown_fields)]`
//! and a `validate()`; this module does the loading and the error wording.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::UncasedStr;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A config that could not be loaded or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file given on the command line does not exist.
    #[error("config file {path} does not exist")]
    Missing { path: PathBuf },
    /// One or more problems in the sources, each naming origin and key.
    #[error("{}", .problems.join("\n"))]
    Invalid { problems: Vec<String> },
}

impl ConfigError {
    /// A single validation problem: `origin: key: expected`.
    pub fn invalid(origin: &Origin, key: &str, expected: impl fmt::Display) -> Self {
        ConfigError::Invalid {
            problems: vec![format!("{origin}: `{key}`: {expected}")],
        }
    }
}

/// Where a config came from, for validation messages.
#[derive(Debug, Clone, Default)]
pub struct Origin(pub Option<PathBuf>);

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(p) => write!(f, "{}", p.display()),
            None => f.write_str("config (defaults and environment)"),
        }
    }
}

/// Loads `T` from its defaults, then `path` (required to exist when
/// `explicit`; otherwise read only if present), then environment variables
/// `PREFIX<KEY>` for the top-level keys in `env_keys` (nested keys with
/// `__`, e.g. `CUTOVER_LIMITS__MAX_MESSAGE_BYTES`).
pub fn load<T>(
    path: &Path,
    explicit: bool,
    env_prefix: &str,
    env_keys: &'static [&'static str],
) -> Result<(T, Origin), ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    let mut origin = Origin(None);
    if path.exists() {
        fig = fig.merge(Toml::file_exact(path));
        origin = Origin(Some(path.to_path_buf()));
    } else if explicit {
        return Err(ConfigError::Missing { path: path.into() });
    }
    let env = Env::prefixed(env_prefix)
        .split("__")
        .filter(move |k: &UncasedStr| {
            let key = k.as_str().to_ascii_lowercase();
            let top = key
                .split('.')
                .next()
                .unwrap_or_default()
                .split("__")
                .next()
                .unwrap_or_default();
            env_keys.contains(&top)
        });
    fig = fig.merge(env);
    match fig.extract::<T>() {
        Ok(v) => Ok((v, origin)),
        Err(e) => Err(describe(e)),
    }
}

fn describe(err: figment::Error) -> ConfigError {
    let problems = err
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let origin = match &e.metadata {
                Some(md) => match &md.source {
                    Some(figment::Source::File(p)) => p.display().to_string(),
                    _ if !e.path.is_empty() && md.name.contains("environment") => {
                        let profile = e.profile.clone().unwrap_or_default();
                        format!("environment variable {}", md.interpolate(&profile, &e.path))
                    }
                    _ => md.name.to_string(),
                },
                None => "config".into(),
            };
            let what = e.kind.to_string();
            if key.is_empty() {
                format!("{origin}: {what}")
            } else {
                format!("{origin}: `{key}`: {what}")
            }
        })
        .collect();
    ConfigError::Invalid { problems }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        port: u16,
        name: String,
    }

    impl Default for Cfg {
        fn default() -> Self {
            Self {
                port: 1,
                name: "x".into(),
            }
        }
    }

    fn load_text(text: &str) -> Result<Cfg, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        load::<Cfg>(&p, true, "CUTOVER_CFGTEST_", &["port", "name"]).map(|(c, _)| c)
    }

    #[test]
    fn a_good_file_overrides_defaults() {
        let c = load_text("port = 8080").unwrap();
        assert_eq!((c.port, c.name.as_str()), (8080, "x"));
    }

    #[test]
    fn a_wrong_type_names_the_file_the_key_and_the_expectation() {
        let err = load_text("port = \"eighty\"").unwrap_err().to_string();
        assert!(err.contains("c.toml"), "{err}");
        assert!(err.contains("`port`"), "{err}");
        assert!(err.contains("expected"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let err = load_text("prot = 1").unwrap_err().to_string();
        assert!(err.contains("prot"), "{err}");
    }

    #[test]
    fn a_syntax_error_names_the_file() {
        let err = load_text("port = = 1").unwrap_err().to_string();
        assert!(err.contains("c.toml"), "{err}");
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let err = load::<Cfg>(Path::new("/nonexistent/c.toml"), true, "X_", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Missing { .. }));
    }
}
