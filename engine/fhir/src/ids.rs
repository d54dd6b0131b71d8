//! Stable resource ids: the same identifier always gives the same id, so a replayed message
//! addresses the resources it made the first time. A UUID (version 8, "custom") made of the
//! first 16 bytes of SHA-256 over the resource type and its identity key.

/// A stable id: 36 ASCII characters, kept inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StableId([u8; 36]);

impl StableId {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for StableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of a `resource` whose identity key is the concatenation of `key` (given in parts
/// so callers need not build the string).
pub fn stable_uuid(resource: &str, key: &[&str]) -> StableId {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"wyvern:");
    ctx.update(resource.as_bytes());
    ctx.update(b":");
    for part in key {
        ctx.update(part.as_bytes());
    }
    let d = ctx.finish();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let mut at = 0;
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
    }
}
