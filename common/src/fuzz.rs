//! Helpers of the `fuzz_*` property tests of every crate (bench/fuzz.sh).

/// `base` with byte `edits` applied: (position, byte, what) where what is
/// 0 to replace the byte at the position (modulo the length), 1 to insert
/// before it, anything else to delete it. A good input made a little bad
/// finds more than random bytes do.
pub fn mutate(mut base: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(pos, byte, what) in edits {
        if base.is_empty() {
            base.push(byte);
            continue;
        }
        let i = pos % base.len();
        match what {
            0 => base[i] = byte,
            1 => base.insert(i, byte),
            _ => {
                base.remove(i);
            }
        }
    }
    base
}

#[cfg(test)]
mod tests {
    #[test]
    fn edits_replace_insert_and_delete() {
        let out = super::mutate(b"abc".to_vec(), &[(0, b'x', 0), (4, b'y', 1), (2, 0, 2)]);
        assert_eq!(out, b"xyc");
    }
}
