//! Route tests as data: `NAME.test.yaml` beside a route holds cases — a message in, and what
//! must come out: the ACK, how the message is stored, which destinations receive it and what
//! each receives. `wyvern test` runs them offline. This module is the file's shape and its
//! validation against the config it tests (`check.rs`: a route, destination or step the test
//! names must exist; every path must parse), pure like [`crate::validate`]; the files a case
//! names (its input, an expected body) are read by [`crate::load_route_tests`].

mod check;

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::element_path::ElementPath;

pub use check::validate_route_tests;

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
