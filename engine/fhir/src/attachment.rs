//! A document carried in a message — OBX-5 as ED (encapsulated data: type^subtype^encoding^
//! data, the data Base64) or RP (a reference pointer: pointer^application^type^subtype) — as
//! a FHIR Attachment. Bounded: past [`MAX_CONTENT`] decoded bytes the data is left out, with a
//! warning, so one message cannot make a Bundle of any size.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use wyvern_hl7::Value as V2;

use crate::Context;
use crate::datatypes::comp;
use crate::json::{JsonWriter, Key};

/// The most document bytes carried in one Attachment.
pub const MAX_CONTENT: usize = 16 << 20;

pub(crate) struct Attachment {
    pub content_type: String,
    /// Base64, as FHIR's `base64Binary` wants.
    pub data: Option<String>,
    pub url: Option<String>,
}

impl Attachment {
    pub fn write(&self, w: &mut JsonWriter, k: impl Key, title: &str) {
        w.object(k, |w| {
            w.str("contentType", &self.content_type);
            w.opt_str("data", self.data.as_deref());
            w.opt_str("url", self.url.as_deref());
            w.str("title", title);
        });
    }
}

/// `type/subtype` when both are there and the type is a MIME top-level type.
fn mime(kind: &str, subtype: &str) -> String {
    let kind = kind.to_ascii_lowercase();
    let subtype = subtype.to_ascii_lowercase();
    // HL7 table 0191's type codes, as v2.5 senders write them.
    let kind = match kind.as_str() {
        "ap" => "application".to_string(),
        "im" => "image".to_string(),
        "au" => "audio".to_string(),
        "tx" | "text" => "text".to_string(),
        _ => kind,
    };
    match kind.as_str() {
        "application" | "image" | "text" | "audio" | "video" if !subtype.is_empty() => {
            format!("{kind}/{subtype}")
        }
        _ => "application/octet-stream".to_string(),
    }
}

/// ED: type^subtype^encoding^data after the source application (component 1).
pub(crate) fn ed(cx: &mut Context<'_, '_>, v: V2<'_>) -> Option<Attachment> {
    let (kind, subtype, encoding) = (comp(Some(v), 2), comp(Some(v), 3), comp(Some(v), 4));
    if !encoding.eq_ignore_ascii_case("Base64") {
        cx.warn(format!(
            "ED encoding {encoding:?} is not Base64: the document is left out"
        ));
        return None;
    }
    // The data as sent, without the line breaks some senders wrap it in.
    let data: String = v
        .component(5)
        .map(|d| {
            d.raw()
                .iter()
                .filter(|b| !b.is_ascii_whitespace())
                .map(|&b| b as char)
                .collect()
        })
        .unwrap_or_default();
    if data.len() / 4 * 3 > MAX_CONTENT {
        cx.warn(format!(
            "the document is over {} MiB: it is left out of the Bundle",
            MAX_CONTENT >> 20
        ));
        return None;
    }
    if BASE64.decode(&data).is_err() {
        cx.warn("ED data is not Base64: the document is left out");
        return None;
    }
    Some(Attachment {
        content_type: mime(&kind, &subtype),
        data: Some(data),
        url: None,
    })
}

/// RP: a pointer to the document elsewhere; kept only when it is an http(s) URL.
pub(crate) fn rp(cx: &mut Context<'_, '_>, v: V2<'_>) -> Option<Attachment> {
    let pointer = comp(Some(v), 1);
    let pointer = pointer.trim();
    if !(pointer.starts_with("https://") || pointer.starts_with("http://")) {
        cx.warn(format!(
            "RP pointer {pointer:?} is not an http(s) URL: the document's link is left out"
        ));
        return None;
    }
    Some(Attachment {
        content_type: mime(&comp(Some(v), 3), &comp(Some(v), 4)),
        data: None,
        url: Some(pointer.to_string()),
    })
}

/// Text lines as a `text/plain` Attachment.
pub(crate) fn text(cx: &mut Context<'_, '_>, lines: &[String]) -> Option<Attachment> {
    let joined = lines.join("\n");
    if joined.len() > MAX_CONTENT {
        cx.warn(format!(
            "the document is over {} MiB: it is left out of the Bundle",
            MAX_CONTENT >> 20
        ));
        return None;
    }
    Some(Attachment {
        content_type: "text/plain".to_string(),
        data: Some(BASE64.encode(joined)),
        url: None,
    })
}
