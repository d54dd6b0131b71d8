//! Finding the n-th piece between separators without allocating.

/// The `n`-th (0-based) piece of `raw` split on `sep`, or `None` if there are fewer pieces.
///
/// A plain byte loop, not `memchr`: HL7 separators are a few bytes apart, and memchr's
/// per-call set-up cost more than it saved (the FHIR mapper, which reads ~150 fields a
/// message, spent a fifth of its time there).
#[inline]
pub(crate) fn nth_piece(raw: &[u8], sep: u8, n: usize) -> Option<&[u8]> {
    let mut start = 0;
    let mut idx = 0;
    for (pos, &b) in raw.iter().enumerate() {
        if b == sep {
            if idx == n {
                return Some(&raw[start..pos]);
            }
            idx += 1;
            start = pos + 1;
        }
    }
    (idx == n).then(|| &raw[start..])
}

/// All pieces of `raw` split on `sep` (an empty input yields one empty piece).
pub(crate) fn pieces(raw: &[u8], sep: u8) -> std::slice::Split<'_, u8, impl FnMut(&u8) -> bool> {
    raw.split(move |&b| b == sep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth() {
        assert_eq!(nth_piece(b"a|b|c", b'|', 0), Some(&b"a"[..]));
        assert_eq!(nth_piece(b"a|b|c", b'|', 2), Some(&b"c"[..]));
        assert_eq!(nth_piece(b"a|b|c", b'|', 3), None);
        assert_eq!(nth_piece(b"", b'|', 0), Some(&b""[..]));
        assert_eq!(nth_piece(b"a||", b'|', 2), Some(&b""[..]));
    }
}
