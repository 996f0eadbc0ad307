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

/// BIP-340 schnorr signature of `id` by `pubkey`. Call after the id check.
pub fn verify_signature(ev: &Event) -> bool {
    let (Ok(sig), Ok(msg), Ok(pk)) = (
        hex::decode(&ev.sig),
        hex::decode(&ev.id),
        hex::decode(&ev.pubkey),
    ) else {
        return false;
    };
    let (Ok(sig), Ok(pk)) = (
        secp256k1::schnorr::Signature::from_slice(&sig),
        secp256k1::XOnlyPublicKey::from_slice(&pk),
    ) else {
        return false;
    };
    secp().verify_schnorr(&sig, &msg, &pk).is_ok()
}
