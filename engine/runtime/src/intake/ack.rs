//! Every answer the intake gives in place of the one [`super::assess`] built: a resend's
//! original ACK, or an AE for a resend whose original is still being stored, a control id used
//! for other content, a message the store could not take, a route whose intake an operator has
//! stopped. Which one applies is decided in [`super::inbox`]; what each says is here, in one
//! place, so every AE the engine can send is read in one file.

use bytes::Bytes;
use wyvern_hl7::{AckError, AckIntent, ErrorCode, Message, build_ack, build_ack_without_message};

/// Why the assessed answer is replaced.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Override<'a> {
    /// A resend whose original (this id) is still being committed: AE, send it again.
    ResendInFlight { original: &'a str },
    /// The control id was accepted before for other content (`control_id_reuse: reject`).
    Conflict { original: &'a str },
    /// The store did not take it.
    NotStored { reason: &'a str },
    /// An operator stopped the route's intake.
    IntakeStopped,
}

/// The AE for `why`, and its text (kept as the record's error).
pub(crate) fn answer(raw: &[u8], why: Override<'_>, ack_id: &str, now: &str) -> (Bytes, String) {
    let (code, location, text) = match why {
        Override::ResendInFlight { original } => (
            ErrorCode::ApplicationInternalError,
            None,
            format!("the message could not be stored (resend of {original} while it was still being stored); it was not accepted, please resend"),
        ),
        Override::Conflict { original } => (
            ErrorCode::DuplicateKeyIdentifier,
            Some(wyvern_hl7::ErrorLocation::field("MSH", 1, 10)),
            format!("this MSH-10 was already accepted from this sender for a different message ({original}); not accepted: send it with a new control id"),
        ),
        Override::NotStored { reason } => (
            ErrorCode::ApplicationInternalError,
            None,
            format!("the message could not be stored ({reason}); it was not accepted, please resend"),
        ),
        Override::IntakeStopped => (
            ErrorCode::ApplicationInternalError,
            None,
            "this route is stopped by an operator; the message was not accepted, please send it again later".to_string(),
        ),
    };
    let problem = AckError {
        code,
        location,
        text: text.clone(),
    };
    let ack = Message::parse(raw)
        .ok()
        .and_then(|m| build_ack(&m, AckIntent::Error, Some(&problem), ack_id, now));
    let ack = Bytes::from(ack.unwrap_or_else(|| {
        build_ack_without_message(AckIntent::Error, Some(&problem), ack_id, now)
    }));
    (ack, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"MSH|^~\\&|PAS|RX1|||2026||ADT^A01|C9|P|2.5";

    #[test]
    fn each_override_is_an_ae_that_says_why() {
        let text = |why| String::from_utf8_lossy(&answer(MSG, why, "A1", "2026").0).into_owned();
        assert!(
            text(Override::NotStored {
                reason: "disk full"
            })
            .contains("MSA|AE|C9|the message could not be stored (disk full)")
        );
        assert!(text(Override::ResendInFlight { original: "01X" }).contains("resend of 01X"));
        let conflict = text(Override::Conflict { original: "01X" });
        assert!(
            conflict.contains("MSA|AE|C9") && conflict.contains("ERR|^^^207|MSH^1^10")
                || conflict.contains("MSH^1^10"),
            "{conflict}"
        );
        assert!(text(Override::IntakeStopped).contains("stopped by an operator"));
        // No MSH to answer from: still an AE.
        let (ack, _) = answer(b"garbage", Override::IntakeStopped, "A1", "2026");
        assert!(String::from_utf8_lossy(&ack).contains("MSA|AE|"));
    }
}
