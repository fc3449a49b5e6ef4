//! The coordinator's config file, mutated: it loads or names what is
//! wrong, never panics. `fuzz_*`: see bench/fuzz.sh for long runs.

use std::io::Write;

use cutover_common::fuzz::mutate;
use cutover_coordinator::config::CoordinatorConfig;
use proptest::prelude::*;

proptest! {
    #[test]
    fn fuzz_coordinator_config_files_load_or_name_the_problem(
        e in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..16),
    ) {
        let base = include_str!("../../packaging/examples/coordinator.toml");
        let text = mutate(base.as_bytes().to_vec(), &e);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&text).unwrap();
        if let Err(err) = CoordinatorConfig::load(Some(f.path())) {
            prop_assert!(!err.to_string().is_empty());
        }
    }
}
