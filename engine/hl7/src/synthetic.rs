//! Synthetic test data for tests, benchmarks and the load tool: NHS numbers from the 999 range
//! with valid check digits and ~1 KB ADT^A01 messages. No real patient, clinician or
//! organisation appears anywhere.

/// The `n`-th valid synthetic NHS number (999 000 0000 – 999 999 9999).
pub fn nhs_number(n: u64) -> String {
    let mut stem = 999_000_000 + (n % 999_999);
    loop {
        let digits: Vec<u32> = stem
            .to_string()
            .bytes()
            .map(|b| u32::from(b - b'0'))
            .collect();
        let sum: u32 = digits.iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
        match 11 - sum % 11 {
            10 => stem += 1,
            11 => return format!("{stem}0"),
            c => return format!("{stem}{c}"),
        }
    }
}

/// A ~1 KB ADT^A01 with the given control id; `n` varies the patient.
pub fn adt_a01(control_id: &str, n: u64) -> String {
    let nhs = nhs_number(n);
    format!(
        "MSH|^~\\&|PAS|RHX01|WYVERN|CHIE|20261125143000+0000||ADT^A01^ADT_A01|{control_id}|P|2.4|||AL|NE|GBR|UNICODE UTF-8\r\
EVN|A01|20261125143000|||USR{n:05}^SYNTHETIC^USER|20261125142900\r\
PID|1||{nhs}^^^NHS^NH~K{n:07}^^^RHX01^MR||TESTPATIENT{n}^ALEX^JORDAN^^MX^^L||19700101|U|||1 TEST STREET^FLAT {n}^TESTTOWN^TESTSHIRE^ZZ99 3ZZ^GBR^H||01632 960000^PRN^PH~07700 900000^ORN^CP|||S||||||A||||||||N\r\
PD1|||TEST SURGERY^^Y99999|G9999998^TESTGP^SAM^^^DR\r\
NK1|1|TESTRELATIVE^CHRIS|SPO^Spouse^HL70063|1 TEST STREET^^TESTTOWN^^ZZ99 3ZZ|01632 960001|||||||||||||||||||||||||||||||\r\
PV1|1|I|WARD7^BAY2^BED{b}^RHX01^^^^^Ward 7|21|||C9999999^TESTCONSULTANT^PAT^^^DR|||300||||19|||C9999999^TESTCONSULTANT^PAT^^^DR|01|V{n:08}|||||||||||||||||||||||||20261125142500\r\
PV2|||^Chest pain||||||||||||||||||||||||N\r\
AL1|1|DA|^Penicillin|MO|Rash\r\
DG1|1||R07.4^Chest pain, unspecified^I10|||W\r\
OBX|1|NM|8867-4^Heart rate^LN||72|/min^beats per minute^UCUM|60-100|N|||F|||20261125142000\r\
OBX|2|NM|8480-6^Systolic blood pressure^LN||128|mm[Hg]^millimetre of mercury^UCUM|90-140|N|||F|||20261125142000\r\
ZPI|synthetic|test data only\r",
        b = n % 6 + 1
    )
}

/// A synthetic ORU^R01 with the given control id carrying a report of `kib` KiB as an
/// encapsulated document (OBX-5 of type ED, base64): the shape of results that embed a PDF.
/// `n` varies the patient.
pub fn oru_r01_with_document(control_id: &str, n: u64, kib: usize) -> String {
    let nhs = nhs_number(n);
    // Base64's alphabet without the HL7 delimiters; the content is filler, not a real PDF.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let data: String = (0..kib * 1024)
        .map(|i| ALPHABET[(i * 7 + n as usize) % ALPHABET.len()] as char)
        .collect();
    format!(
        "MSH|^~\\&|LIMS|RHX01|WYVERN|CHIE|20261125143000+0000||ORU^R01^ORU_R01|{control_id}|P|2.4|||AL|NE|GBR|UNICODE UTF-8\r\
PID|1||{nhs}^^^NHS^NH~K{n:07}^^^RHX01^MR||TESTPATIENT{n}^ALEX^JORDAN^^MX^^L||19700101|U\r\
OBR|1|ORD{n:08}|FIL{n:08}|REPORT^Discharge summary^L|||20261125142000\r\
OBX|1|ED|PDF^Report^L||^application^pdf^Base64^{data}||||||F|||20261125142000\r"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_valid_and_messages_about_1kb() {
        for n in 0..500 {
            assert!(
                crate::NhsNumber::parse(&nhs_number(n)).is_ok(),
                "{}",
                nhs_number(n)
            );
        }
        let m = adt_a01("C1", 7);
        assert!((900..1300).contains(&m.len()), "{}", m.len());
        let parsed = crate::Message::parse(m.as_bytes()).unwrap();
        assert!(crate::check::acceptance_problems(&parsed).is_empty());
        let oru = oru_r01_with_document("C2", 7, 64);
        assert!(oru.len() > 64 * 1024, "{}", oru.len());
        let parsed = crate::Message::parse(oru.as_bytes()).unwrap();
        assert!(crate::check::acceptance_problems(&parsed).is_empty());
        assert_eq!(parsed.get("OBX-5.4").unwrap().as_str(), "Base64");
        assert_eq!(
            parsed.nhs_number().unwrap().unwrap().as_str(),
            nhs_number(7)
        );
    }
}
