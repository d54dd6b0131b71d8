//! Stable resource ids: the same identifier always gives the same id, so a replayed message
//! addresses the resources it made the first time. A UUID (version 8, "custom") made of the
//! first 16 bytes of SHA-256 over the resource type and its identity key.

pub fn stable_uuid(resource: &str, key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"wyvern:");
    ctx.update(resource.as_bytes());
    ctx.update(b":");
    ctx.update(key.as_bytes());
    let d = ctx.finish();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(x >> 4)]));
        out.push(char::from(HEX[usize::from(x & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct_per_type() {
        let a = stable_uuid("Patient", "https://fhir.nhs.uk/Id/nhs-number|9990000018");
        assert_eq!(
            a,
            stable_uuid("Patient", "https://fhir.nhs.uk/Id/nhs-number|9990000018")
        );
        assert_ne!(
            a,
            stable_uuid("Encounter", "https://fhir.nhs.uk/Id/nhs-number|9990000018")
        );
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
    }
}
