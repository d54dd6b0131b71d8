//! The access policy for record-to-record sharing (`bridge.yaml` `policy:`): who may ask, why,
//! and what is never passed on. Checked before any member is asked; a refusal is a 403 with an
//! OperationOutcome saying which rule refused, and is audited.
//!
//! - A caller with a token must give a purpose (`reason_for_request`) the policy allows —
//!   direct care only by default — and, when the policy lists organisations, be one of them.
//! - A patient on the dissent list is not shared at all (GP Connect answers such a request 403
//!   too).
//! - A resource marked restricted or very restricted (`meta.security` R or V) never leaves the
//!   bridge; how many were withheld goes to the audit log, not to the caller.

use std::collections::HashSet;

use serde_json::Value;
use wyvern_config::Policy;
use wyvern_connectors::jwt::Caller;
use wyvern_hl7::NhsNumber;

/// The confidentiality code system of `meta.security`, by its URI and by its OID.
const CONFIDENTIALITY: [&str; 2] = [
    "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
    "urn:oid:2.16.840.1.113883.5.25",
];

/// The policy, its dissent list read.
#[derive(Debug)]
pub struct Access {
    purposes: Vec<String>,
    organisations: Option<HashSet<String>>,
    dissent: HashSet<String>,
}

/// Why a query is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the token gives no purpose: reason_for_request is required ({allowed})")]
    NoPurpose { allowed: String },
    #[error("purpose {0:?} is not one this bridge shares records for ({1})")]
    Purpose(String, String),
    #[error("the token names no organisation")]
    NoOrganisation,
    #[error("organisation {0} may not ask this bridge")]
    Organisation(String),
    #[error("this patient has recorded dissent from sharing their record between organisations")]
    Dissent,
}

impl Access {
    /// Reads the dissent file now: an unreadable file, or a line that is not a valid NHS
    /// number, stops the engine at start (a dissent list half read would share records).
    pub fn load(p: &Policy) -> Result<Access, String> {
        let mut dissent = HashSet::new();
        if let Some(path) = &p.dissent {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the dissent list {}: {e}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                let n = NhsNumber::parse(line)
                    .map_err(|e| format!("{}:{}: not an NHS number: {e}", path.display(), i + 1))?;
                dissent.insert(n.as_str().to_string());
            }
        }
        Ok(Access {
            purposes: p.purposes.clone(),
            organisations: p
                .organisations
                .as_ref()
                .map(|o| o.iter().cloned().collect()),
            dissent,
        })
    }

    /// Whether `caller` (the token's claims, when the bridge requires tokens) may ask at all.
    pub fn admit(&self, caller: Option<&Caller>) -> Result<(), Refusal> {
        let Some(caller) = caller else {
            return Ok(());
        };
        let allowed = format!("allowed: {}", self.purposes.join(", "));
        match caller.purpose.as_deref() {
            None => return Err(Refusal::NoPurpose { allowed }),
            Some(p) if !self.purposes.iter().any(|a| a == p) => {
                return Err(Refusal::Purpose(p.chars().take(64).collect(), allowed));
            }
            Some(_) => {}
        }
        if let Some(orgs) = &self.organisations {
            match caller.organisation.as_deref() {
                None => return Err(Refusal::NoOrganisation),
                Some(o) if !orgs.contains(o) => {
                    return Err(Refusal::Organisation(o.chars().take(16).collect()));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Whether this patient's records may be shared.
    pub fn shares(&self, patient: &NhsNumber) -> Result<(), Refusal> {
        if self.dissent.contains(patient.as_str()) {
            Err(Refusal::Dissent)
        } else {
            Ok(())
        }
    }
}

/// Whether an entry's resource, or a resource contained in it, is marked restricted (R) or
/// very restricted (V).
pub fn restricted(entry: &Value) -> bool {
    let Some(resource) = entry.get("resource") else {
        return false;
    };
    labelled(resource)
        || resource
            .get("contained")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(labelled))
}

fn labelled(resource: &Value) -> bool {
    resource
        .pointer("/meta/security")
        .and_then(Value::as_array)
        .is_some_and(|labels| {
            labels.iter().any(|l| {
                l.get("system")
                    .and_then(Value::as_str)
                    .is_some_and(|s| CONFIDENTIALITY.contains(&s))
                    && matches!(l.get("code").and_then(Value::as_str), Some("R" | "V"))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caller(org: Option<&str>, purpose: Option<&str>) -> Caller {
        Caller {
            client: Some("gp-system".into()),
            organisation: org.map(str::to_string),
            purpose: purpose.map(str::to_string),
        }
    }

    #[test]
    fn direct_care_only_by_default_and_listed_organisations() {
        let open = Access::load(&Policy::default()).expect("policy");
        assert_eq!(open.admit(None), Ok(()));
        assert_eq!(
            open.admit(Some(&caller(Some("A12345"), Some("directcare")))),
            Ok(())
        );
        assert!(matches!(
            open.admit(Some(&caller(Some("A12345"), None))),
            Err(Refusal::NoPurpose { .. })
        ));
        let e = open
            .admit(Some(&caller(Some("A12345"), Some("research"))))
            .unwrap_err();
        assert!(
            e.to_string().contains("\"research\" is not one")
                && e.to_string().contains("allowed: directcare"),
            "{e}"
        );
        let listed = Access::load(&Policy {
            organisations: Some(vec!["XCH01".into()]),
            ..Policy::default()
        })
        .expect("policy");
        assert_eq!(
            listed.admit(Some(&caller(Some("XCH01"), Some("directcare")))),
            Ok(())
        );
        assert_eq!(
            listed.admit(Some(&caller(Some("XZZ99"), Some("directcare")))),
            Err(Refusal::Organisation("XZZ99".into()))
        );
    }

    #[test]
    fn dissent_is_read_strictly_and_refuses_the_patient() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("dissent.txt");
        std::fs::write(&path, "# recorded dissent\n999 000 0026\n\n").expect("write");
        let policy = Policy {
            dissent: Some(path.clone()),
            ..Policy::default()
        };
        let a = Access::load(&policy).expect("policy");
        assert_eq!(
            a.shares(&NhsNumber::parse("9990000026").expect("nhs")),
            Err(Refusal::Dissent)
        );
        assert_eq!(
            a.shares(&NhsNumber::parse("9990000018").expect("nhs")),
            Ok(())
        );
        std::fs::write(&path, "9990000026\n9990000019\n").expect("write");
        let e = Access::load(&policy).unwrap_err();
        assert!(
            e.ends_with(
                "dissent.txt:2: not an NHS number: the check digit is 9, modulus 11 gives 8"
            ),
            "{e}"
        );
    }

    #[test]
    fn restricted_and_very_restricted_resources_are_known() {
        let labelled = |code: &str| json!({ "resource": { "meta": { "security": [{ "system": CONFIDENTIALITY[0], "code": code }] } } });
        assert!(restricted(&labelled("R")) && restricted(&labelled("V")));
        assert!(!restricted(&labelled("N")));
        let by_oid = json!({ "resource": { "meta": { "security": [{ "system": CONFIDENTIALITY[1], "code": "V" }] } } });
        assert!(restricted(&by_oid));
        let inside = json!({ "resource": { "contained": [{ "meta": { "security": [{ "system": CONFIDENTIALITY[0], "code": "R" }] } }] } });
        assert!(restricted(&inside));
        assert!(!restricted(
            &json!({ "resource": { "meta": { "security": "R" } } })
        ));
    }
}
