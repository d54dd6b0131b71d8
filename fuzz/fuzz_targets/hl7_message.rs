//! Any bytes through everything the inbox does with a message: parse, acceptance checks, the
//! typed MSH helpers, NHS number, timestamps, escapes, batch split, route-step edits and the
//! ACK builder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wyvern_hl7::{AckIntent, Message, build_ack, check, split_batch};

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = split_batch(data) {
        for m in batch.messages {
            let _ = Message::parse(m).map(|m| m.segment_count());
        }
    }
    let Ok(msg) = Message::parse(data) else { return };
    let problems = check::acceptance_problems(&msg);
    let _ = (msg.message_type(), msg.control_id(), msg.version(), msg.sending_application());
    let _ = msg.nhs_number();
    let _ = msg.created_at();
    for seg in msg.segments() {
        for i in 0..seg.field_count().min(40) {
            if let Some(v) = seg.field(i) {
                for r in v.repetitions() {
                    for c in r.components() {
                        let _ = c.as_str();
                        for s in c.subcomponents() {
                            let _ = s.as_str();
                        }
                    }
                }
            }
        }
    }
    // Route steps edit messages: the result must still be a message.
    for (path, value) in [("PID-3(*).4", "NHS"), ("MSH-5", "A|B^C"), ("ZZ1[2]-30.2.3", "x")] {
        let edited = wyvern_hl7::edit::set(data, &path.parse().expect("valid path"), value).expect("it parsed above");
        Message::parse(&edited).expect("an edited message parses");
    }
    let without = wyvern_hl7::edit::remove_segments(data, "NK1").expect("it parsed above");
    Message::parse(&without).expect("a message without NK1 parses");
    for intent in [AckIntent::Accept, AckIntent::Error, AckIntent::Reject] {
        if let Some(ack) = build_ack(&msg, intent, problems.first(), "FUZZ", "20260101") {
            // The ACK we write must itself parse and echo the control id.
            let a = Message::parse(&ack).expect("our own ACK parses");
            let _ = a.get("MSA-2");
        }
    }
});
