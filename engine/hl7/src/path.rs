//! Path queries such as `MSH-9.2`, `PID-3[2].1`, `PID-3(*).4` and `OBX[3]-5`.
//!
//! Grammar: `SEG[occ] (-|.) FIELD[rep] [.COMPONENT [.SUBCOMPONENT]]`, where `[n]` or `(n)` is a
//! 1-based index and `[*]`/`(*)` selects every one. Without an index the first is meant. Paths
//! are parsed once (route config) and then applied to many messages.

use std::fmt;
use std::str::FromStr;

/// Which occurrences a path selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    Index(usize),
    All,
}

/// A parsed HL7 path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub segment: String,
    pub occurrence: Selector,
    pub field: usize,
    pub repetition: Selector,
    pub component: Option<usize>,
    pub subcomponent: Option<usize>,
}

/// Why a path did not parse: where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HL7 path {path:?} at character {position}: expected {expected}")]
pub struct PathError {
    pub path: String,
    pub position: usize,
    pub expected: &'static str,
}

struct Cursor<'s> {
    src: &'s str,
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }
    fn fail<T>(&self, expected: &'static str) -> Result<T, PathError> {
        Err(PathError {
            path: self.src.to_string(),
            position: self.pos + 1,
            expected,
        })
    }
    fn number(&mut self, expected: &'static str) -> Result<usize, PathError> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        match self.src[start..self.pos].parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => {
                self.pos = start;
                self.fail(expected)
            }
        }
    }
    /// An optional `[n]`, `(n)`, `[*]` or `(*)`.
    fn selector(&mut self) -> Result<Selector, PathError> {
        let close = match self.peek() {
            Some(b'[') => b']',
            Some(b'(') => b')',
            _ => return Ok(Selector::Index(1)),
        };
        self.pos += 1;
        let sel = if self.peek() == Some(b'*') {
            self.pos += 1;
            Selector::All
        } else {
            Selector::Index(self.number("an index from 1, or *")?)
        };
        if self.peek() != Some(close) {
            return self.fail(if close == b']' { "]" } else { ")" });
        }
        self.pos += 1;
        Ok(sel)
    }
}

impl FromStr for Path {
    type Err = PathError;

    fn from_str(src: &str) -> Result<Self, Self::Err> {
        let mut c = Cursor { src, pos: 0 };
        let seg = src.get(..3).filter(|s| {
            let b = s.as_bytes();
            b[0].is_ascii_uppercase()
                && b[1..]
                    .iter()
                    .all(|x| x.is_ascii_uppercase() || x.is_ascii_digit())
        });
        let Some(segment) = seg else {
            return c.fail("a segment id such as PID");
        };
        c.pos = 3;
        let occurrence = c.selector()?;
        if !matches!(c.peek(), Some(b'-' | b'.')) {
            return c.fail("- or . before the field number");
        }
        c.pos += 1;
        let field = c.number("a field number from 1")?;
        let repetition = c.selector()?;
        let mut component = None;
        let mut subcomponent = None;
        if c.peek() == Some(b'.') {
            c.pos += 1;
            component = Some(c.number("a component number from 1")?);
            if c.peek() == Some(b'.') {
                c.pos += 1;
                subcomponent = Some(c.number("a sub-component number from 1")?);
            }
        }
        if c.pos != src.len() {
            return c.fail("the end of the path");
        }
        Ok(Path {
            segment: segment.to_string(),
            occurrence,
            field,
            repetition,
            component,
            subcomponent,
        })
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sel = |s: Selector| match s {
            Selector::Index(1) => String::new(),
            Selector::Index(n) => format!("[{n}]"),
            Selector::All => "[*]".to_string(),
        };
        write!(
            f,
            "{}{}-{}{}",
            self.segment,
            sel(self.occurrence),
            self.field,
            sel(self.repetition)
        )?;
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
        }
        if let Some(s) = self.subcomponent {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        for (src, shown) in [
            ("MSH-9.2", "MSH-9.2"),
            ("PID-3[2].1", "PID-3[2].1"),
            ("PID-3(*).4", "PID-3[*].4"),
            ("OBX[3]-5", "OBX[3]-5"),
            ("PID.3.1", "PID-3.1"),
            ("ZP1(*)-2(3).4.5", "ZP1[*]-2[3].4.5"),
        ] {
            let p: Path = src.parse().unwrap();
            assert_eq!(p.to_string(), shown);
            assert_eq!(p.to_string().parse::<Path>().unwrap(), p);
        }
    }

    #[test]
    fn errors_say_where() {
        let e = "pid-3".parse::<Path>().unwrap_err();
        assert_eq!((e.position, e.expected), (1, "a segment id such as PID"));
        let e = "PID-0".parse::<Path>().unwrap_err();
        assert_eq!(e.position, 5);
        let e = "PID-3[2".parse::<Path>().unwrap_err();
        assert_eq!(e.expected, "]");
        let e = "PID-3.1x".parse::<Path>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid HL7 path \"PID-3.1x\" at character 8: expected the end of the path"
        );
        assert!("PI".parse::<Path>().is_err());
        assert!("PID".parse::<Path>().is_err());
        assert!("PID-".parse::<Path>().is_err());
        assert!("PÏD-1".parse::<Path>().is_err());
    }
}
