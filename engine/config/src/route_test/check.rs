//! A route test file checked against the config it tests: every route, destination and step
//! it names exists, every path parses, every case checks something — each problem at the
//! file:line:col where it is written.

use std::path::Path;

use super::{
    DeliveryCheck, DeliveryCheckFile, ExpectFile, Expectation, ExpectedBody, Input, Line,
    RouteTestFile, RouteTests, TestCase,
};
use crate::at::At;
use crate::element_path::ElementPath;
use crate::{Config, Diagnostic, Route, SourceFile};

/// Validates one test file against `config`; its relative paths are under its own folder.
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
    if let Some(text) = &e.error
        && text.value.trim().is_empty()
    {
        at.err(text, "error is empty, which any answer contains: expected text the refusal must say, such as MSH-9");
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
    if let Some(n) = &c.count
        && n.value == 0
        && (c.body.is_some() || c.body_file.is_some() || !c.hl7.is_empty() || !c.fhir.is_empty())
    {
        at.err(n, "count: 0 says nothing arrives, so there is no body or field to check: drop count, or the checks (or leave the destination out of to)");
    }
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
            Err(e) => at.err(p, e.to_string()),
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
