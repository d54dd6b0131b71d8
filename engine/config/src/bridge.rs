//! `bridge.yaml`: the exchange function's federated read. One FHIR R4 base answers a search
//! from every member record at once (CHIE, the Dorset Care Record, later a neighbour region),
//! each entry tagged with where it came from. This file is its own kind of config beside
//! `wyvern.yaml` and the routes: a folder may hold a bridge and no route.
//!
//! ```yaml
//! version: 1
//! serve:                                   # as a fhir source: listen, tls, auth.jwt, allow_from
//!   listen: 127.0.0.1:8090                 # the facade's base is http://ADDR/fhir
//! members:
//!   - name: chie
//!     ods: X1A2B                           # the data owner entries from here are tagged with
//!     fhir: { base: "${CHIE_FHIR_BASE}", timeout: 5s }   # as a fhir destination: auth, tls
//!   - name: dcr
//!     ods: X3C4D
//!     fhir: { base: "${DCR_FHIR_BASE}", timeout: 5s }
//!     serves: [Patient, Condition, AllergyIntolerance]   # default: every type the bridge serves
//! max_member_answer: 16MiB                 # a larger answer counts as that member failing
//! policy:                                  # who may ask, and why (record-to-record sharing)
//!   purposes: [directcare]                 # the token's reason_for_request (default: direct care)
//!   organisations: [X1A2B, X3C4D, A12345]  # ODS codes that may ask (default: any the token names)
//!   dissent: dissent.txt                   # NHS numbers whose records are not shared, one a line
//! ```
//!
//! Callers must authenticate (`serve.auth.jwt`, or client certificates with `serve.tls`) unless
//! the bridge listens on loopback only. Purposes and organisations are read from tokens, so they
//! apply only with `serve.auth.jwt` (and a policy naming them needs it); the dissent list and the
//! restricted labels apply to every caller. Resources marked restricted or very restricted
//! (`meta.security` R or V) are never passed on.

use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::at::At;
use crate::{ByteSize, FhirDestination, FhirDestinationFile, FhirSource, FhirSourceFile};

/// The bridge's file inside a config folder.
pub const BRIDGE_FILE: &str = "bridge.yaml";

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BridgeFile {
    #[schemars(with = "u32")]
    pub version: Spanned<u32>,
    /// Where the facade listens and who may call it, as a `fhir` source says it: `listen`,
    /// `tls`, `auth.jwt`, `allow_from`, connection caps (`max_body` bounds a search's body).
    pub serve: FhirSourceFile,
    /// The records asked: at least one.
    #[schemars(with = "Vec<MemberFile>")]
    pub members: Spanned<Vec<MemberFile>>,
    /// The largest answer read from one member (default 16MiB); a larger one counts as that
    /// member failing for the query, so one member cannot fill the facade's memory.
    #[serde(default)]
    #[schemars(with = "Option<ByteSize>")]
    pub max_member_answer: Option<Spanned<ByteSize>>,
    /// Who may ask, and why.
    #[serde(default)]
    pub policy: Option<PolicyFile>,
    /// The bridge's FHIR base as callers reach it, for the links it gives (a search's `next`
    /// page), e.g. `https://bridge.example.nhs.uk/fhir` behind a proxy that ends TLS. Default:
    /// the caller's `Host`, with `https` when `serve.tls` is set.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub public_base: Option<Spanned<String>>,
}

/// The access policy for record-to-record sharing.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The purposes a token's `reason_for_request` may name (default `[directcare]`).
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub purposes: Option<Vec<Spanned<String>>>,
    /// The ODS codes of the organisations that may ask (default: any organisation a valid
    /// token names).
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub organisations: Option<Vec<Spanned<String>>>,
    /// A file (relative to the config folder) of NHS numbers whose records are not shared:
    /// recorded dissent. One number a line; `#` starts a comment. Read at start.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub dissent: Option<Spanned<String>>,
}

/// The policy, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub purposes: Vec<String>,
    /// `None`: any organisation a valid token names.
    pub organisations: Option<Vec<String>>,
    pub dissent: Option<std::path::PathBuf>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            purposes: vec!["directcare".into()],
            organisations: None,
            dissent: None,
        }
    }
}

/// One record the bridge asks.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberFile {
    /// A name for logs, tags and the audit log: lower-case letters, digits, '-'.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// The ODS code of the organisation that holds this record: every entry from this member is
    /// tagged with it as the data owner.
    #[schemars(with = "String")]
    pub ods: Spanned<String>,
    /// How to reach it, as a `fhir` destination says it: `base`, `auth`, `tls`, `timeout`
    /// (here, how long a query waits for this member before answering without it; default 30s).
    pub fhir: FhirDestinationFile,
    /// The resource types it answers searches for (default: every type the bridge serves).
    #[serde(default)]
    #[schemars(with = "Option<Vec<SearchType>>")]
    pub serves: Option<Vec<Spanned<String>>>,
    /// The destinations that send this record its feeds, as `ROUTE/DESTINATION` (e.g.
    /// `adt-to-chie/chie`). With it, the bridge asks this member for a patient only when one of
    /// them has carried a message about that NHS number — unless no member's feeds have, when
    /// every member is asked. Without it, this member is always asked. Name them only for a
    /// record whose patients all arrive through these feeds: a patient it holds from before
    /// (or from elsewhere) is not in the index.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub fed_by: Option<Vec<Spanned<String>>>,
}

/// The resource types the bridge searches, the UK Core Access set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, schemars::JsonSchema)]
pub enum SearchType {
    Patient,
    AllergyIntolerance,
    Condition,
    MedicationStatement,
    MedicationRequest,
    Encounter,
    Observation,
    DiagnosticReport,
    Immunization,
    DocumentReference,
}

impl SearchType {
    pub const ALL: [SearchType; 10] = [
        SearchType::Patient,
        SearchType::AllergyIntolerance,
        SearchType::Condition,
        SearchType::MedicationStatement,
        SearchType::MedicationRequest,
        SearchType::Encounter,
        SearchType::Observation,
        SearchType::DiagnosticReport,
        SearchType::Immunization,
        SearchType::DocumentReference,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SearchType::Patient => "Patient",
            SearchType::AllergyIntolerance => "AllergyIntolerance",
            SearchType::Condition => "Condition",
            SearchType::MedicationStatement => "MedicationStatement",
            SearchType::MedicationRequest => "MedicationRequest",
            SearchType::Encounter => "Encounter",
            SearchType::Observation => "Observation",
            SearchType::DiagnosticReport => "DiagnosticReport",
            SearchType::Immunization => "Immunization",
            SearchType::DocumentReference => "DocumentReference",
        }
    }

    /// The type named exactly `s` (FHIR's names are case-sensitive).
    pub fn parse(s: &str) -> Option<SearchType> {
        SearchType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for SearchType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated `bridge.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub serve: FhirSource,
    pub members: Vec<Member>,
    pub max_member_answer: u64,
    pub policy: Policy,
    /// `public_base`, without a trailing `/`.
    pub public_base: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub ods: String,
    pub fhir: FhirDestination,
    /// In `SearchType::ALL`'s order.
    pub serves: Vec<SearchType>,
    /// `(route, destination)` of the feeds that reach this member (`fed_by`); empty: always
    /// asked.
    pub fed_by: Vec<(String, String)>,
}

/// A `fed_by` entry, kept with where it was written so it can be checked against the routes
/// once every file is read.
#[derive(Debug, Clone)]
pub(crate) struct FeedRef {
    pub route: String,
    pub destination: String,
    pub line: u64,
    pub column: u64,
}

/// An ODS code as the organisation data service issues them: 3 to 10 capital letters and
/// digits (trusts `RXX`, sites `RXX01`, practices `A12345`).
pub(crate) fn ods_ok(s: &str) -> bool {
    (3..=10).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Checks `bridge.yaml`; also returns its `fed_by` entries, for [`check_feeds`] once every
/// route is known.
pub(crate) fn bridge(at: &mut At<'_>, base: &Path, f: &BridgeFile) -> (Bridge, Vec<FeedRef>) {
    let mut feeds = Vec::new();
    crate::validate::check_version(at, &f.version);
    let serve = crate::fhir_source::fhir_source(at, base, &f.serve);
    let authenticated =
        serve.auth.is_some() || serve.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    if !serve.listen.ip().is_loopback() && !authenticated {
        at.err(&f.serve.listen, format!("serve.listen {} answers patient records to other hosts, so callers must authenticate: add serve.auth.jwt or serve.tls with client_ca (or listen on 127.0.0.1)", serve.listen));
    } else if !serve.listen.ip().is_loopback() && serve.tls.is_none() {
        at.warn(&f.serve.listen, format!("serve.listen {} answers patient records to other hosts in plaintext: add serve.tls", serve.listen));
    }
    if f.members.value.is_empty() {
        at.err(&f.members, "members is empty: expected at least one record to ask, e.g. - { name: chie, ods: X1A2B, fhir: { base: https://… } }");
    }
    let mut members = Vec::with_capacity(f.members.value.len());
    let mut seen: Vec<(String, usize)> = Vec::new();
    for m in &f.members.value {
        let name = m.name.value.clone();
        if !crate::validate::valid_name(&name) {
            at.err(&m.name, format!("member name {name:?} is not valid: expected lower-case letters, digits and '-', such as chie"));
        } else if let Some((_, line)) = seen.iter().find(|(n, _)| *n == name) {
            at.err(
                &m.name,
                format!("member {name:?} is already defined at line {line}"),
            );
        } else {
            seen.push((name.clone(), m.name.referenced.line() as usize));
        }
        if !ods_ok(&m.ods.value) {
            at.err(&m.ods, format!("ods {:?} is not an ODS code: expected 3 to 10 capital letters and digits, such as RHM or A12345", m.ods.value));
        }
        let fhir = crate::fhir_destination::fhir_target(at, base, &m.fhir);
        let serves = match &m.serves {
            None => SearchType::ALL.to_vec(),
            Some(list) => {
                let mut types = Vec::new();
                for t in list {
                    match SearchType::parse(&t.value) {
                        Some(ty) if types.contains(&ty) => {
                            at.err(t, format!("{ty} is listed twice"))
                        }
                        Some(ty) => types.push(ty),
                        None => at.err(
                            t,
                            format!(
                                "{:?} is not a type the bridge searches: expected one of {}",
                                t.value,
                                SearchType::ALL.map(SearchType::as_str).join(", ")
                            ),
                        ),
                    }
                }
                if list.is_empty() {
                    at.err(
                        &m.name,
                        "serves is empty: leave it out to serve every type, or name at least one",
                    );
                }
                types.sort();
                types
            }
        };
        let mut fed_by = Vec::new();
        for entry in m.fed_by.iter().flatten() {
            match entry.value.trim().split_once('/') {
                Some((route, dest))
                    if crate::validate::valid_name(route) && crate::validate::valid_name(dest) =>
                {
                    feeds.push(FeedRef {
                        route: route.into(),
                        destination: dest.into(),
                        line: entry.referenced.line(),
                        column: entry.referenced.column(),
                    });
                    fed_by.push((route.to_string(), dest.to_string()));
                }
                _ => at.err(entry, format!("fed_by {:?} is not ROUTE/DESTINATION: expected a route's name and one of its destinations, such as adt-to-chie/chie", entry.value)),
            }
        }
        if m.fed_by.as_ref().is_some_and(Vec::is_empty) {
            at.err(
                &m.name,
                "fed_by is empty: leave it out to ask this member for every patient, or name the ROUTE/DESTINATION that feeds it",
            );
        }
        if let Some(fhir) = fhir {
            members.push(Member {
                name,
                ods: m.ods.value.clone(),
                fhir,
                serves,
                fed_by,
            });
        }
    }
    let max_member_answer = crate::validate::size(
        at,
        f.max_member_answer.as_ref(),
        16 << 20,
        "max_member_answer",
        64 << 10..=1 << 30,
    );
    let policy = f
        .policy
        .as_ref()
        .map(|p| policy(at, base, p, serve.auth.is_some()))
        .unwrap_or_default();
    let public_base = f.public_base.as_ref().and_then(|b| {
        let base = b.value.trim().trim_end_matches('/');
        let ok = ["https://", "http://"]
            .iter()
            .any(|s| base.len() > s.len() && base.starts_with(s))
            && !base.contains(['?', '#', ' ']);
        if !ok {
            at.err(b, format!("public_base {:?} is not a base URL: expected where callers reach the bridge, such as https://bridge.example.nhs.uk/fhir", b.value));
        }
        ok.then(|| base.to_string())
    });
    (
        Bridge {
            serve,
            members,
            max_member_answer,
            policy,
            public_base,
        },
        feeds,
    )
}

/// Each `fed_by` names a route of this config and one of its destinations.
pub(crate) fn check_feeds(
    file: &Path,
    feeds: &[FeedRef],
    routes: &[crate::Route],
) -> Vec<crate::Diagnostic> {
    let mut errors = Vec::new();
    for f in feeds {
        let problem = match routes.iter().find(|r| r.name == f.route) {
            None => format!(
                "fed_by names route {:?}, which no route file defines (routes: {})",
                f.route,
                routes
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            // A batch's record carries no NHS number (each message inside has its own), so
            // the index never sees the patients a split route delivers.
            Some(r) if r.steps.iter().any(|s| matches!(s, crate::Step::Split)) => format!(
                "fed_by names route {:?}, which splits batches: the patient index does not see the patients inside a batch, so this member cannot be indexed by it; leave fed_by out for this member (it is then asked for every patient)",
                f.route
            ),
            Some(r) if !r.destinations.iter().any(|d| d.name == f.destination) => format!(
                "fed_by names destination {:?} of route {:?}, which has no such destination (its destinations: {})",
                f.destination,
                f.route,
                r.destinations
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(_) => continue,
        };
        errors.push(crate::Diagnostic::error(file, f.line, f.column, problem));
    }
    errors
}

/// `tokens`: whether callers carry tokens (`serve.auth.jwt`): only a token names a purpose and
/// an organisation, so rules on them without tokens would never be applied.
fn policy(at: &mut At<'_>, base: &Path, p: &PolicyFile, tokens: bool) -> Policy {
    let mut out = Policy::default();
    for rule in [p.purposes.as_ref(), p.organisations.as_ref()]
        .into_iter()
        .flatten()
    {
        if let (false, Some(first)) = (tokens, rule.first()) {
            at.err(first, "purposes and organisations are read from the caller's token: add serve.auth.jwt, or leave them out (client certificates name no purpose)");
        }
    }
    if let Some(purposes) = &p.purposes {
        out.purposes = purposes
            .iter()
            .map(|s| s.value.trim().to_string())
            .collect();
        for s in purposes.iter().filter(|s| s.value.trim().is_empty()) {
            at.err(
                s,
                "a purpose is empty: expected a reason_for_request value such as directcare",
            );
        }
    }
    if let Some(orgs) = &p.organisations {
        for o in orgs.iter().filter(|o| !ods_ok(&o.value)) {
            at.err(o, format!("{:?} is not an ODS code: expected 3 to 10 capital letters and digits, such as RHM or A12345", o.value));
        }
        out.organisations = Some(orgs.iter().map(|o| o.value.clone()).collect());
    }
    if let Some(d) = &p.dissent {
        if d.value.trim().is_empty() {
            at.err(
                d,
                "dissent is empty: expected a file of NHS numbers such as dissent.txt",
            );
        } else {
            out.dissent = Some(base.join(d.value.trim()));
        }
    }
    out
}
