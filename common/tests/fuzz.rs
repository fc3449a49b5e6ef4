//! Property tests of the parsers anyone with a spec can feed: arbitrary
//! and mutated deployment specs, label lists and selectors never panic,
//! and every spec they accept survives the trip to an agent.
//!
//! Named `fuzz_*`: CI runs them with proptest's default 256 cases; for
//! minutes of fuzzing, `bench/fuzz.sh` (PROPTEST_CASES=...).

use cutover_common::deploy::DeploySpec;
use cutover_common::labels::{self, Selector};
use cutover_common::service::ServiceSpec;
use proptest::prelude::*;

const SPECS: &[&str] = &[
    include_str!("../../tests/specs/good/every-field-a.toml"),
    include_str!("../../tests/specs/good/every-field-b.toml"),
    include_str!("../../tests/specs/good/rolling.toml"),
];

/// Byte edits: (position, byte, 0 replace / 1 insert / 2 delete).
fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..12)
}

/// A good spec with `edits` applied, read as UTF-8 (lossily: specs
/// arrive as text).
fn mutate(base: &str, edits: &[(usize, u8, u8)]) -> String {
    String::from_utf8_lossy(&cutover_common::fuzz::mutate(
        base.as_bytes().to_vec(),
        edits,
    ))
    .into_owned()
}

fn check_spec(text: &str) {
    match DeploySpec::parse(text, "fuzz.toml") {
        Ok(spec) => {
            // What the agent gets: JSON, checked again there.
            let host = spec.service_spec();
            host.validate()
                .expect("an accepted spec is valid for the agent");
            let json = serde_json::to_vec(&host).unwrap();
            let back: ServiceSpec = serde_json::from_slice(&json).unwrap();
            assert_eq!(back, host);
            back.validate().unwrap();
        }
        Err(e) => {
            let lines = text.lines().count() + 1;
            assert!(e.line <= lines, "line {} of {lines}: {e}", e.line);
            assert!(!e.to_string().is_empty());
        }
    }
}

proptest! {
    #[test]
    fn fuzz_mutated_specs_parse_or_are_refused_with_a_place(which in 0..SPECS.len(), e in edits()) {
        check_spec(&mutate(SPECS[which], &e));
    }

    #[test]
    fn fuzz_arbitrary_text_as_a_spec_never_panics(text in "\\PC{0,400}") {
        check_spec(&text);
    }

    #[test]
    fn fuzz_spec_shaped_text_never_panics(
        key in "[a-z_.]{1,24}",
        value in prop_oneof![
            "\"[^\"\\\\]{0,40}\"".prop_map(|s| s),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            Just("\"100000000000years\"".to_string()),
            Just("18446744073709551615".to_string()),
        ],
    ) {
        for table in ["", "[swap]\n", "[strategy]\n", "[logs]\n", "[probes.readiness]\n", "[run]\n"] {
            let text = format!("{}\n{table}{key} = {value}\n", SPECS[2]);
            check_spec(&text);
        }
    }

    #[test]
    fn fuzz_labels_and_selectors_never_panic(s in "\\PC{0,80}") {
        if let Ok(l) = labels::parse(&s) {
            labels::check_all(&l).unwrap();
            prop_assert_eq!(labels::parse(&labels::format(&l)).unwrap(), l);
        }
        let _ = Selector::parse(&s);
    }
}
