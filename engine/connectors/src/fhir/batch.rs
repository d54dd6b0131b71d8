//! A batch-response Bundle answers HTTP 200 whatever became of its entries; each entry's
//! `response.status` says whether that one was stored. (A transaction is all or nothing: a
//! 200 means every entry was, so its response needs no reading.)

use super::{FhirOutcome, classify};

/// `None` when every entry of a batch-response succeeded (or the body is not a
/// batch-response); otherwise the outcome of the worst entry: transient if any entry can be
/// retried (the whole batch is sent again — its entries are upserts), else refused.
pub fn failed_entries(body: &[u8]) -> Option<FhirOutcome> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if v.get("type").and_then(|t| t.as_str()) != Some("batch-response") {
        return None;
    }
    let mut worst: Option<FhirOutcome> = None;
    for (i, entry) in v.get("entry")?.as_array()?.iter().enumerate() {
        let response = entry.get("response");
        let status_text = response
            .and_then(|r| r.get("status"))
            .and_then(|s| s.as_str())
            .unwrap_or("");
        // "201 Created", "400", …: the code is the first word.
        let code: u16 = status_text
            .split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if (200..300).contains(&code) {
            continue;
        }
        let detail = response
            .and_then(|r| r.get("outcome"))
            .map(|o| o.to_string())
            .unwrap_or_default();
        let detail: String = detail.chars().take(300).collect();
        let why = format!("batch entry {i}: status {status_text:?} {detail}");
        let outcome = if code == 0 {
            FhirOutcome::Transient(why)
        } else {
            classify(code, why)
        };
        worst = match (worst, outcome) {
            (Some(FhirOutcome::Transient(w)), _) => Some(FhirOutcome::Transient(w)),
            (_, o) => Some(o),
        };
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(statuses: &[&str]) -> Vec<u8> {
        let entries: Vec<serde_json::Value> = statuses
            .iter()
            .map(|s| serde_json::json!({ "response": { "status": s } }))
            .collect();
        serde_json::json!({ "resourceType": "Bundle", "type": "batch-response", "entry": entries })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn every_entry_of_a_batch_response_is_read() {
        assert_eq!(failed_entries(&response(&["201 Created", "200 OK"])), None);
        assert!(matches!(
            failed_entries(&response(&["201 Created", "400 Bad Request"])),
            Some(FhirOutcome::Refused(w)) if w.contains("batch entry 1")
        ));
        assert!(matches!(
            failed_entries(&response(&["422", "503", "200"])),
            Some(FhirOutcome::Transient(w)) if w.contains("batch entry 1")
        ));
        let transaction = br#"{"resourceType":"Bundle","type":"transaction-response","entry":[]}"#;
        assert_eq!(failed_entries(transaction), None);
        assert_eq!(failed_entries(b"not json"), None);
    }
}
