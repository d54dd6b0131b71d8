//! Finding the n-th piece between separators without allocating.

/// The `n`-th (0-based) piece of `raw` split on `sep`, or `None` if there are fewer pieces.
pub(crate) fn nth_piece(raw: &[u8], sep: u8, n: usize) -> Option<&[u8]> {
    let mut start = 0;
    let mut idx = 0;
    for pos in memchr::memchr_iter(sep, raw) {
        if idx == n {
            return Some(&raw[start..pos]);
        }
        idx += 1;
        start = pos + 1;
    }
    (idx == n).then(|| &raw[start..])
}

/// All pieces of `raw` split on `sep` (an empty input yields one empty piece).
pub(crate) fn pieces(raw: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
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
