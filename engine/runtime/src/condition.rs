//! Evaluating `filter:` conditions against a message. Pure: a condition and a parsed message
//! in, true or false out.

use wyvern_config::{Condition, FieldTest};
use wyvern_hl7::Message;

/// Whether `c` holds for `msg`. A path that selects several values (`PID-3(*).4`) holds when
/// any of them passes; `exists: false` holds when none is present and non-empty.
pub fn holds(c: &Condition, msg: &Message<'_>) -> bool {
    match c {
        Condition::Field { path, test } => {
            let mut values = msg.query(path).map(|v| v.as_str());
            match test {
                FieldTest::Equals(x) => values.any(|v| v == x.as_str()),
                FieldTest::In(xs) => values.any(|v| xs.iter().any(|x| v == x.as_str())),
                FieldTest::Matches(re) => values.any(|v| re.is_match(&v)),
                FieldTest::Exists(want) => values.any(|v| !v.is_empty()) == *want,
            }
        }
        Condition::MessageType { code, trigger } => {
            let t = msg.message_type();
            t.code == code.as_str() && trigger.as_ref().is_none_or(|tr| t.trigger == tr.as_str())
        }
        Condition::Sender {
            application,
            facility,
        } => {
            msg.sending_application() == application.as_str()
                && facility
                    .as_ref()
                    .is_none_or(|f| msg.sending_facility() == f.as_str())
        }
        Condition::All(cs) => cs.iter().all(|c| holds(c, msg)),
        Condition::Any(cs) => cs.iter().any(|c| holds(c, msg)),
        Condition::Not(c) => !holds(c, msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(yaml: &str) -> Condition {
        let text = format!(
            "version: 1\nroute: t\nsource:\n  mllp:\n    listen: 127.0.0.1:1\nsteps:\n  - filter: {yaml}\n"
        );
        let src = wyvern_config::SourceFile {
            path: "t.yaml".into(),
            text,
        };
        let config = wyvern_config::validate(std::path::Path::new("."), &[src]).unwrap();
        match &config.routes[0].steps[0] {
            wyvern_config::Step::Filter(c) => c.clone(),
            other => panic!("expected a filter, got {other:?}"),
        }
    }

    const ADT: &[u8] = b"MSH|^~\\&|PAS|RHX01|WYV|CHIE|2026||ADT^A01|C1|P|2.4\rPID|1||9990000018^^^NHS^NH~K1^^^RHX01^MR||TEST^ALEX\rPV1|1|I|WARD7\r";

    #[test]
    fn conditions() {
        let m = Message::parse(ADT).unwrap();
        let cases = [
            ("{ hl7: MSH-9.2, equals: A01 }", true),
            ("{ hl7: MSH-9.2, in: [A02, A03] }", false),
            ("{ hl7: PID-3(*).4, equals: RHX01 }", true),
            ("{ hl7: PID-5.1, matches: \"^TE\" }", true),
            ("{ hl7: PID-13, exists: true }", false),
            ("{ hl7: PID-13, exists: false }", true),
            ("{ message_type: ADT }", true),
            ("{ message_type: \"ADT^A08\" }", false),
            ("{ sender: PAS@RHX01 }", true),
            ("{ sender: PAS@OTHER }", false),
            (
                "{ all: [ { message_type: ADT }, { not: { sender: LAB } } ] }",
                true,
            ),
            (
                "{ any: [ { message_type: ORU }, { hl7: PV1-2, equals: O } ] }",
                false,
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(holds(&cond(yaml), &m), want, "{yaml}");
        }
    }
}
