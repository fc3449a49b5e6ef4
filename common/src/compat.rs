//! Agents and coordinators of different versions in one fleet.
//!
//! Fleets upgrade the coordinator first and agents over days. Three rules
//! keep them working together:
//!
//! - **Capabilities.** An agent announces in `Hello` what it can do beyond
//!   the baseline (`AGENT_CAPABILITIES`); one that announces nothing is an
//!   agent from before capabilities existed, with the baseline only.
//! - **New spec fields are registered** in `ADDED_FIELDS` with the
//!   capability an agent needs to honour them. The coordinator leaves such a
//!   field out of the spec it sends to an agent without that capability when
//!   the field is at its default, and refuses the deployment, naming the
//!   hosts, when the spec sets it.
//! - **Unknown fields are tolerated** by the agent (`decode_tolerant`): a
//!   field it does not know is skipped and named in its log, so a field
//!   someone forgot to register does not stop a fleet.
//!
//! Protobuf messages follow protobuf's own rule: new fields get new numbers,
//! and an older peer ignores them.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::service::ServiceSpec;

/// What this agent can do beyond the baseline.
pub const AGENT_CAPABILITIES: &[&str] = &[
    // Unknown service-spec fields are skipped, not refused.
    "spec.tolerant",
    // `[drain] wait_for`, `balancer_fall`, `balancer_timeout`: a drain
    // waits for the balancers checking the readiness endpoint.
    "drain.balancers",
    // `LogsRequest`: a service's output streamed over the session.
    "logs",
    // `[run] output = "journal"`.
    "run.journal",
];

/// `AGENT_CAPABILITIES` as owned strings (what this version's agent sends).
pub fn current() -> Vec<String> {
    AGENT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
}

/// Service-spec fields newer than the baseline (JSON paths), each with the
/// capability an agent needs to honour it.
pub const ADDED_FIELDS: &[(&str, &str)] = &[
    ("drain.wait_for", "drain.balancers"),
    ("drain.balancer_fall", "drain.balancers"),
    ("drain.balancer_timeout", "drain.balancers"),
    ("run.output", "run.journal"),
];

/// A field set in a spec that an agent cannot honour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet {
    pub field: &'static str,
    pub capability: &'static str,
}

fn defaults() -> Value {
    let minimal = crate::service::parse_toml("service = \"x\"\n[run]\ncommand = [\"x\"]\n")
        .expect("the minimal spec parses");
    serde_json::to_value(minimal).expect("serializable")
}

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn has(caps: &[String], c: &str) -> bool {
    caps.iter().any(|x| x == c)
}

/// The fields `spec` sets (away from their defaults) that an agent with
/// `caps` cannot honour.
pub fn unmet(spec: &ServiceSpec, caps: &[String]) -> Vec<Unmet> {
    if ADDED_FIELDS.iter().all(|(_, c)| has(caps, c)) {
        return Vec::new();
    }
    let (v, d) = (
        serde_json::to_value(spec).expect("serializable"),
        defaults(),
    );
    ADDED_FIELDS
        .iter()
        .filter(|(f, c)| !has(caps, c) && at(&v, f) != at(&d, f))
        .map(|&(field, capability)| Unmet { field, capability })
        .collect()
}

/// `spec` as JSON for an agent with `caps`: fields it cannot know are left
/// out (they must be at their defaults: see `unmet`).
pub fn spec_json_for(spec: &ServiceSpec, caps: &[String]) -> Vec<u8> {
    let mut v = serde_json::to_value(spec).expect("serializable");
    for (field, c) in ADDED_FIELDS {
        if has(caps, c) {
            continue;
        }
        let (parent, key) = field.rsplit_once('.').unwrap_or(("", field));
        let obj = if parent.is_empty() {
            Some(&mut v)
        } else {
            parent.split('.').try_fold(&mut v, |v, k| v.get_mut(k))
        };
        if let Some(Value::Object(m)) = obj {
            m.remove(key);
        }
    }
    serde_json::to_vec(&v).expect("serializable")
}

/// Decodes JSON, skipping object fields `T` does not know (named in the
/// second value, as paths) instead of refusing the whole message. Anything
/// else wrong (a wrong type, an unknown enum variant, a missing field) is
/// still an error, with its path.
pub fn decode_tolerant<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, Vec<String>), String> {
    let mut v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut skipped = Vec::new();
    // Each round removes one unknown field; a message has a bounded number.
    for _ in 0..256 {
        let err = match serde_path_to_error::deserialize::<_, T>(&v) {
            Ok(t) => return Ok((t, skipped)),
            Err(e) => e,
        };
        let msg = err.inner().to_string();
        let segments: Vec<String> = err
            .path()
            .iter()
            .map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => format!("[{index}]"),
                serde_path_to_error::Segment::Map { key } => key.clone(),
                serde_path_to_error::Segment::Enum { variant } => variant.clone(),
                serde_path_to_error::Segment::Unknown => "?".into(),
            })
            .collect();
        let Some(name) = msg
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
        else {
            return Err(format!("{}: {msg}", err.path()));
        };
        // The path ends at the unknown key, except inside a flattened
        // struct, where it ends at the object holding it.
        let parent = match segments.last() {
            Some(last) if last == name => &segments[..segments.len() - 1],
            _ => &segments[..],
        };
        let mut obj = &mut v;
        for s in parent {
            obj = match (s.strip_prefix('[').and_then(|i| i.strip_suffix(']')), obj) {
                (Some(i), Value::Array(a)) => {
                    match i.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                        Some(x) => x,
                        None => return Err(format!("{}: {msg}", err.path())),
                    }
                }
                (None, Value::Object(m)) => match m.get_mut(s) {
                    Some(x) => x,
                    None => return Err(format!("{}: {msg}", err.path())),
                },
                _ => return Err(format!("{}: {msg}", err.path())),
            };
        }
        let removed = match obj {
            Value::Object(m) => m.remove(name).is_some(),
            _ => false,
        };
        if !removed {
            return Err(format!("{}: {msg}", err.path()));
        }
        let mut path = parent.join(".").replace(".[", "[");
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(name);
        skipped.push(path);
    }
    Err("too many unknown fields".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> ServiceSpec {
        crate::service::parse_toml(&format!(
            "service = \"web\"\n[run]\ncommand = [\"bin/web\"]\n{extra}"
        ))
        .unwrap()
    }

    fn none() -> Vec<String> {
        Vec::new()
    }

    fn all() -> Vec<String> {
        AGENT_CAPABILITIES.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_new_field_at_its_default_is_left_out_for_an_older_agent_and_set_it_is_refused() {
        let plain = spec("");
        assert!(unmet(&plain, &none()).is_empty());
        let old: Value = serde_json::from_slice(&spec_json_for(&plain, &none())).unwrap();
        assert!(old["drain"].get("wait_for").is_none(), "{old}");
        assert!(old["drain"].get("deregistration_delay").is_some(), "{old}");
        let new: Value = serde_json::from_slice(&spec_json_for(&plain, &all())).unwrap();
        assert!(new["drain"].get("wait_for").is_some(), "{new}");
        let set = spec("[drain]\nwait_for = \"delay\"\nbalancer_fall = 5\n");
        assert_eq!(
            unmet(&set, &none()),
            vec![
                Unmet {
                    field: "drain.wait_for",
                    capability: "drain.balancers"
                },
                Unmet {
                    field: "drain.balancer_fall",
                    capability: "drain.balancers"
                }
            ]
        );
        assert!(unmet(&set, &all()).is_empty());
    }

    #[test]
    fn every_registered_field_exists_and_every_capability_is_announced() {
        let d = defaults();
        for (f, c) in ADDED_FIELDS {
            assert!(at(&d, f).is_some(), "{f} is not a service spec field");
            assert!(AGENT_CAPABILITIES.contains(c), "{c} is not announced");
        }
    }

    #[test]
    fn unknown_fields_are_skipped_and_named_and_other_errors_still_refuse() {
        let mut v = serde_json::to_value(spec("[[listen]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n[probes.readiness]\nhttp = { listener = \"http\" }\n")).unwrap();
        v["from_the_future"] = Value::Bool(true);
        v["drain"]["new_knob"] = 3.into();
        v["listen"][0]["fancy"] = "yes".into();
        v["probes"]["readiness"]["jitter"] = "1s".into();
        let (s, skipped): (ServiceSpec, _) =
            decode_tolerant(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(s.service, "web");
        let mut skipped = skipped;
        skipped.sort();
        assert_eq!(
            skipped,
            [
                "drain.new_knob",
                "from_the_future",
                "listen[0].fancy",
                "probes.readiness.jitter"
            ]
        );
        // A wrong type is not a new field.
        v["drain"]["deregistration_delay"] = 5.into();
        let e = decode_tolerant::<ServiceSpec>(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.contains("drain.deregistration_delay"), "{e}");
    }
}
