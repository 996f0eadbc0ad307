//! Event id (sha256 of the NIP-01 serialization) and BIP-340 signatures.

use super::Event;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The NIP-01 canonical serialization `[0,pubkey,created_at,kind,tags,content]`.
/// serde_json escapes exactly the characters NIP-01 asks for (quote,
/// backslash and control characters) and leaves the rest as UTF-8.
pub(crate) fn canonical(ev: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + ev.content.len());
    out.extend_from_slice(b"[0,\"");
    out.extend_from_slice(ev.pubkey.as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(ev.created_at.to_string().as_bytes());
    out.push(b',');
    out.extend_from_slice(ev.kind.to_string().as_bytes());
    out.push(b',');
    // Serializing Vec<Vec<String>> and String cannot fail.
    serde_json::to_writer(&mut out, &ev.tags).expect("in-memory tags serialize");
    out.push(b',');
    serde_json::to_writer(&mut out, &ev.content).expect("in-memory content serializes");
    out.push(b']');
    out
}

/// Lowercase hex sha256 of the canonical serialization.
pub fn compute_id(ev: &Event) -> String {
    hex::encode(Sha256::digest(canonical(ev)))
}

fn secp() -> &'static secp256k1::Secp256k1<secp256k1::VerifyOnly> {
    static CTX: OnceLock<secp256k1::Secp256k1<secp256k1::VerifyOnly>> = OnceLock::new();
    CTX.get_or_init(secp256k1::Secp256k1::verification_only)
}

/// Parsed public keys a validation thread has met lately. Parsing one
/// (BIP-340's lift_x, a field square root) is a tenth of a verification on
/// these cores, and the same users and DVMs sign event after event.
const KEY_CACHE: usize = 1 << 16;

type KeyCache =
    std::collections::HashMap<[u8; 32], secp256k1::XOnlyPublicKey, foldhash::fast::RandomState>;

thread_local! {
    static KEYS: std::cell::RefCell<KeyCache> = std::cell::RefCell::new(KeyCache::default());
}

/// `pk` parsed, through this thread's cache; `None` if it is not a point.
fn public_key(pk: &[u8; 32]) -> Option<secp256k1::XOnlyPublicKey> {
    KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        if let Some(k) = keys.get(pk) {
            return Some(*k);
        }
        let k = secp256k1::XOnlyPublicKey::from_byte_array(pk).ok()?;
        if keys.len() >= KEY_CACHE {
            keys.clear();
        }
        keys.insert(*pk, k);
        Some(k)
    })
}

/// BIP-340 schnorr signature of `id` by `pubkey`. Call after the id check.
pub fn verify_signature(ev: &Event) -> bool {
    let (mut sig, mut msg, mut pk) = ([0u8; 64], [0u8; 32], [0u8; 32]);
    if hex::decode_to_slice(&ev.sig, &mut sig).is_err()
        || hex::decode_to_slice(&ev.id, &mut msg).is_err()
        || hex::decode_to_slice(&ev.pubkey, &mut pk).is_err()
    {
        return false;
    }
    let Some(pk) = public_key(&pk) else {
        return false;
    };
    let sig = secp256k1::schnorr::Signature::from_byte_array(sig);
    secp().verify_schnorr(&sig, &msg, &pk).is_ok()
}
