//! `filter:` conditions, as written and as validated.
//!
//! A condition is one of: a test on an HL7 path (`hl7: MSH-9.2` with `equals`, `in`,
//! `matches` or `exists`), `message_type: ADT^A01` (or just `ADT`), `sender: PAS` (MSH-3, or
//! `PAS@RHX01` for MSH-3 and MSH-4), or `all` / `any` / `not` of other conditions. Paths are
//! parsed and regexes compiled here, once, so a typo is a validation error with its line, not
//! a surprise on the first message.

use serde::Deserialize;
use serde_saphyr::Spanned;
use wyvern_hl7::Path;

use crate::at::At;

/// One condition as written; exactly one form may be used.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionFile {
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub hl7: Option<Spanned<String>>,
    #[serde(default)]
    pub equals: Option<String>,
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub matches: Option<Spanned<String>>,
    #[serde(default)]
    pub exists: Option<bool>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub message_type: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub sender: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<Vec<ConditionFile>>")]
    pub all: Option<Vec<Spanned<ConditionFile>>>,
    #[serde(default)]
    #[schemars(with = "Option<Vec<ConditionFile>>")]
    pub any: Option<Vec<Spanned<ConditionFile>>>,
    #[serde(default)]
    #[schemars(with = "Option<Box<ConditionFile>>")]
    pub not: Option<Box<Spanned<ConditionFile>>>,
}

/// A validated condition.
#[derive(Debug, Clone)]
pub enum Condition {
    Field {
        path: Path,
        test: FieldTest,
    },
    /// `CODE` or `CODE^TRIGGER`.
    MessageType {
        code: String,
        trigger: Option<String>,
    },
    /// MSH-3, and MSH-4 when given.
    Sender {
        application: String,
        facility: Option<String>,
    },
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
}

#[derive(Debug, Clone)]
pub enum FieldTest {
    Equals(String),
    In(Vec<String>),
    Matches(regex::Regex),
    /// True: the value is present and not empty.
    Exists(bool),
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

const FORMS: &str =
    "one of hl7 (with equals, in, matches or exists), message_type, sender, all, any, not";

/// Validates one condition; `None` when it has errors (already reported).
pub(crate) fn condition(at: &mut At<'_>, c: &Spanned<ConditionFile>) -> Option<Condition> {
    let f = &c.value;
    let tests = [
        f.equals.is_some(),
        f.one_of.is_some(),
        f.matches.is_some(),
        f.exists.is_some(),
    ];
    let n_tests = tests.iter().filter(|x| **x).count();
    if f.hl7.is_none() && n_tests > 0 {
        at.err(c, "equals, in, matches and exists go with hl7: PATH, such as { hl7: MSH-9.2, equals: A01 }");
        return None;
    }
    let forms = [
        f.hl7.is_some(),
        f.message_type.is_some(),
        f.sender.is_some(),
        f.all.is_some(),
        f.any.is_some(),
        f.not.is_some(),
    ];
    match forms.iter().filter(|x| **x).count() {
        0 => {
            at.err(c, format!("a condition needs a test: expected {FORMS}"));
            return None;
        }
        1 => {}
        _ => {
            at.err(c, format!("a condition has several tests: expected exactly {FORMS} (combine them with all or any)"));
            return None;
        }
    }
    if let Some(p) = &f.hl7 {
        let path = match p.value.parse::<Path>() {
            Ok(path) => path,
            Err(e) => {
                at.err(p, e.to_string());
                return None;
            }
        };
        let test = match (n_tests, &f.equals, &f.one_of, &f.matches, f.exists) {
            (1, Some(v), _, _, _) => FieldTest::Equals(v.clone()),
            (1, _, Some(vs), _, _) => FieldTest::In(vs.clone()),
            (1, _, _, Some(r), _) => match regex::Regex::new(&r.value) {
                Ok(re) => FieldTest::Matches(re),
                Err(e) => {
                    // regex explains over several lines; its last line says what is wrong.
                    let why = e.to_string();
                    let why = why
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim_start_matches("error: ")
                        .to_string();
                    at.err(
                        r,
                        format!(
                            "matches {:?} is not a valid regular expression: {why}",
                            r.value
                        ),
                    );
                    return None;
                }
            },
            (1, _, _, _, Some(b)) => FieldTest::Exists(b),
            _ => {
                at.err(p, format!("hl7: {} needs exactly one test: expected one of equals, in, matches, exists", p.value));
                return None;
            }
        };
        return Some(Condition::Field { path, test });
    }
    if let Some(t) = &f.message_type {
        let mut parts = t.value.splitn(2, '^');
        let code = parts.next().unwrap_or_default().trim().to_string();
        let trigger = parts.next().map(|s| s.trim().to_string());
        if code.is_empty() || trigger.as_deref() == Some("") {
            at.err(
                t,
                format!(
                    "message_type {:?} is not valid: expected CODE or CODE^TRIGGER such as ADT^A01",
                    t.value
                ),
            );
            return None;
        }
        return Some(Condition::MessageType { code, trigger });
    }
    if let Some(s) = &f.sender {
        let mut parts = s.value.splitn(2, '@');
        let application = parts.next().unwrap_or_default().trim().to_string();
        let facility = parts.next().map(|x| x.trim().to_string());
        if application.is_empty() {
            at.err(s, format!("sender {:?} is not valid: expected MSH-3 such as PAS, or MSH-3@MSH-4 such as PAS@RHX01", s.value));
            return None;
        }
        return Some(Condition::Sender {
            application,
            facility,
        });
    }
    let list =
        |at: &mut At<'_>, items: &[Spanned<ConditionFile>], key: &str| -> Option<Vec<Condition>> {
            if items.is_empty() {
                at.err(c, format!("{key} is empty: expected a list of conditions"));
                return None;
            }
            let out: Vec<Option<Condition>> = items.iter().map(|i| condition(at, i)).collect();
            out.into_iter().collect()
        };
    if let Some(items) = &f.all {
        return list(at, items, "all").map(Condition::All);
    }
    if let Some(items) = &f.any {
        return list(at, items, "any").map(Condition::Any);
    }
    let inner = f.not.as_ref()?;
    condition(at, inner).map(|c| Condition::Not(Box::new(c)))
}
