//! Stable resource ids: the same identifier always gives the same id, so a replayed message
//! addresses the resources it made the first time. A UUID (version 8, "custom") made of the
//! first 16 bytes of SHA-256 over the resource type and its identity key.
//!
//! SHA-256 (not a faster non-cryptographic hash) because a sender who could make two keys
//! collide could make one patient's resource overwrite another's. RustCrypto's `sha2` rather
//! than `ring`: 123 ns against 232 ns a short key here (both use the CPU's SHA instructions;
//! ring's per-call set-up is the difference), and an ADT^A01 hashes thirteen.

/// A stable id, kept inline (no allocation) as the Bundle's reference to it:
/// `urn:uuid:` and the 36 characters of the UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StableId([u8; 45]);

const URN: &[u8; 9] = b"urn:uuid:";

impl StableId {
    /// The UUID (the resource's `id`).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0[URN.len()..]).unwrap_or_default()
    }

    /// `urn:uuid:…`: the entry's `fullUrl`, and how the Bundle refers to the resource.
    pub fn url(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The id of a `resource` whose identity key is the concatenation of `key` (given in parts
/// so callers need not build the string).
pub fn stable_uuid(resource: &str, key: &[&str]) -> StableId {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"wyvern:");
    h.update(resource.as_bytes());
    h.update(b":");
    for part in key {
        h.update(part.as_bytes());
    }
    uuid_of(&h.finalize())
}

/// The UUID (version 8) made of the first 16 bytes of a digest.
fn uuid_of(d: &[u8]) -> StableId {
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 45];
    out[..URN.len()].copy_from_slice(URN);
    let mut at = URN.len();
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1; // the '-' already there
        }
        out[at] = HEX[usize::from(x >> 4)];
        out[at + 1] = HEX[usize::from(x & 0x0f)];
        at += 2;
    }
    StableId(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct_per_type() {
        let a = stable_uuid("Patient", &["https://fhir.nhs.uk/Id/nhs-number|9990000018"]);
        assert_eq!(
            a,
            stable_uuid(
                "Patient",
                &["https://fhir.nhs.uk/Id/nhs-number", "|", "9990000018"]
            )
        );
        assert_ne!(
            a,
            stable_uuid(
                "Encounter",
                &["https://fhir.nhs.uk/Id/nhs-number|9990000018"]
            )
        );
        // The form every earlier version wrote: changing it changes every resource's id.
        assert_eq!(a.as_str(), "c916307a-8ce2-8e6d-a48b-415a56e7d7e3");
        assert_eq!(&a.as_str()[14..15], "8");
        assert_eq!(a.url(), format!("urn:uuid:{}", a.as_str()));
    }

    #[test]
    fn long_keys_hash_the_same_bytes() {
        let long = "x".repeat(300);
        let whole = format!("wyvern:Patient:{long}");
        let expected = uuid_of(&<sha2::Sha256 as sha2::Digest>::digest(whole.as_bytes()));
        assert_eq!(
            stable_uuid("Patient", &[&long[..150], &long[150..]]),
            expected
        );
        assert_eq!(stable_uuid("Patient", &[&long]), expected);
    }
}
