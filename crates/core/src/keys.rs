//! Fixed-size keys of the hot path — public keys and event-id prefixes —
//! their hex forms, and the hash maps keyed by them.
//!
//! Every processed event is hex-decoded and hashed a few times, so this is
//! where a backfill spends much of its CPU: table-driven hex and a fast
//! (seeded, non-cryptographic) hasher instead of SipHash.

use std::collections::{HashMap, HashSet};

/// A public key (or any 32-byte hex field) as bytes.
pub type Pubkey = [u8; 32];

/// Hash maps and sets of the hot path (foldhash: fast, per-process seed).
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// Value of a hex digit (either case), or 0xff.
const fn unhex_table() -> [u8; 256] {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
}

const UNHEX: [u8; 256] = unhex_table();
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Decodes `2 * out.len()` hex digits; false on any non-hex byte or a
/// length mismatch.
fn unhex_into(hex: &[u8], out: &mut [u8]) -> bool {
    if hex.len() != 2 * out.len() {
        return false;
    }
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (hi, lo) = (UNHEX[pair[0] as usize], UNHEX[pair[1] as usize]);
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    bad & 0xf0 == 0
}

/// Parses 64 hex characters.
pub fn hex32(s: &str) -> Option<Pubkey> {
    let mut out = [0u8; 32];
    unhex_into(s.as_bytes(), &mut out).then_some(out)
}

/// The 128-bit prefix of a 64-hex-digit event id: the key of
/// processing-side deduplication (a collision needs ~2^64 events). `None`
/// unless the whole id is hex.
pub fn id_key(id: &str) -> Option<u128> {
    let b = id.as_bytes();
    let mut head = [0u8; 16];
    let mut tail = [0u8; 16];
    (b.len() == 64 && unhex_into(&b[..32], &mut head) && unhex_into(&b[32..], &mut tail))
        .then(|| u128::from_be_bytes(head))
}

/// Lowercase hex of 32 bytes.
pub fn hex_of(pk: &Pubkey) -> String {
    let mut s = String::with_capacity(64);
    for b in pk {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0x0f)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects() {
        let text = "00ff10ab".repeat(8);
        let pk = hex32(&text).unwrap();
        assert_eq!(pk[..4], [0x00, 0xff, 0x10, 0xab]);
        assert_eq!(hex_of(&pk), text);
        assert_eq!(hex32(&text.to_uppercase()), Some(pk));
        assert_eq!(hex32(&text[..62]), None);
        assert_eq!(hex32(&format!("{}g", &text[..63])), None);
        assert_eq!(hex32(&format!("{}é", &text[..62])), None);
        assert_eq!(
            id_key(&text),
            Some(u128::from_be_bytes(pk[..16].try_into().unwrap()))
        );
        assert_eq!(id_key(&format!("{}z", &text[..63])), None);
        assert_eq!(hex::encode(pk), hex_of(&pk));
    }
}
