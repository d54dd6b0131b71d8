//! NHS numbers: ten digits, the last a modulus-11 check digit.
//!
//! A number that fails the check is never presented as an NHS number downstream (UK Core only
//! allows verified-format numbers under the national system), so callers get the reason.

use std::fmt;

/// A ten-digit NHS number whose check digit is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NhsNumber([u8; 10]);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    #[error("an NHS number has 10 digits, this has {0}")]
    WrongLength(usize),
    #[error("an NHS number has only digits")]
    NotDigits,
    #[error("the check digit would be 10, so no valid NHS number has these first nine digits")]
    CheckDigitTen,
    #[error("the check digit is {found}, modulus 11 gives {expected}")]
    CheckDigitMismatch { expected: u8, found: u8 },
}

impl NhsNumber {
    /// Parses `9990000018` or the printed form `999 000 0018` (spaces and hyphens ignored).
    pub fn parse(s: &str) -> Result<Self, NhsNumberError> {
        let mut digits = [0u8; 10];
        let mut n = 0;
        for c in s.trim().chars().filter(|c| *c != ' ' && *c != '-') {
            let d = c.to_digit(10).ok_or(NhsNumberError::NotDigits)?;
            if n < 10 {
                digits[n] = b'0' + d as u8;
            }
            n += 1;
        }
        if n != 10 {
            return Err(NhsNumberError::WrongLength(n));
        }
        let expected = check_digit(&digits[..9])?;
        let found = digits[9] - b'0';
        if expected != found {
            return Err(NhsNumberError::CheckDigitMismatch { expected, found });
        }
        Ok(NhsNumber(digits))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The modulus-11 check digit for nine ASCII digits (weights 10 down to 2).
pub(crate) fn check_digit(nine: &[u8]) -> Result<u8, NhsNumberError> {
    let sum: u32 = nine
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    match 11 - (sum % 11) {
        11 => Ok(0),
        10 => Err(NhsNumberError::CheckDigitTen),
        c => Ok(c as u8),
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use NhsNumberError::*;
        let cases: &[(&str, Result<&str, NhsNumberError>)] = &[
            ("9990000018", Ok("9990000018")),
            ("999 000 0018", Ok("9990000018")),
            ("999-000-0018", Ok("9990000018")),
            ("9990000026", Ok("9990000026")),
            (
                "9990000017",
                Err(CheckDigitMismatch {
                    expected: 8,
                    found: 7,
                }),
            ),
            ("999000001", Err(WrongLength(9))),
            ("99900000188", Err(WrongLength(11))),
            ("", Err(WrongLength(0))),
            ("99900000A8", Err(NotDigits)),
            ("９９９0000018", Err(NotDigits)),
        ];
        for (input, want) in cases {
            let got = NhsNumber::parse(input);
            assert_eq!(
                got.as_ref().map(|n| n.as_str()).map_err(|e| *e),
                *want,
                "{input}"
            );
        }
    }

    #[test]
    fn check_digit_ten_is_invalid() {
        // Find a nine-digit stem in the synthetic range whose check digit would be 10.
        let stem = (0..1000u32)
            .map(|i| format!("999000{i:03}"))
            .find(|s| check_digit(s.as_bytes()) == Err(NhsNumberError::CheckDigitTen))
            .unwrap();
        for last in 0..10 {
            assert_eq!(
                NhsNumber::parse(&format!("{stem}{last}")),
                Err(NhsNumberError::CheckDigitTen)
            );
        }
    }
}
