//! The bridge (issue 14): one FHIR query answered from two records that are not Wyvern's code —
//! two Medplum servers standing in for CHIE and the Dorset Care Record, loaded with synthetic
//! patients — through the real `wyvern` process.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{EngineProcess, Wire, free_addr, http_get, wait_listening, wait_until};
use crate::medplum::Medplum;

const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// Held by both records.
const BOTH: &str = "9990000018";
/// Held by the DCR stand-in only.
const DCR_ONLY: &str = "9990000026";

fn put(m: &Medplum, path: &str, body: Value) {
    let (code, text) = m.request("PUT", path, &body.to_string());
    assert!(code == 200 || code == 201, "PUT {path}: {code} {text}");
}

/// Each resource PUT at its own type and id.
fn load(m: &Medplum, resources: &[Value]) {
    for r in resources {
        let path = format!(
            "/{}/{}",
            r["resourceType"].as_str().expect("type"),
            r["id"].as_str().expect("id")
        );
        put(m, &path, r.clone());
    }
}

fn patient(id: &str, nhs: &str, family: &str) -> Value {
    serde_json::json!({ "resourceType": "Patient", "id": id, "identifier": [{ "system": NHS, "value": nhs }], "name": [{ "family": family, "given": ["ALEX"] }] })
}

fn clinical(ty: &str, id: &str, patient: &str, business_id: &str) -> Value {
    let mut r = serde_json::json!({ "resourceType": ty, "id": id, "identifier": [{ "system": "https://records.example/id", "value": business_id }], "patient": { "reference": format!("Patient/{patient}") } });
    if ty == "Condition" {
        r["subject"] = r["patient"].take();
        r.as_object_mut().expect("as expected").remove("patient");
    }
    r
}

/// Two records: the patient in both (an allergy both hold, a condition each), another in DCR.
fn records() -> (Medplum, Medplum) {
    let (chie, dcr) = (Medplum::start(), Medplum::start());
    load(
        &chie,
        &[
            patient("p-chie", BOTH, "CHIE-SURNAME"),
            clinical("AllergyIntolerance", "al-chie", "p-chie", "ALLERGY-1"),
            clinical("Condition", "c-chie", "p-chie", "COND-CHIE"),
        ],
    );
    load(
        &dcr,
        &[
            patient("p-dcr", BOTH, "DCR-SURNAME"),
            clinical("AllergyIntolerance", "al-dcr", "p-dcr", "ALLERGY-1"),
            clinical("Condition", "c-dcr", "p-dcr", "COND-DCR"),
            patient("q-dcr", DCR_ONLY, "OTHER"),
            clinical("Condition", "c-q", "q-dcr", "COND-Q"),
        ],
    );
    (chie, dcr)
}

fn bridge_yaml(listen: SocketAddr, chie: SocketAddr, dcr: SocketAddr) -> String {
    format!(
        "version: 1\nserve:\n  listen: \"{listen}\"\nmembers:\n  \
         - name: chie\n    ods: XCH01\n    fhir: {{ base: \"http://{chie}/fhir\", timeout: 2s }}\n  \
         - name: dcr\n    ods: XDC01\n    fhir: {{ base: \"http://{dcr}/fhir\", timeout: 2s }}\n"
    )
}

/// An engine whose bridge has the two records as members, ready; and where it listens.
fn bridge_over(chie: &Medplum, dcr: &Medplum) -> (EngineProcess, SocketAddr) {
    let listen = free_addr();
    let e = EngineProcess::start_with_files(&[(
        "bridge.yaml",
        &bridge_yaml(listen, chie.addr, dcr.addr),
    )]);
    wait_listening(listen, Duration::from_secs(20));
    (e, listen)
}

fn search(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (code, body) = http_get(addr, path);
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {code} {e}: {body}"));
    (code, v)
}

fn matches(b: &Value) -> Vec<&Value> {
    b["entry"]
        .as_array()
        .expect("as expected")
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .collect()
}

fn members(entry: &Value) -> Vec<&str> {
    entry["resource"]["meta"]["tag"]
        .as_array()
        .expect("as expected")
        .iter()
        .filter(|t| t["system"] == "urn:wyvern:bridge:member")
        .map(|t| t["code"].as_str().expect("as expected"))
        .collect()
}

fn outcomes(b: &Value) -> String {
    b["entry"]
        .as_array()
        .expect("as expected")
        .iter()
        .filter(|e| e["search"]["mode"] == "outcome")
        .map(|e| e["resource"].to_string())
        .collect()
}

fn access_records(store: &std::path::Path) -> Vec<wyvern_store::AuditEntry> {
    let mut found = Vec::new();
    wyvern_store::read_audit(store, |r| {
        if r.entry.action == wyvern_store::AuditAction::Access {
            found.push(r.entry.clone());
        }
    })
    .expect("read the audit log");
    found
}

#[test]
fn one_query_answers_from_both_records_tagged_linked_and_audited() {
    let (chie, dcr) = records();
    let (e, listen) = bridge_over(&chie, &dcr);

    // The patient both hold: two Patient entries, linked to each other, each tagged.
    let (code, b) = search(listen, &format!("/fhir/Patient?identifier={NHS}|{BOTH}"));
    assert_eq!(code, 200, "{b}");
    assert_eq!(
        (
            b["resourceType"].as_str(),
            b["type"].as_str(),
            b["total"].as_u64()
        ),
        (Some("Bundle"), Some("searchset"), Some(2)),
        "{b}"
    );
    let m = matches(&b);
    assert_eq!(
        m[0]["fullUrl"],
        format!("http://{}/fhir/Patient/p-chie", chie.addr)
    );
    assert_eq!(
        m[0]["resource"]["meta"]["source"],
        format!("http://{}/fhir", chie.addr)
    );
    assert_eq!(members(m[0]), ["chie"]);
    assert_eq!(members(m[1]), ["dcr"]);
    assert!(
        m[0]["resource"]["meta"]["tag"]
            .to_string()
            .contains("XCH01"),
        "{}",
        m[0]
    );
    assert_eq!(
        m[0]["resource"]["link"][0]["other"]["reference"],
        format!("http://{}/fhir/Patient/p-dcr", dcr.addr)
    );
    assert_eq!(
        m[1]["resource"]["link"][0]["other"]["reference"],
        format!("http://{}/fhir/Patient/p-chie", chie.addr)
    );

    // The allergy both hold (one business identifier) appears once, with both provenances.
    let (code, b) = search(
        listen,
        &format!("/fhir/AllergyIntolerance?patient.identifier={NHS}|{BOTH}"),
    );
    assert_eq!(code, 200, "{b}");
    let m = matches(&b);
    assert_eq!(m.len(), 1, "{b}");
    assert_eq!(members(m[0]), ["chie", "dcr"]);

    // Each record's own condition, and nothing of the other patient's.
    let (_, b) = search(
        listen,
        &format!("/fhir/Condition?patient.identifier={NHS}|{BOTH}"),
    );
    let ids: Vec<&str> = matches(&b)
        .iter()
        .map(|e| e["resource"]["id"].as_str().expect("as expected"))
        .collect();
    assert_eq!(ids, ["c-chie", "c-dcr"], "{b}");

    // The metadata names what the members serve together.
    let (code, cap) = search(listen, "/fhir/metadata");
    assert_eq!(
        (code, cap["resourceType"].as_str()),
        (200, Some("CapabilityStatement"))
    );

    // DCR down: a partial answer that says so, never a 5xx for the whole query.
    drop(dcr);
    let (code, b) = search(
        listen,
        &format!("/fhir/Condition?patient.identifier={NHS}|{BOTH}"),
    );
    assert_eq!(code, 200, "{b}");
    let ids: Vec<&str> = matches(&b)
        .iter()
        .map(|e| e["resource"]["id"].as_str().expect("as expected"))
        .collect();
    assert_eq!(ids, ["c-chie"]);
    assert!(outcomes(&b).contains("dcr (ODS XDC01) gave nothing"), "{b}");

    // And in the metrics.
    let (_, metrics) = http_get(e.http, "/metrics");
    assert!(
        metrics.contains("wyvern_bridge_queries_total{outcome=\"answered\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wyvern_bridge_member_failures_total{member=\"dcr\"} 1"),
        "{metrics}"
    );

    // Every query is in the audit log with its patient and members.
    let audited = access_records(&e.store_dir());
    assert_eq!(audited.len(), 4, "{audited:?}");
    assert!(
        audited
            .iter()
            .all(|a| a.nhs_number.as_deref() == Some(BOTH))
    );
    let last = audited
        .last()
        .expect("as expected")
        .detail
        .clone()
        .expect("as expected");
    assert!(
        last.contains("GET Condition")
            && last.contains("chie (1 entries)")
            && last.contains("dcr (failed"),
        "{last}"
    );
}

#[test]
fn a_member_that_does_not_answer_in_time_gives_a_partial_result() {
    let chie = Medplum::start();
    load(&chie, &[patient("p-chie", BOTH, "CHIE-SURNAME")]);
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("as expected");
    let silent_addr = silent.local_addr().expect("as expected");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().flatten() {
            held.push(s);
        }
    });
    let listen = free_addr();
    let _e = EngineProcess::start_with_files(&[(
        "bridge.yaml",
        &bridge_yaml(listen, chie.addr, silent_addr),
    )]);
    wait_listening(listen, Duration::from_secs(20));
    let started = std::time::Instant::now();
    let (code, b) = search(listen, &format!("/fhir/Patient?identifier={NHS}|{BOTH}"));
    assert_eq!(code, 200, "{b}");
    assert_eq!(b["total"], 1, "{b}");
    assert!(outcomes(&b).contains("no answer within 2s"), "{b}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the query waited {:?}",
        started.elapsed()
    );
}

#[test]
fn bad_searches_get_an_operation_outcome_and_ask_no_member() {
    let listen = free_addr();
    // Members that do not exist: a search that reached one would come back with an outcome.
    let nowhere = free_addr();
    let e =
        EngineProcess::start_with_files(&[("bridge.yaml", &bridge_yaml(listen, nowhere, nowhere))]);
    wait_listening(listen, Duration::from_secs(20));
    for (path, status, expected) in [
        (
            format!("/fhir/Patient?identifier={NHS}|9990000019"),
            400,
            "not a valid NHS number",
        ),
        (
            "/fhir/Patient?family=SMITH".to_string(),
            400,
            "not supported",
        ),
        ("/fhir/Patient".to_string(), 400, "identifier is required"),
        (
            format!("/fhir/Practitioner?identifier={NHS}|{BOTH}"),
            404,
            "not a resource type this bridge searches",
        ),
        (
            format!(
                "/fhir/Condition?patient.identifier={NHS}|{BOTH}&patient.identifier={NHS}|{BOTH}"
            ),
            400,
            "more than once",
        ),
        (
            format!("/fhir/Patient?identifier={NHS}|{BOTH}&_count=99999"),
            400,
            "_count",
        ),
        (
            "/fhir/Patient?identifier=%ZZ%".to_string(),
            400,
            "not a valid NHS number",
        ),
        (
            "/fhir/Patient/p-chie".to_string(),
            404,
            "the bridge answers",
        ),
    ] {
        let (code, b) = search(listen, &path);
        assert_eq!(code, status, "{path}: {b}");
        assert_eq!(b["resourceType"], "OperationOutcome", "{path}: {b}");
        assert!(b.to_string().contains(expected), "{path}: {b}");
    }
    // The bridge only reads.
    let (code, body) = crate::harness::http_post(listen, "/fhir/Patient", "{}");
    assert_eq!(code, 405, "{body}");
    assert!(
        body.contains("OperationOutcome") && body.contains("only reads"),
        "{body}"
    );
    assert!(access_records(&e.store_dir()).is_empty());
    // An engine with a bridge and no route is whole: every task still running.
    assert_eq!(
        crate::harness::http_get(e.http, "/ready").0,
        200,
        "{}",
        e.log()
    );
}

/// A member that ignores search parameters (the stand-in answers every resource of the type it
/// holds) must not leak other patients: the bridge keeps only the patient asked for, and only
/// records about that patient's ids there.
#[test]
fn a_member_that_ignores_the_search_gives_away_no_other_patient() {
    let (chie, dcr) = (free_addr(), free_addr());
    let ignoring = ["--ignore-search"];
    let (_a, _b) = (
        crate::fhir::stand_in_with(chie, &ignoring),
        crate::fhir::stand_in_with(dcr, &ignoring),
    );
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bridge");
    for (addr, file) in [(chie, "chie.json"), (dcr, "dcr.json")] {
        let bundle = std::fs::read_to_string(example.join(file)).expect("example data");
        let (code, body) = crate::harness::http_post(addr, "/fhir", &bundle);
        assert_eq!(code, 200, "{body}");
    }
    let listen = free_addr();
    let _e = EngineProcess::start_with_files(&[("bridge.yaml", &bridge_yaml(listen, chie, dcr))]);
    wait_listening(listen, Duration::from_secs(20));
    let (_, b) = search(listen, &format!("/fhir/Patient?identifier={NHS}|{BOTH}"));
    let ids: Vec<&str> = matches(&b)
        .iter()
        .map(|e| e["resource"]["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["p-chie", "p-dcr"], "{b}");
    let (_, b) = search(
        listen,
        &format!("/fhir/Condition?patient.identifier={NHS}|{BOTH}"),
    );
    let ids: Vec<&str> = matches(&b)
        .iter()
        .map(|e| e["resource"]["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["c-chie", "c-dcr"], "{b}");
}

/// The access policy with real tokens: a token must give a purpose the policy allows (direct
/// care by default) and an organisation it lists; a patient with recorded dissent is not
/// shared; a restricted record never leaves; each refusal is a 403 that says why, audited.
#[test]
fn the_access_policy_decides_who_may_ask_and_what_leaves() {
    let chie = Medplum::start();
    let mut hidden = clinical("Condition", "c-hidden", "p-chie", "COND-HIDDEN");
    hidden["meta"] = serde_json::json!({ "security": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R" }] });
    load(
        &chie,
        &[
            patient("p-chie", BOTH, "CHIE-SURNAME"),
            patient("q-chie", DCR_ONLY, "DISSENTING"),
            clinical("Condition", "c-open", "p-chie", "COND-OPEN"),
            hidden,
        ],
    );
    let issuer = crate::fhir_auth::Issuer::new("k1");
    let audience = "https://bridge.example/fhir";
    let listen = free_addr();
    let yaml = format!(
        "version: 1\nserve:\n  listen: \"{listen}\"\n  auth:\n    jwt: {{ keys: jwks.json, audience: \"{audience}\" }}\n\
         members:\n  - name: chie\n    ods: XCH01\n    fhir: {{ base: \"http://{}/fhir\", timeout: 2s }}\n\
         policy:\n  organisations: [A12345]\n  dissent: dissent.txt\n",
        chie.addr
    );
    let e = EngineProcess::start_with_files(&[
        ("bridge.yaml", &yaml),
        ("jwks.json", &issuer.jwks),
        ("dissent.txt", &format!("# recorded dissent\n{DCR_ONLY}\n")),
    ]);
    wait_listening(listen, Duration::from_secs(20));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let token = |ods: &str, purpose: Option<&str>| {
        let mut claims = serde_json::json!({ "sub": "gp-system", "aud": audience, "exp": now + 300, "ods": ods });
        if let Some(p) = purpose {
            claims["reason_for_request"] = p.into();
        }
        issuer.token("k1", &claims)
    };
    let ask = |path: &str, token: Option<String>| {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n");
        let (code, body) = crate::harness::http_raw(listen, req.as_bytes());
        (
            code,
            serde_json::from_str::<Value>(&body)
                .unwrap_or_else(|e| panic!("{path}: {code} {e}: {body}")),
        )
    };
    let conditions = format!("/fhir/Condition?patient.identifier={NHS}|{BOTH}");
    for (token, status, expected) in [
        (None, 401, "requires an OAuth2 bearer token"),
        (
            Some(token("A12345", None)),
            403,
            "reason_for_request is required",
        ),
        (
            Some(token("A12345", Some("research"))),
            403,
            "is not one this bridge shares records for",
        ),
        (
            Some(token("X99999", Some("directcare"))),
            403,
            "organisation X99999 may not ask",
        ),
    ] {
        let (code, b) = ask(&conditions, token);
        assert_eq!(code, status, "{b}");
        assert!(b.to_string().contains(expected), "{b}");
    }
    // Allowed: the open record comes back, the restricted one does not.
    let (code, b) = ask(&conditions, Some(token("A12345", Some("directcare"))));
    assert_eq!(code, 200, "{b}");
    let ids: Vec<&str> = matches(&b)
        .iter()
        .map(|e| e["resource"]["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["c-open"], "{b}");
    // Dissent: refused before any member is asked.
    let (code, b) = ask(
        &format!("/fhir/Patient?identifier={NHS}|{DCR_ONLY}"),
        Some(token("A12345", Some("directcare"))),
    );
    assert_eq!(code, 403, "{b}");
    assert!(b.to_string().contains("recorded dissent"), "{b}");

    let mut records = Vec::new();
    wyvern_store::read_audit(&e.store_dir(), |r| records.push(r.entry.clone())).expect("audit");
    let denied: Vec<_> = records
        .iter()
        .filter(|r| r.action == wyvern_store::AuditAction::Denied)
        .collect();
    assert_eq!(denied.len(), 4, "{records:?}");
    // Each refusal names whose record was sought.
    assert!(denied.iter().all(|d| d.nhs_number.is_some()), "{denied:?}");
    assert_eq!(
        denied.last().and_then(|d| d.nhs_number.as_deref()),
        Some(DCR_ONLY)
    );
    let access: Vec<_> = records
        .iter()
        .filter(|r| r.action == wyvern_store::AuditAction::Access)
        .collect();
    assert_eq!(access.len(), 1, "{records:?}");
    let detail = access[0].detail.as_deref().unwrap_or("");
    assert_eq!(access[0].actor, "token:gp-system");
    assert!(
        detail.contains("organisation A12345; purpose directcare")
            && detail.contains("1 withheld as restricted"),
        "{detail}"
    );
}

/// A route that takes a trust's ADT over MLLP and files it for one record (the feed the
/// patient index learns from).
fn feed(route: &str, listen: SocketAddr, dest: &str) -> String {
    format!(
        "version: 1\nroute: {route}\nsource:\n  mllp: {{ listen: \"{listen}\" }}\n\
         destinations:\n  - name: {dest}\n    file: {{ dir: \"{{dir}}/out-{dest}\" }}\n"
    )
}

fn adt_for(trigger: &str, control_id: &str, nhs: &str, merged: Option<&str>) -> Vec<u8> {
    let mut m = format!(
        "MSH|^~\\&|PAS|RX1|WYVERN|REGION|20261204120000||ADT^{trigger}|{control_id}|P|2.4\r\
         EVN|{trigger}|20261204120000\r\
         PID|1||{nhs}^^^NHS^NH||TESTPATIENT^ALEX||19700101|U\r"
    );
    if let Some(old) = merged {
        m.push_str(&format!("MRG|{old}^^^NHS^NH\r"));
    }
    m.into_bytes()
}

/// The detail of the newest access record.
fn last_access(store: &std::path::Path) -> String {
    access_records(store)
        .last()
        .and_then(|a| a.detail.clone())
        .unwrap_or_default()
}

/// The regional patient index: once a feed has carried a patient to one record, a query asks
/// only that record; a patient no feed has carried asks every record; a merge (A40) gives the
/// surviving NHS number the records of the one merged away.
#[test]
fn the_patient_index_asks_only_the_records_whose_feeds_carried_the_patient() {
    let (chie, dcr) = records();
    let (listen, to_chie, to_dcr) = (free_addr(), free_addr(), free_addr());
    let bridge = format!(
        "version: 1\nserve:\n  listen: \"{listen}\"\nmembers:\n  \
         - name: chie\n    ods: XCH01\n    fhir: {{ base: \"http://{}/fhir\", timeout: 2s }}\n    fed_by: [adt-chie/chie]\n  \
         - name: dcr\n    ods: XDC01\n    fhir: {{ base: \"http://{}/fhir\", timeout: 2s }}\n    fed_by: [adt-dcr/dcr]\n",
        chie.addr, dcr.addr
    );
    let e = EngineProcess::start_with_files(&[
        ("bridge.yaml", &bridge),
        ("adt-chie.yaml", &feed("adt-chie", to_chie, "chie")),
        ("adt-dcr.yaml", &feed("adt-dcr", to_dcr, "dcr")),
    ]);
    wait_listening(listen, Duration::from_secs(20));
    let conditions = |nhs: &str| {
        search(
            listen,
            &format!("/fhir/Condition?patient.identifier={NHS}|{nhs}"),
        )
    };

    // No feed has carried this patient: both records are asked.
    let (code, b) = conditions(DCR_ONLY);
    assert_eq!(code, 200, "{b}");
    assert_eq!(b["total"], 1, "{b}");
    let detail = last_access(&e.store_dir());
    assert!(
        detail.contains("chie (0 entries)") && detail.contains("dcr (1 entries)"),
        "{detail}"
    );

    // DCR's feed carries the patient: from then on only DCR is asked.
    wait_listening(to_dcr, Duration::from_secs(20));
    let ack = Wire::connect(to_dcr).exchange(&adt_for("A01", "IDX1", DCR_ONLY, None));
    assert!(ack.contains("MSA|AA|IDX1"), "{ack}");
    wait_until(Duration::from_secs(10), || {
        conditions(DCR_ONLY);
        last_access(&e.store_dir()).contains("chie (not asked: the patient index")
    });
    let (code, b) = conditions(DCR_ONLY);
    assert_eq!((code, b["total"].as_u64()), (200, Some(1)), "{b}");
    assert_eq!(members(matches(&b)[0]), ["dcr"]);
    let detail = last_access(&e.store_dir());
    assert!(
        detail.contains("chie (not asked: the patient index") && detail.contains("dcr (1 entries)"),
        "{detail}"
    );

    // A40 through CHIE's feed: MERGED survives, DCR_ONLY is merged into it. Both records
    // are asked for the survivor: CHIE carried the merge, DCR the patient merged away.
    const MERGED: &str = "9990000034";
    let ack = Wire::connect(to_chie).exchange(&adt_for("A40", "IDX2", MERGED, Some(DCR_ONLY)));
    assert!(ack.contains("MSA|AA|IDX2"), "{ack}");
    // Once the merge is indexed (read from the store, so the check below cannot pass merely
    // because the index does not know the survivor yet).
    let indexed = || {
        wyvern_store::InboxReader::open(&e.store_dir())
            .and_then(|r| r.lanes_of(MERGED))
            .unwrap_or_default()
    };
    wait_until(Duration::from_secs(10), || indexed().len() == 2);
    assert_eq!(
        indexed(),
        [
            ("adt-chie".to_string(), "chie".to_string()),
            ("adt-dcr".into(), "dcr".into())
        ]
    );
    conditions(MERGED);
    let detail = last_access(&e.store_dir());
    assert!(
        detail.contains("chie (0 entries)") && detail.contains("dcr (0 entries)"),
        "{detail}"
    );
}

/// `Patient/{NHS number}/$everything` gives every type for the patient from both records in one
/// searchset (the allergy both hold once, the patients linked), `_type` narrows it, and
/// `patient=` names the patient by the same id; a member's own patient id is refused.
#[test]
fn everything_and_the_patient_parameter_name_the_patient_by_nhs_number() {
    let (chie, dcr) = records();
    let (e, listen) = bridge_over(&chie, &dcr);

    let (code, b) = search(listen, &format!("/fhir/Patient/{BOTH}/$everything"));
    assert_eq!(code, 200, "{b}");
    let kinds: Vec<(&str, &str)> = matches(&b)
        .iter()
        .map(|e| {
            (
                e["resource"]["resourceType"].as_str().expect("type"),
                e["resource"]["id"].as_str().expect("id"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("Patient", "p-chie"),
            ("Patient", "p-dcr"),
            ("AllergyIntolerance", "al-chie"),
            ("Condition", "c-chie"),
            ("Condition", "c-dcr"),
        ],
        "{b}"
    );
    assert_eq!(b["total"], 5, "{b}");
    assert_eq!(members(matches(&b)[2]), ["chie", "dcr"]);
    assert!(outcomes(&b).is_empty(), "{b}");
    let detail = last_access(&e.store_dir());
    assert!(
        detail.contains("GET Patient/$everything (Patient, AllergyIntolerance")
            && detail.contains("chie (3 entries)")
            && detail.contains("dcr (3 entries)"),
        "{detail}"
    );

    let (code, b) = search(
        listen,
        &format!("/fhir/Patient/{BOTH}/$everything?_type=Condition&_count=10"),
    );
    assert_eq!((code, b["total"].as_u64()), (200, Some(2)), "{b}");

    for id in [BOTH.to_string(), format!("Patient/{BOTH}")] {
        let (code, b) = search(listen, &format!("/fhir/Condition?patient={id}"));
        assert_eq!((code, b["total"].as_u64()), (200, Some(2)), "{id}: {b}");
    }

    // A member's own id names one record, not the citizen: refused, saying how to ask.
    let (code, b) = search(listen, "/fhir/Patient/p-chie/$everything");
    assert_eq!(code, 400, "{b}");
    assert!(
        b.to_string().contains("names a patient by NHS number"),
        "{b}"
    );
    let (code, b) = search(listen, "/fhir/Condition?patient=p-chie");
    assert_eq!(code, 400, "{b}");
}

/// A search larger than `_count` pages across members: the first page holds each member's
/// first `_count`, a `next` link (the bridge's own) goes on only with the members that held
/// more, and the pages together hold every entry once.
#[test]
fn a_search_pages_across_members() {
    let (chie, dcr) = records();
    load(
        &chie,
        &[
            clinical("Condition", "c-chie-2", "p-chie", "COND-CHIE-2"),
            clinical("Condition", "c-chie-3", "p-chie", "COND-CHIE-3"),
        ],
    );
    let listen = free_addr();
    let yaml = format!(
        "{}public_base: \"https://bridge.example/fhir/\"\n",
        bridge_yaml(listen, chie.addr, dcr.addr)
    );
    let _e = EngineProcess::start_with_files(&[("bridge.yaml", &yaml)]);
    wait_listening(listen, Duration::from_secs(20));

    let mut path = format!("/fhir/Condition?patient={BOTH}&_count=2");
    let mut seen: Vec<String> = Vec::new();
    let mut pages = 0;
    loop {
        let (code, b) = search(listen, &path);
        assert_eq!(code, 200, "{path}: {b}");
        assert!(outcomes(&b).is_empty(), "{b}");
        pages += 1;
        seen.extend(
            matches(&b)
                .iter()
                .map(|e| e["resource"]["id"].as_str().expect("id").to_string()),
        );
        let next = b["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_string);
        let Some(url) = next else { break };
        // Under the base callers reach (`public_base`: a proxy ends TLS in front).
        assert!(
            url.starts_with("https://bridge.example/fhir/Condition?"),
            "{url}"
        );
        path = url["https://bridge.example".len()..].to_string();
        assert!(pages < 5, "too many pages: {seen:?}");
    }
    assert_eq!(pages, 2, "{seen:?}");
    seen.sort();
    assert_eq!(seen, ["c-chie", "c-chie-2", "c-chie-3", "c-dcr"]);
}

/// A member over HTTPS with OAuth2 client credentials (a signed JWT, as NHS APIs take): its
/// CA trusted by `tls.ca`, its token fetched and used for the searches; a member whose key the
/// token endpoint does not know gives an outcome naming why, not a 5xx.
#[test]
fn a_member_is_asked_over_tls_with_oauth2_client_credentials() {
    use crate::fhir::{fixture, free, tls_oauth_stand_in};
    let member = free();
    let _server = tls_oauth_stand_in(member, &["--oauth2-client-id", "wyvern-test-client"]);
    let listen = free_addr();
    let member_yaml = |name: &str, key: &str| {
        format!(
            "  - name: {name}\n    ods: XCH01\n    fhir:\n      base: \"https://localhost:{port}/fhir\"\n      timeout: 5s\n      tls: {{ ca: \"{ca}\" }}\n      auth:\n        oauth2: {{ token_url: \"https://localhost:{port}/oauth2/token\", client_id: wyvern-test-client, key: \"file:{key}\", kid: test-1 }}\n",
            port = member.port(),
            ca = fixture("tls/ca.pem"),
            key = fixture(key),
        )
    };
    let yaml = format!(
        "version: 1\nserve:\n  listen: \"{listen}\"\nmembers:\n{}{}",
        member_yaml("chie", "oauth2/client.key"),
        member_yaml("wrongkey", "tls/server.key"),
    );
    let _e = EngineProcess::start_with_files(&[("bridge.yaml", &yaml)]);
    wait_listening(listen, Duration::from_secs(20));
    let (code, b) = search(listen, &format!("/fhir/Patient?identifier={NHS}|{BOTH}"));
    assert_eq!(code, 200, "{b}");
    let said = outcomes(&b);
    assert!(
        !said.contains("chie"),
        "the member with the right key answered: {b}"
    );
    assert!(
        said.contains("wrongkey") && said.contains("token endpoint"),
        "{b}"
    );
}
