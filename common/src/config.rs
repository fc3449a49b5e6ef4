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
    examples: &'static str,
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
    let mut problems = unknown_variables(std::env::vars_os(), env_prefix, env_keys);
    match fig.extract::<T>() {
        Ok(v) if problems.is_empty() => Ok((v, origin)),
        Ok(_) => Err(ConfigError::Invalid { problems }),
        Err(e) => {
            let ConfigError::Invalid { problems: more } = describe(e, env_prefix, examples) else {
                unreachable!("describe gives Invalid")
            };
            problems.extend(more);
            Err(ConfigError::Invalid { problems })
        }
    }
}

/// Each line of a TOML text (commented-out ones too when `commented`)
/// with the table it is under: (line index, table, the line trimmed).
fn under_tables(text: &str, commented: bool) -> impl Iterator<Item = (usize, String, &str)> {
    let mut table = String::new();
    text.lines().enumerate().filter_map(move |(i, line)| {
        let mut t = line.trim();
        if commented {
            t = t.trim_start_matches('#').trim();
        }
        if let Some(h) = t.strip_prefix('[') {
            table = h
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            return None;
        }
        Some((i, table.clone(), t))
    })
}

/// The `key = value` line of `path` (`limits.max_connections`) in `text`:
/// (line index, the line trimmed).
fn find_key<'a>(text: &'a str, path: &[String], commented: bool) -> Option<(usize, &'a str)> {
    let (key, tables) = path.split_last()?;
    let want_table = tables.join(".");
    under_tables(text, commented)
        .filter(|(_, table, _)| *table == want_table)
        .find(|(_, _, t)| {
            t.split_once('=')
                .is_some_and(|(k, _)| k.trim().trim_matches('"') == key)
        })
        .map(|(i, _, t)| (i, t))
}

/// The line and column of `path` (`limits.max_connections`) in the TOML
/// file at `file`: the key's line under its table. None when not found
/// (a value set inline, or a key missing altogether).
fn locate(file: &Path, path: &[String]) -> Option<(usize, usize)> {
    let text = std::fs::read_to_string(file).ok()?;
    let (i, _) = find_key(&text, path, false)?;
    let line = text.lines().nth(i)?;
    Some((i + 1, line.len() - line.trim_start().len() + 1))
}

/// serde's Rust type names in an error as a person reads them.
fn plain_types(what: &str) -> String {
    let mut out = what.to_string();
    for (rust, plain) in [
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number (0 to 4294967295)"),
        ("expected u16", "expected a whole number (0 to 65535)"),
        ("expected u8", "expected a whole number (0 to 255)"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a string", "expected a string (in quotes)"),
    ] {
        if let Some(at) = out.find(rust)
            && !out[at + rust.len()..].starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            out.replace_range(at..at + rust.len(), plain);
        }
    }
    out
}

/// Variables with Cutover's prefixes that are not settings: the CLI's,
/// the logging filter, those Cutover sets for apps, hooks and switch
/// commands, the agent's (for the coordinator) and the test harness's.
const NOT_SETTINGS: &[&str] = &[
    "CUTOVER_LOG",
    "CUTOVER_CONFIG",
    "CUTOVER_CLI_CONFIG",
    "CUTOVER_COORDINATOR",
    "CUTOVER_CA",
    "CUTOVER_IDENTITY",
    "CUTOVER_JOIN_TOKEN",
    "CUTOVER_SERVICE",
    "CUTOVER_VERSION",
    "CUTOVER_RELEASE",
    "CUTOVER_RELEASE_DIR",
    "CUTOVER_INSTANCE",
    "CUTOVER_INSTANCE_PID",
    "CUTOVER_DEPLOYMENT",
    "CUTOVER_HOOK",
    "CUTOVER_HOOK_OF",
    "CUTOVER_LIVE_GROUP",
    "CUTOVER_OLD_GROUP",
    "CUTOVER_HOSTS",
    "CUTOVER_REQUIRE_REAL",
    "CUTOVER_BIN_DIR",
    "CUTOVER_PREVIOUS_BIN_DIR",
    "CUTOVER_AGENT_CONFIG",
    "CUTOVER_AGENT_BIN",
];

/// Prefixes of variables that are not settings of the binary loading
/// with `prefix` (the agent's own settings, for the coordinator; tests').
fn other_prefixes(prefix: &str) -> &'static [&'static str] {
    if prefix == "CUTOVER_" {
        &["CUTOVER_AGENT_", "CUTOVER_TEST_"]
    } else {
        &["CUTOVER_TEST_"]
    }
}

/// Environment variables that look like settings (`prefix` + a key) but
/// name none: a typo there would otherwise be ignored without a word.
fn unknown_variables(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    prefix: &str,
    keys: &[&str],
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, _) in vars {
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        if NOT_SETTINGS.contains(&name)
            || other_prefixes(prefix).iter().any(|p| name.starts_with(p))
        {
            continue;
        }
        let top = rest
            .split("__")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if keys.contains(&top.as_str()) {
            continue;
        }
        let near = keys
            .iter()
            .map(|k| (strsim::levenshtein(k, &top), k))
            .filter(|(d, _)| *d <= 3)
            .min();
        let hint = match near {
            Some((_, k)) => format!("did you mean {prefix}{}? ", k.to_ascii_uppercase()),
            None => String::new(),
        };
        let all: Vec<String> = keys
            .iter()
            .map(|k| format!("{prefix}{}", k.to_ascii_uppercase()))
            .collect();
        out.push(format!(
            "environment variable {name}: not a setting; {hint}(settings: {})",
            all.join(", ")
        ));
    }
    out.sort();
    out
}

/// The line setting `path` in `examples` (the shipped example config,
/// where every key is set or shown commented out), as a valid value to
/// follow: `listen = "0.0.0.0:7443"`.
fn example(examples: &str, path: &[String]) -> Option<String> {
    let (_, t) = find_key(examples, path, true)?;
    let (k, v) = t.split_once('=')?;
    (!v.trim().is_empty()).then(|| format!("{} = {}", k.trim(), v.trim()))
}

fn describe(err: figment::Error, env_prefix: &str, examples: &str) -> ConfigError {
    let problems = err
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let origin = match &e.metadata {
                Some(md) => match &md.source {
                    Some(figment::Source::File(p)) => match locate(p, &e.path) {
                        Some((line, col)) => format!("{}:{line}:{col}", p.display()),
                        None => p.display().to_string(),
                    },
                    _ if !e.path.is_empty() && md.name.contains("environment") => {
                        // The variable as it is set: prefix, key, `__`
                        // between nested keys.
                        format!(
                            "environment variable {env_prefix}{}",
                            e.path.join("__").to_ascii_uppercase()
                        )
                    }
                    _ => md.name.to_string(),
                },
                None => "config".into(),
            };
            let mut what = plain_types(&e.kind.to_string());
            if let Some(eg) = example(examples, &e.path) {
                what = format!("{what}; for example `{eg}`");
            }
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
        load::<Cfg>(
            &p,
            true,
            "CUTOVER_CFGTEST_",
            &["port", "name"],
            "port = 7443\n",
        )
        .map(|(c, _)| c)
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
    fn a_wrong_value_in_a_file_is_named_by_line_and_column_in_plain_words() {
        let err = load_text("name = \"a\"\n  port = 99999\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.toml:2:3: `port`"), "{err}");
        assert!(
            err.contains("expected a whole number (0 to 65535)"),
            "{err}"
        );
        assert!(!err.contains("u16"), "{err}");
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
    fn a_mistyped_variable_is_refused_with_a_suggestion_and_others_are_left_alone() {
        let vars = [
            ("CUTOVER_HOST_TIMEOT", "45s"),
            ("CUTOVER_LOG", "debug"),
            ("CUTOVER_AGENT_COORDINATOR", "https://x"),
            ("CUTOVER_LIMITS__MAX_MESSAGE_BYTES", "1"),
            ("CUTOVER_ZZZ", "1"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.into(), v.into()));
        let got = unknown_variables(
            vars.into_iter(),
            "CUTOVER_",
            &["host_timeout", "limits", "listen"],
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with(
                "environment variable CUTOVER_HOST_TIMEOT: not a setting; did you mean CUTOVER_HOST_TIMEOUT?"
            ),
            "{got:?}"
        );
        assert!(got[1].starts_with("environment variable CUTOVER_ZZZ: not a setting; (settings: CUTOVER_HOST_TIMEOUT, CUTOVER_LIMITS, CUTOVER_LISTEN)"), "{got:?}");
    }

    #[test]
    fn a_bad_value_in_a_variable_is_named_with_its_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "").unwrap();
        // figment's Jail sets the variable for this closure only.
        let mut err = String::new();
        figment::Jail::expect_with(|jail| {
            jail.set_env("CUTOVER_CFGTEST2_PORT", "eighty");
            err = load::<Cfg>(&p, true, "CUTOVER_CFGTEST2_", &["port", "name"], "")
                .unwrap_err()
                .to_string();
            Ok(())
        });
        assert!(
            err.contains("environment variable CUTOVER_CFGTEST2_PORT"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let err = load::<Cfg>(Path::new("/nonexistent/c.toml"), true, "X_", &[], "").unwrap_err();
        assert!(matches!(err, ConfigError::Missing { .. }));
    }
}
