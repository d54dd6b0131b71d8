//! The fingerprint duplicate detection compares to tell a resend (same bytes) from a reused
//! control id (other bytes): the first 128 bits of SHA-256. It was a CRC-32, which a sender can
//! make collide on purpose — a different message would then be dropped as a "resend".

use sha2::{Digest as _, Sha256};

/// 128 bits of SHA-256 of a message's bytes.
pub type ContentDigest = [u8; 16];

pub fn content_digest(raw: &[u8]) -> ContentDigest {
    let full = Sha256::digest(raw);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_the_head_of_sha256() {
        // SHA-256("abc") = ba7816bf 8f01cfea 414140de 5dae2223 …
        assert_eq!(
            content_digest(b"abc")[..8],
            [0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea]
        );
        assert_ne!(content_digest(b"a"), content_digest(b"b"));
    }
}
