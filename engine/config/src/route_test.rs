//! Route tests as data: `NAME.test.yaml` beside a route holds cases — a message in, and what
//! must come out: the ACK, how the message is stored, which destinations receive it and what
//! each receives. `wyvern test` runs them offline. This module is the file's shape and its
//! validation against the config it tests (a route, destination or step the test names must
//! exist; every path must parse), pure like [`crate::validate`]; the files a case names (its
//! input, an expected body) are read by [`crate::load_route_tests`].

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::at::At;
use crate::element_path::ElementPath;
use crate::{Config, Diagnostic, Route, SourceFile};

/// One `NAME.test.yaml`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteTestFile {
    #[schemars(with = "u32")]
    pub version: Spanned<u32>,
    /// The route under test. Default: the route defined in NAME.yaml beside this file.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub route: Option<Spanned<String>>,
    #[schemars(with = "Vec<CaseFile>")]
    pub cases: Spanned<Vec<CaseFile>>,
}

/// One case: a message in, what must come out.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// What the case shows, in words (printed when it passes or fails).
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// The message itself: HL7v2 segments one per line (LF, CRLF or CR), or FHIR JSON/XML.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub message: Option<Spanned<String>>,
    /// A file holding the message, relative to this test file.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub file: Option<Spanned<String>>,
    pub expect: ExpectFile,
}

/// What must come out. Only what is written is checked, except `to`, which is the exact set.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectFile {
    /// The ACK's MSA-1 (AA, AE, AR; CA, CE, CR in enhanced mode).
    #[serde(default)]
    #[schemars(with = "Option<AckCode>")]
    pub ack: Option<Spanned<AckCode>>,
    /// Text the answer must contain (the ACK's MSA-3 and ERR, or the reason it was stored so).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub error: Option<Spanned<String>>,
    /// How the message is kept: accepted, filtered, rejected or failed.
    #[serde(default)]
    #[schemars(with = "Option<Outcome>")]
    pub outcome: Option<Spanned<Outcome>>,
    /// The step (1-based, in the route's order) whose filter leaves the message out.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub filtered_by_step: Option<Spanned<u32>>,
    /// Exactly the destinations that receive the message (`[]`: none does).
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub to: Option<Spanned<Vec<Spanned<String>>>>,
    /// What a destination receives, by its name.
    #[serde(default)]
    #[schemars(with = "indexmap::IndexMap<String, DeliveryCheckFile>")]
    pub at: IndexMap<Spanned<String>, DeliveryCheckFile>,
}

/// What one destination receives. A split batch may send it several messages: `count` says how
/// many, `body`/`body_file` is all of them in order (a blank line between two), and each
/// `hl7`/`fhir` check must hold for every one.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryCheckFile {
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub count: Option<Spanned<u32>>,
    /// The exact body (HL7v2 segments one per line; FHIR JSON compared as JSON).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub body: Option<Spanned<String>>,
    /// A file holding the exact body, relative to this test file; `wyvern test --update`
    /// writes it.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub body_file: Option<Spanned<String>>,
    /// HL7 path → the value it must select (`~`: nothing there), such as `PV1-3.4: RX1`.
    #[serde(default)]
    #[schemars(with = "indexmap::IndexMap<String, Option<String>>")]
    pub hl7: IndexMap<Spanned<String>, Option<String>>,
    /// FHIR element (`Patient.name[0].family`) or JSON pointer (`/entry/0/request/method`) →
    /// the value there (`~`: nothing there).
    #[serde(default)]
    #[schemars(with = "indexmap::IndexMap<String, Option<String>>")]
    pub fhir: IndexMap<Spanned<String>, Option<String>>,
}

/// An ACK code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum AckCode {
    AA,
    AE,
    AR,
    CA,
    CE,
    CR,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }
}

/// How the inbox keeps a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Accepted,
    Filtered,
    Rejected,
    Failed,
}

/// A test file, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTests {
    pub file: PathBuf,
    pub route: String,
    pub cases: Vec<TestCase>,
}

/// Where in a test file something was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub line: u64,
    pub column: u64,
}

impl<T> From<&Spanned<T>> for Line {
    fn from(s: &Spanned<T>) -> Line {
        Line {
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    pub name: String,
    pub at: Line,
    pub input: Input,
    pub expect: Expectation,
}

/// A case's message: written in the test, or in a file (read by [`crate::load_route_tests`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Inline(String),
    File {
        path: PathBuf,
        at: Line,
        text: Option<Vec<u8>>,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Expectation {
    pub ack: Option<AckCode>,
    pub error: Option<String>,
    pub outcome: Option<Outcome>,
    pub filtered_by_step: Option<usize>,
    /// The exact set of destinations, in the route's order.
    pub to: Option<Vec<String>>,
    pub at: Vec<DeliveryCheck>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryCheck {
    pub destination: String,
    pub at: Line,
    pub count: Option<usize>,
    pub body: Option<ExpectedBody>,
    /// (the path as written, parsed, the value it must select)
    pub hl7: Vec<(String, wyvern_hl7::Path, Option<String>)>,
    /// (the path as written, parsed, the value there)
    pub fhir: Vec<(String, ElementPath, Option<String>)>,
}

/// An exact body: written in the test, or in a file (`None` until one is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedBody {
    Inline(String),
    File { path: PathBuf, text: Option<String> },
}

/// Validates one test file against `config`. `base`: the folder its relative paths are under.
pub fn validate_route_tests(
    src: &SourceFile,
    config: &Config,
) -> Result<RouteTests, Vec<Diagnostic>> {
    let f = crate::validate::parse::<RouteTestFile>(src).map_err(|d| vec![d])?;
    let mut at = At::new(&src.path);
    crate::validate::check_version(&mut at, &f.version);
    let base = src.path.parent().unwrap_or(Path::new("."));
    let route = match &f.route {
        Some(name) => match config.routes.iter().find(|r| r.name == name.value) {
            Some(r) => Some(r),
            None => {
                at.err(
                    name,
                    format!(
                        "route {:?} is not in this config: expected one of {}",
                        name.value,
                        names(config.routes.iter().map(|r| r.name.as_str()))
                    ),
                );
                None
            }
        },
        None => match beside(&src.path, config) {
            Some(r) => Some(r),
            None => {
                at.err(
                    &f.version,
                    format!(
                        "no route file beside {} defines the route it tests: add route: NAME",
                        src.path.display()
                    ),
                );
                None
            }
        },
    };
    if f.cases.value.is_empty() {
        at.err(&f.cases, "cases is empty: expected at least one case, each with name, message or file, and expect");
    }
    let mut cases = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for c in &f.cases.value {
        if seen.contains(&c.name.value.as_str()) {
            at.err(
                &c.name,
                format!(
                    "case {:?} is named twice: each case needs its own name",
                    c.name.value
                ),
            );
        }
        seen.push(&c.name.value);
        let input = match (&c.message, &c.file) {
            (Some(m), None) => Some(Input::Inline(m.value.clone())),
            (None, Some(p)) => Some(Input::File {
                path: base.join(&p.value),
                at: p.into(),
                text: None,
            }),
            _ => {
                at.err(&c.name, "a case needs exactly one of message (the message itself) or file (a file holding it)");
                None
            }
        };
        let expect = route.and_then(|r| expectation(&mut at, base, r, (&c.name).into(), &c.expect));
        if let (Some(input), Some(expect)) = (input, expect) {
            cases.push(TestCase {
                name: c.name.value.clone(),
                at: (&c.name).into(),
                input,
                expect,
            });
        }
    }
    match route {
        Some(r) if at.errors.is_empty() => Ok(RouteTests {
            file: src.path.clone(),
            route: r.name.clone(),
            cases,
        }),
        _ => Err(at.errors),
    }
}

/// The route defined in NAME.yaml for NAME.test.yaml.
fn beside<'c>(test: &Path, config: &'c Config) -> Option<&'c Route> {
    let name = test.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".test.yaml")
        .or_else(|| name.strip_suffix(".test.yml"))?;
    let dir = test.parent()?;
    config.routes.iter().find(|r| {
        r.file.parent() == Some(dir) && r.file.file_stem().and_then(|s| s.to_str()) == Some(stem)
    })
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<String> = it.map(|n| format!("{n:?}")).collect();
    if all.is_empty() {
        "(none)".into()
    } else {
        all.join(", ")
    }
}

fn expectation(
    at: &mut At<'_>,
    base: &Path,
    route: &Route,
    line: Line,
    e: &ExpectFile,
) -> Option<Expectation> {
    let errors = at.errors.len();
    let known = |n: &str| route.destinations.iter().any(|d| d.name == n);
    let destinations = || names(route.destinations.iter().map(|d| d.name.as_str()));
    if let (Some(ack), crate::Source::Fhir(_)) = (&e.ack, &route.source) {
        at.err(ack, format!("route {} takes FHIR over HTTP and answers with an OperationOutcome, not an ACK: check outcome (and error) instead", route.name));
    }
    let mut to = None;
    if let Some(list) = &e.to {
        let mut set = Vec::new();
        for d in &list.value {
            if !known(&d.value) {
                at.err(
                    d,
                    format!(
                        "destination {:?} is not one of route {}'s: expected one of {}",
                        d.value,
                        route.name,
                        destinations()
                    ),
                );
            }
            set.push(d.value.clone());
        }
        // In the route's order, so the report reads the same way as the route file.
        set.sort_by_key(|n| route.destinations.iter().position(|d| &d.name == n));
        set.dedup();
        to = Some(set);
    }
    let filtered_by_step = e.filtered_by_step.as_ref().and_then(|s| {
        let n = s.value as usize;
        if n == 0 || n > route.steps.len() {
            at.err(s, format!("route {} has {} step(s): filtered_by_step counts them from 1", route.name, route.steps.len()));
            return None;
        }
        if !matches!(route.steps[n - 1], crate::Step::Filter(_) | crate::Step::Wasm(_)) {
            at.err(s, format!("step {n} of route {} is not a filter or a plugin: it cannot leave a message out", route.name));
        }
        Some(n)
    });
    let checks_nothing = e.ack.is_none()
        && e.error.is_none()
        && e.outcome.is_none()
        && e.filtered_by_step.is_none()
        && e.to.is_none()
        && e.at.is_empty();
    if checks_nothing {
        at.errors.push(Diagnostic::error(at.file, line.line, line.column, "expect checks nothing: expected at least one of ack, error, outcome, filtered_by_step, to or at"));
    }
    let mut checks = Vec::new();
    for (name, c) in &e.at {
        if !known(&name.value) {
            at.err(
                name,
                format!(
                    "destination {:?} is not one of route {}'s: expected one of {}",
                    name.value,
                    route.name,
                    destinations()
                ),
            );
            continue;
        }
        if let Some(set) = &to
            && !set.contains(&name.value)
        {
            at.err(name, format!("destination {:?} is checked here but not listed in to, which says it receives nothing", name.value));
        }
        checks.push(delivery_check(at, base, &name.value, name.into(), c));
    }
    (at.errors.len() == errors).then(|| Expectation {
        ack: e.ack.as_ref().map(|a| a.value),
        error: e.error.as_ref().map(|s| s.value.clone()),
        outcome: e.outcome.as_ref().map(|o| o.value),
        filtered_by_step,
        to,
        at: checks,
    })
}

fn delivery_check(
    at: &mut At<'_>,
    base: &Path,
    destination: &str,
    line: Line,
    c: &DeliveryCheckFile,
) -> DeliveryCheck {
    let mut hl7 = Vec::new();
    for (p, v) in &c.hl7 {
        match p.value.parse::<wyvern_hl7::Path>() {
            Ok(path) => hl7.push((p.value.clone(), path, v.clone())),
            Err(e) => at.err(p, e.to_string()),
        }
    }
    let mut fhir = Vec::new();
    for (p, v) in &c.fhir {
        match ElementPath::parse(&p.value) {
            Ok(path) => fhir.push((p.value.clone(), path, v.clone())),
            Err(e) => at.err(p, e),
        }
    }
    let body = match (&c.body, &c.body_file) {
        (Some(b), None) => Some(ExpectedBody::Inline(b.value.clone())),
        (None, Some(f)) => Some(ExpectedBody::File {
            path: base.join(&f.value),
            text: None,
        }),
        (None, None) => None,
        (Some(b), Some(_)) => {
            at.err(b, "body and body_file both give the exact body: keep one");
            None
        }
    };
    DeliveryCheck {
        destination: destination.to_string(),
        at: line,
        count: c.count.as_ref().map(|n| n.value as usize),
        body,
        hl7,
        fhir,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let route = SourceFile {
            path: "cfg/adt.yaml".into(),
            text: "version: 1\nroute: adt\nsource: { mllp: { listen: 127.0.0.1:2575 } }\nsteps:\n  - filter: { message_type: ADT }\ndestinations:\n  - { name: chie, file: { dir: out } }\n  - { name: dcr, file: { dir: out2 } }\n".into(),
        };
        crate::validate(Path::new("cfg"), &[route]).unwrap()
    }

    fn tests(text: &str) -> Result<RouteTests, Vec<Diagnostic>> {
        let src = SourceFile {
            path: "cfg/adt.test.yaml".into(),
            text: text.into(),
        };
        validate_route_tests(&src, &config())
    }

    #[test]
    fn a_test_file_names_its_route_by_the_file_beside_it_and_reads_numbers_as_text() {
        let t = tests("version: 1\ncases:\n  - name: admit\n    message: \"MSH|^~\\\\&|A\"\n    expect:\n      ack: AA\n      to: [dcr, chie]\n      at:\n        chie: { count: 1, hl7: { PID-3.1: 9990000018, PID-8: ~ } }\n").unwrap();
        assert_eq!(t.route, "adt");
        let e = &t.cases[0].expect;
        assert_eq!(
            e.to.as_deref(),
            Some(&["chie".to_string(), "dcr".to_string()][..])
        );
        assert_eq!(e.at[0].hl7[0].2.as_deref(), Some("9990000018"));
        assert_eq!(e.at[0].hl7[1].2, None);
        assert_eq!(e.at[0].at, Line { line: 9, column: 9 });
    }
}
