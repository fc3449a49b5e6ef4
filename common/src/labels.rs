//! Host labels (`role=web,zone=a`) and label selectors (`role=web,zone!=b`).

use std::collections::BTreeMap;
use std::fmt;

/// Labels on a host: sorted so output is stable.
pub type Labels = BTreeMap<String, String>;

/// A label key, value or selector that is not well formed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("label `{item}` is not of the form key=value")]
    NotKeyValue { item: String },
    #[error(
        "label key `{key}` is invalid: expected 1-63 characters of a-z, 0-9, `-`, `_`, `.`, `/`, starting with a letter or digit"
    )]
    BadKey { key: String },
    #[error(
        "label value `{value}` for key `{key}` is invalid: expected at most 63 characters of a-z, A-Z, 0-9, `-`, `_`, `.`"
    )]
    BadValue { key: String, value: String },
    #[error("label `{key}` is given twice")]
    Duplicate { key: String },
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 63
        && k.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_./".contains(c))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Checks one key/value pair.
pub fn check(key: &str, value: &str) -> Result<(), LabelError> {
    if !valid_key(key) {
        return Err(LabelError::BadKey { key: key.into() });
    }
    if !valid_value(value) {
        return Err(LabelError::BadValue {
            key: key.into(),
            value: value.into(),
        });
    }
    Ok(())
}

/// Checks every pair of a label map.
pub fn check_all(labels: &Labels) -> Result<(), LabelError> {
    labels.iter().try_for_each(|(k, v)| check(k, v))
}

/// Parses `k=v,k2=v2` (empty string: no labels).
pub fn parse(s: &str) -> Result<Labels, LabelError> {
    let mut out = Labels::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| LabelError::NotKeyValue { item: item.into() })?;
        let (k, v) = (k.trim(), v.trim());
        check(k, v)?;
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(LabelError::Duplicate { key: k.into() });
        }
    }
    Ok(out)
}

/// `k=v,k2=v2`, for tables.
pub fn format(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value`
    Equals(String, String),
    /// `key!=value` (also true when the key is absent)
    NotEquals(String, String),
    /// `key`: the key is present with any value
    Exists(String),
}

/// A conjunction of requirements: `role=web,zone!=b,canary`. The empty
/// selector matches every host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(pub Vec<Requirement>);

impl Selector {
    /// Parses a selector string.
    pub fn parse(s: &str) -> Result<Self, LabelError> {
        let mut reqs = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let req = if let Some((k, v)) = item.split_once("!=") {
                check(k.trim(), v.trim())?;
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = item.split_once('=') {
                check(k.trim(), v.trim())?;
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else {
                check(item, "")?;
                Requirement::Exists(item.into())
            };
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// Whether a host with these labels is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|r| match r {
                Requirement::Equals(k, v) => format!("{k}={v}"),
                Requirement::NotEquals(k, v) => format!("{k}!={v}"),
                Requirement::Exists(k) => k.clone(),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_format_round_trip() {
        let l = parse("role=web, zone=eu-1").unwrap();
        assert_eq!(l.get("role").map(String::as_str), Some("web"));
        assert_eq!(format(&l), "role=web,zone=eu-1");
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn malformed_labels_say_what_is_wrong() {
        assert_eq!(
            parse("role").unwrap_err(),
            LabelError::NotKeyValue {
                item: "role".into()
            }
        );
        assert!(matches!(
            parse("Role=web").unwrap_err(),
            LabelError::BadKey { .. }
        ));
        assert!(matches!(
            parse("role=w b").unwrap_err(),
            LabelError::BadValue { .. }
        ));
        assert!(matches!(
            parse("a=1,a=2").unwrap_err(),
            LabelError::Duplicate { .. }
        ));
    }

    #[test]
    fn selectors_match_equality_inequality_and_presence() {
        let web = parse("role=web,zone=a").unwrap();
        let db = parse("role=db").unwrap();
        let s = Selector::parse("role=web,zone!=b").unwrap();
        assert!(s.matches(&web));
        assert!(!s.matches(&db));
        assert!(Selector::parse("zone").unwrap().matches(&web));
        assert!(!Selector::parse("zone").unwrap().matches(&db));
        assert!(Selector::parse("").unwrap().matches(&db));
        assert_eq!(s.to_string(), "role=web,zone!=b");
    }
}
