//! Documents (MDM^T01–T11) → a DocumentReference, and a Binary with the document when the
//! message carries it (T02, T04, T06, T08, T10: OBX text, or an ED's Base64 data). Kept under
//! the unique document number (TXA-12), so a status change, an edit or a cancel lands on the
//! same resource; an addendum (T05/T06) `appends` and a replacement (T09/T10) `replaces` the
//! document TXA-13 names. Document content is bounded (`attachment.rs`).

use wyvern_hl7::{IndexedSegment, Segment};

use crate::attachment;
use crate::bundle::{StableId, Upsert};
use crate::datatypes::{codeable, comp, first_rep, practitioner, text};
use crate::json::Item;
use crate::localtime::fhir_datetime;
use crate::patient;
use crate::{Context, MapError};

/// What an MDM event does to the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocumentEvent {
    /// T01/T02: a new document.
    Original,
    /// T03/T04: its status changed.
    StatusChange,
    /// T05/T06: an addendum to TXA-13's document.
    Addendum,
    /// T07/T08: edited.
    Edit,
    /// T09/T10: it replaces TXA-13's document.
    Replacement,
    /// T11: cancelled.
    Cancel,
}

pub fn map(cx: &mut Context<'_, '_>, event: DocumentEvent) -> Result<(), MapError> {
    let txa = cx
        .segment("TXA", 22)
        .ok_or_else(|| MapError::Missing("no TXA segment: there is no document to map".into()))?;
    let patient = patient::map(cx)?;
    let map = cx.map;
    let zone = map.map.local_time;
    let first = |n: usize| first_rep(Some(&txa), n);
    let number = comp(first(12), 1).into_owned();
    let system = cx.system(&map.map.systems.document, &comp(first(12), 2), "");
    let kind = codeable(cx, first(2));
    let date = fhir_datetime(&text(&txa, 4), zone).or_else(|| fhir_datetime(&text(&txa, 6), zone));
    let key = if number.is_empty() {
        cx.warn("TXA-12 has no unique document number: the document is kept under its patient, type and time");
        [
            &*patient.key,
            "|TXA|",
            &kind.key(),
            "|",
            date.as_deref().unwrap_or_default(),
        ]
        .concat()
    } else {
        [&*system, "|", &number].concat()
    };
    let segments: Vec<Segment<'_>> = cx.msg.segments().collect();
    let binary = content(cx, &key, &segments);
    let availability = comp(first(19), 1);
    let status = match (event, &*availability) {
        (DocumentEvent::Cancel, _) | (_, "CA") => "entered-in-error",
        (_, "OB") => "superseded",
        _ => "current",
    };
    let completion = comp(first(17), 1);
    let doc_status = match (event, &*completion) {
        (DocumentEvent::Cancel, _) => Some("entered-in-error"),
        (DocumentEvent::Edit, "AU" | "LA") => Some("amended"),
        (_, "AU" | "LA") => Some("final"),
        (_, "DI" | "DO" | "IP" | "IN" | "PA") => Some("preliminary"),
        _ => None,
    };
    let mut d = cx.writer();
    if !number.is_empty() {
        d.object("masterIdentifier", |w| {
            w.str("system", &system);
            w.str("value", &number);
        });
    }
    d.str("status", status);
    d.opt_str("docStatus", doc_status);
    if !kind.is_empty() {
        kind.write(&mut d, "type");
    }
    patient.write(&mut d, "subject");
    // DocumentReference.date is an instant: a time with seconds and an offset, or nothing.
    if let Some(t) = date.as_deref().filter(|t| t.len() >= 25) {
        d.str("date", t);
    }
    let authors: Vec<_> = [first(5), first(9)]
        .into_iter()
        .flatten()
        .filter(|v| !v.is_empty())
        .filter_map(|v| practitioner(cx, v))
        .collect();
    d.array("author", |w| authors.iter().for_each(|a| a.write(w, Item)));
    if let Some(who) = first(22)
        .filter(|v| !v.is_empty())
        .and_then(|v| practitioner(cx, v))
    {
        who.write(&mut d, "authenticator");
    }
    let relation = match event {
        DocumentEvent::Addendum => Some("appends"),
        DocumentEvent::Replacement => Some("replaces"),
        _ => None,
    };
    let parent = comp(first(13), 1);
    if let Some(code) = relation {
        if parent.is_empty() {
            cx.warn("TXA-13 names no parent document: the relation to it is left out");
        } else {
            let parent_system = cx.system(&map.map.systems.document, &comp(first(13), 2), "");
            d.array("relatesTo", |w| {
                w.object(Item, |w| {
                    w.str("code", code);
                    // The parent by its document number (a logical reference): it may never
                    // have reached this record, and a server that checks references on write
                    // would refuse a literal one to a resource it does not hold.
                    w.object("target", |w| {
                        w.str("type", "DocumentReference");
                        w.object("identifier", |w| {
                            w.str("system", &parent_system);
                            w.str("value", &parent);
                        });
                    });
                });
            });
        }
    }
    let title = [text(&txa, 16), kind.text.clone(), comp(first(2), 1)]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_else(|| "document".into());
    // The document's Binary, written by whichever message carried the document: a status
    // change, an edit or a cancel keeps pointing at it.
    let binary_url = format!(
        "Binary/{}",
        crate::ids::stable_uuid("Binary", &[&key, "|content"]).as_str()
    );
    d.array("content", |w| {
        w.object(Item, |w| {
            w.object("attachment", |w| {
                match &binary {
                    Some((reference, content_type)) => {
                        w.str("contentType", content_type);
                        w.str("url", reference.url());
                    }
                    None => w.str("url", &binary_url),
                }
                w.str("title", &title);
            });
        });
    });
    cx.add("DocumentReference", &[&key], d, Upsert::ById);
    Ok(())
}

/// The document in the message's OBX segments, as a Binary: an ED's data (Base64, with its
/// type and subtype as the content type), else the text of TX/FT/ST values, one line each.
fn content(
    cx: &mut Context<'_, '_>,
    key: &str,
    segments: &[Segment<'_>],
) -> Option<(StableId, String)> {
    let obx: Vec<IndexedSegment<'_>> = segments
        .iter()
        .filter(|s| s.id_bytes() == b"OBX")
        .map(|s| s.indexed_to(5))
        .collect();
    let found = match obx.iter().find(|o| text(o, 2) == "ED") {
        Some(o) => attachment::ed(cx, o.field(5).and_then(|f| f.repetition(1))?)?,
        None => {
            let lines: Vec<String> = obx
                .iter()
                .filter(|o| matches!(&*text(o, 2), "TX" | "FT" | "ST"))
                .flat_map(|o| {
                    crate::datatypes::reps(o, 5)
                        .map(|v| v.as_str().into_owned())
                        .collect::<Vec<_>>()
                })
                .collect();
            if lines.is_empty() {
                return None;
            }
            attachment::text(cx, &lines)?
        }
    };
    let mut b = cx.writer();
    b.str("contentType", &found.content_type);
    b.opt_str("data", found.data.as_deref());
    let reference = cx.add("Binary", &[key, "|content"], b, Upsert::ById);
    Some((reference, found.content_type))
}
