//! `wyvern audit verify|export`, and the record every CLI command that reads a patient's
//! message or acts on one leaves first: who (the local user), what (the message, the patient's
//! NHS number), when. If the record cannot be written, the command does not go on.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use wyvern_core::{Clock, SystemClock};
use wyvern_store::{AuditAction, AuditEntry, AuditRecord, AuditTrail};

use crate::inbox::StoreArgs;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the audit log's hash chain: exit 1 naming the first record that was edited,
    /// deleted or moved; else print how many records and the newest one's hash (keep it
    /// elsewhere: a later verify shows whether records were removed from the end).
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write the audit log as FHIR R4 AuditEvent resources (the IHE BALP shape), one JSON per
    /// line, to stdout.
    Export {
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn audit(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify { store } => {
            let trail = trail(&store)?;
            match wyvern_store::verify_trail(trail.as_ref()).await? {
                Ok(head) => {
                    println!(
                        "audit log sound: {} records, the newest {} with hash {}",
                        head.records,
                        head.last_seq,
                        hex(&head.hash)
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(broken) => {
                    println!("audit log BROKEN: {broken}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCommand::Export { store } => {
            let trail = trail(&store)?;
            let mut out = std::io::stdout().lock();
            let mut failed = None;
            wyvern_store::walk_audit(trail.as_ref(), |row| {
                if failed.is_none()
                    && let Err(e) = writeln!(out, "{}", audit_event(&row.record))
                {
                    failed = Some(e);
                }
                Ok(())
            })
            .await?;
            if let Some(e) = failed {
                return Err(e).context("writing the export");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Records that the person at this terminal did `action` — before it is done.
pub async fn record(
    trail: &dyn AuditTrail,
    action: AuditAction,
    message_id: Option<&str>,
    nhs_number: Option<&str>,
    detail: Option<String>,
) -> anyhow::Result<()> {
    let entry = AuditEntry {
        at_ms: SystemClock.now_millis(),
        actor: local_user(),
        action,
        message_id: message_id.map(str::to_string),
        nhs_number: nhs_number.map(str::to_string),
        from: Some("cli".into()),
        detail,
    };
    trail
        .append(entry)
        .await
        .context("cannot write the audit record; nothing was shown or changed")?;
    Ok(())
}

/// The audit log of the store `args` name: the cluster's when the config has `store.shared`,
/// else the store folder's.
pub fn trail(args: &StoreArgs) -> anyhow::Result<Box<dyn AuditTrail>> {
    Ok(crate::inbox::open_store(args)?.audit)
}

/// `local:NAME(uid N)`: the account running the command.
fn local_user() -> String {
    let uid = rustix::process::getuid().as_raw();
    match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        Ok(name) if !name.is_empty() => format!("local:{name}(uid {uid})"),
        _ => format!("local:uid {uid}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One record as a FHIR R4 AuditEvent, after IHE's Basic Audit Log Patterns: a read of a
/// patient's record, a query, an export, a change or a refused connection.
fn audit_event(r: &AuditRecord) -> serde_json::Value {
    let e = &r.entry;
    let (code, subtype) = match e.action {
        AuditAction::View => ("R", "read"),
        AuditAction::Search | AuditAction::Access => ("E", "search-type"),
        AuditAction::Export => ("R", "read"),
        AuditAction::Retry | AuditAction::Replay => ("U", "update"),
        AuditAction::Purge => ("D", "delete"),
        AuditAction::Refused | AuditAction::Denied => ("E", "create"),
        AuditAction::Token => ("C", "create"),
        AuditAction::Control | AuditAction::Engine => ("E", "operation"),
    };
    let mut entities = Vec::new();
    if let Some(n) = &e.nhs_number {
        entities.push(json!({
            "what": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": n}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}
        }));
    }
    if let Some(m) = &e.message_id {
        entities.push(json!({
            "what": {"identifier": {"system": "urn:wyvern:message-id", "value": m}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"}
        }));
    }
    if let Some(d) = &e.detail {
        entities.push(json!({"query": base64_text(d), "description": d}));
    }
    let mut agent = json!({
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient"}]},
        "who": {"display": e.actor},
        "requestor": true
    });
    if let Some(from) = &e.from {
        agent["network"] = json!({"address": from, "type": "5"});
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": format!("wyvern-audit-{}", r.seq),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": subtype}],
        "action": code,
        "recorded": rfc3339(e.at_ms),
        "outcome": if matches!(e.action, AuditAction::Refused | AuditAction::Denied) { "4" } else { "0" },
        "outcomeDesc": e.action.as_str(),
        "agent": [agent],
        "source": {
            "observer": {"display": "Wyvern"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]
        }
    });
    if !entities.is_empty() {
        event["entity"] = serde_json::Value::Array(entities);
    }
    event
}

fn base64_text(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `2026-11-25T14:30:00.123Z`.
fn rfc3339(ms: i64) -> String {
    let t = wyvern_core::display_timestamp(ms);
    // display_timestamp gives "YYYY-MM-DD HH:MM:SS.mmm"; FHIR's instant wants a T and a zone.
    format!("{}Z", t.replacen(' ', "T", 1))
}
