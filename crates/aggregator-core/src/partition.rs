//! Which ingest shard owns a machine: FNV-1a (32 bit) over the machine id's bytes, mod N.
//!
//! This is the function NATS applies for a `{{partition(N,1)}}` subject mapping, so a broker
//! that partitions (`machines.*.scrap` → `shard.{{partition(N,1)}}.machines.{{wildcard(1)}}.scrap`)
//! and a shard that drops other shards' machines itself agree on every machine. The agreement
//! is pinned against a real nats-server in `tests/nats_partition.rs`.

const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// FNV-1a, 32 bit, of `bytes` (xor each byte in, then multiply by the FNV prime).
pub const fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut hash = FNV_OFFSET_BASIS;
    let mut i = 0;
    // A `while` loop keeps the function `const`, so shard tables can be built at compile time.
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    hash
}

/// The shard (`0..shard_count`) that owns `machine_id`: `fnv1a32(id) mod shard_count`.
///
/// A `shard_count` of 0 is treated as 1 (everything on shard 0) rather than dividing by zero;
/// settings validation refuses 0 before this is ever reached.
pub const fn shard_of(machine_id: &str, shard_count: u32) -> u32 {
    let n = if shard_count == 0 { 1 } else { shard_count };
    fnv1a32(machine_id.as_bytes()) % n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn published_fnv1a32_test_vectors() {
        // Reference values of the FNV specification's test suite.
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn shard_is_the_hash_mod_n() {
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0);
        // fnv1a32("a") = 0xe40c292c = 3826002220; mod 3 = 1, mod 7 = 5.
        assert_eq!(shard_of("a", 3), 1);
        assert_eq!(shard_of("a", 7), 5);
        // Bytes, not chars: a multi-byte id hashes its UTF-8 encoding.
        assert_eq!(shard_of("Ä", 1000), fnv1a32("Ä".as_bytes()) % 1000);
    }

    proptest! {
        #[test]
        fn every_machine_lands_on_exactly_one_valid_shard(id in "\\PC{0,40}", n in 1_u32..64) {
            let k = shard_of(&id, n);
            prop_assert!(k < n);
            prop_assert_eq!(k, fnv1a32(id.as_bytes()) % n);
        }

        #[test]
        fn a_single_byte_change_changes_the_hash(id in proptest::collection::vec(any::<u8>(), 1..40), at in any::<prop::sample::Index>(), flip in 1_u8..=255) {
            // FNV-1a's last step is a bijection per byte, so differing inputs of equal length
            // that differ in one byte never collide.
            let mut other = id.clone();
            let i = at.index(id.len());
            other[i] ^= flip;
            prop_assert_ne!(fnv1a32(&id), fnv1a32(&other));
        }
    }
}
