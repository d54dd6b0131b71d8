//! `destinations:` as written and as validated. Each destination has a name (unique in its
//! route, used for its outbox, metrics and `wyvern dlq`) and exactly one kind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::SecretValue;
use crate::at::At;
use crate::fhir_destination::{FhirDestination, FhirDestinationFile};
use crate::{ByteSize, HumanDuration};

const KINDS: &str = "file, mllp, amqp, fhir or nrl";

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationFile {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[serde(default)]
    pub file: Option<FileDestinationFile>,
    #[serde(default)]
    pub mllp: Option<MllpDestinationFile>,
    #[serde(default)]
    pub amqp: Option<AmqpDestinationFile>,
    #[serde(default)]
    pub fhir: Option<FhirDestinationFile>,
    #[serde(default)]
    pub nrl: Option<crate::nrl_destination::NrlDestinationFile>,
}

/// `amqp: { url: "${AMQP_URL}", exchange: hl7.adt, routing_key: "adt.{MSH-9.2}" }`: publish
/// with publisher confirms, persistent; optionally declare and bind a durable queue.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmqpDestinationFile {
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    /// Declared durable (type topic). Empty: the default exchange (routing key = queue name).
    #[schemars(with = "String")]
    pub exchange: Spanned<String>,
    #[schemars(with = "String")]
    pub routing_key: Spanned<String>,
    #[serde(default)]
    pub queue: Option<AmqpQueueFile>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmqpQueueFile {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Binding pattern, such as `adt.#` (default: `#`, everything).
    #[serde(default)]
    pub bind: Option<String>,
    /// `quorum` (default: replicated, for production) or `classic`.
    #[serde(default, rename = "type")]
    #[schemars(with = "Option<String>")]
    pub kind: Option<Spanned<String>>,
}

/// `file: { dir: out/chie }`: each message written atomically (temp file + rename).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileDestinationFile {
    #[schemars(with = "String")]
    pub dir: Spanned<String>,
    /// Every file's extension; by default each message's own: `hl7` for HL7v2, `json` for FHIR.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub extension: Option<Spanned<String>>,
}

/// `mllp: { connect: 10.0.0.5:2575 }`: a kept-open MLLP connection; by default each message
/// waits for its ACK before the next goes (`window: 1`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MllpDestinationFile {
    #[schemars(with = "String")]
    pub connect: Spanned<String>,
    /// Messages sent ahead of their ACKs on the connection (1 to 64; default 1). The receiver
    /// must answer in order, as MLLP receivers do; some cannot read a frame that arrives
    /// before they answered the last, so raise it only for one known to.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub window: Option<Spanned<u32>>,
    #[serde(default)]
    #[schemars(with = "Option<HumanDuration>")]
    pub ack_timeout: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    #[schemars(with = "Option<ByteSize>")]
    pub max_frame: Option<Spanned<ByteSize>>,
    /// Connect over TLS (see `tls` below: ca, cert, key, server_name).
    #[serde(default)]
    pub tls: Option<crate::tls::ClientTlsFile>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    pub name: String,
    pub kind: DestinationKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DestinationKind {
    File(FileDestination),
    Mllp(MllpDestination),
    Amqp(AmqpDestination),
    Fhir(FhirDestination),
    /// The National Record Locator's producer API (`nrl_destination.rs`).
    Nrl(crate::nrl_destination::NrlDestination),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpDestination {
    pub url: SecretValue,
    pub exchange: String,
    /// Literal text with `{PATH}` parts filled from the message, such as `adt.{MSH-9.2}`.
    pub routing_key: Vec<TemplatePart>,
    pub queue: Option<AmqpQueue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
    Field(wyvern_hl7::Path),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpQueue {
    pub name: String,
    pub bind: String,
    pub quorum: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDestination {
    /// Resolved against the config folder.
    pub dir: PathBuf,
    /// `None`: by each message's content type (`hl7`, `json`).
    pub extension: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MllpDestination {
    /// `HOST:PORT`; resolved when the engine starts, not during validation.
    pub connect: String,
    pub ack_timeout: Duration,
    pub max_frame: usize,
    pub tls: Option<crate::ClientTls>,
    /// Messages in flight at once on the connection (1: stop-and-wait).
    pub window: usize,
}

pub(crate) fn destinations(
    at: &mut At<'_>,
    base: &Path,
    files: &[DestinationFile],
) -> Vec<Destination> {
    let mut out: Vec<Destination> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for d in files {
        let name = d.name.value.clone();
        if !crate::validate::valid_name(&name) {
            at.err(&d.name, format!("destination name {name:?} is not valid: expected lower-case letters, digits and '-', such as chie"));
        } else if seen.contains(&name.as_str()) {
            at.err(
                &d.name,
                format!("destination {name:?} appears twice in this route: names must be unique"),
            );
        }
        seen.push(&d.name.value);
        let kind = match (&d.file, &d.mllp, &d.amqp, &d.fhir, &d.nrl) {
            (Some(f), None, None, None, None) => file(at, base, f),
            (None, Some(m), None, None, None) => mllp(at, base, m),
            (None, None, Some(a), None, None) => amqp(at, a),
            (None, None, None, Some(f), None) => crate::fhir_destination::fhir(at, base, f),
            (None, None, None, None, Some(n)) => crate::nrl_destination::nrl(at, base, n),
            (None, None, None, None, None) => {
                at.err(
                    &d.name,
                    format!("destination {name:?} has no kind: expected {KINDS}"),
                );
                continue;
            }
            _ => {
                at.err(&d.name, format!("destination {name:?} has more than one kind: expected exactly one of {KINDS}"));
                continue;
            }
        };
        if let Some(kind) = kind {
            out.push(Destination { name, kind });
        }
    }
    out
}

fn file(at: &mut At<'_>, base: &Path, f: &FileDestinationFile) -> Option<DestinationKind> {
    if f.dir.value.trim().is_empty() {
        at.err(&f.dir, "dir is empty: expected a folder such as out/chie");
        return None;
    }
    let extension = match &f.extension {
        Some(e) if e.value.is_empty() || !e.value.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            at.err(
                e,
                format!(
                    "extension {:?} is not valid: expected letters and digits such as hl7",
                    e.value
                ),
            );
            return None;
        }
        Some(e) => Some(e.value.clone()),
        None => None,
    };
    Some(DestinationKind::File(FileDestination {
        dir: base.join(&f.dir.value),
        extension,
    }))
}

/// The most messages an MLLP destination may send ahead of their ACKs.
const MLLP_WINDOW_MAX: u32 = 64;

fn mllp(at: &mut At<'_>, base: &Path, m: &MllpDestinationFile) -> Option<DestinationKind> {
    let connect = m.connect.value.trim();
    let port_ok = connect
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        at.err(&m.connect, format!("connect {connect:?} is not valid: expected HOST:PORT such as 10.0.0.5:2575 or chie-mllp.example.nhs.uk:2575"));
    }
    let ack_timeout = m
        .ack_timeout
        .as_ref()
        .map_or(Duration::from_secs(30), |t| t.value.0);
    if let Some(t) = m.ack_timeout.as_ref().filter(|t| t.value.0.is_zero()) {
        at.err(
            t,
            "ack_timeout must be longer than zero: expected a duration such as 30s",
        );
    }
    let tls = match &m.tls {
        Some(t) => Some(crate::tls::client(at, base, t)?),
        None => None,
    };
    let window = m.window.as_ref().map_or(1, |w| w.value);
    if let Some(w) = m
        .window
        .as_ref()
        .filter(|w| !(1..=MLLP_WINDOW_MAX).contains(&w.value))
    {
        at.err(
            w,
            format!(
                "window {} is out of range: expected 1 (wait for each ACK) to {MLLP_WINDOW_MAX}",
                w.value
            ),
        );
    }
    if !port_ok || ack_timeout.is_zero() || !(1..=MLLP_WINDOW_MAX).contains(&window) {
        return None;
    }
    let max_frame = m.max_frame.as_ref().map_or(8 << 20, |s| s.value.0);
    Some(DestinationKind::Mllp(MllpDestination {
        connect: connect.to_string(),
        ack_timeout,
        max_frame: usize::try_from(max_frame).unwrap_or(usize::MAX),
        tls,
        window: window as usize,
    }))
}

/// An `amqp://` or `amqps://` URL (or a `${VAR}` / `file:` secret holding one).
pub(crate) fn amqp_url(at: &mut At<'_>, url: &Spanned<String>) -> Option<SecretValue> {
    match SecretValue::parse(&url.value) {
        Ok((v, vars)) => {
            let u = url.value.as_str();
            let scheme_ok = ["amqp://", "amqps://", "file:", "${"]
                .iter()
                .any(|p| u.starts_with(p));
            if !scheme_ok {
                at.err(
                    url,
                    "url must start with amqp:// or amqps:// (or be ${VAR} / file:PATH)",
                );
            }
            for var in vars {
                if std::env::var_os(&var).is_none() {
                    at.warn(
                        url,
                        format!(
                            "${{{var}}} is not set here; the engine will need it when it starts"
                        ),
                    );
                }
            }
            scheme_ok.then_some(v)
        }
        Err(e) => {
            at.err(url, e);
            None
        }
    }
}

fn amqp(at: &mut At<'_>, a: &AmqpDestinationFile) -> Option<DestinationKind> {
    let url = amqp_url(at, &a.url);
    let routing_key = template(&a.routing_key.value)
        .map_err(|e| at.err(&a.routing_key, e))
        .ok();
    let queue = match &a.queue {
        None => Some(None),
        Some(q) => {
            let quorum = match q.kind.as_ref() {
                None => Some(true),
                Some(k) if k.value == "quorum" => Some(true),
                Some(k) if k.value == "classic" => Some(false),
                Some(k) => {
                    at.err(
                        k,
                        format!(
                            "queue type {:?} is not known: expected quorum or classic",
                            k.value
                        ),
                    );
                    None
                }
            };
            if q.name.value.trim().is_empty() {
                at.err(&q.name, "queue name is empty");
            }
            match quorum {
                Some(quorum) if !q.name.value.trim().is_empty() => Some(Some(AmqpQueue {
                    name: q.name.value.clone(),
                    bind: q.bind.clone().unwrap_or_else(|| "#".into()),
                    quorum,
                })),
                _ => None,
            }
        }
    };
    Some(DestinationKind::Amqp(AmqpDestination {
        url: url?,
        exchange: a.exchange.value.clone(),
        routing_key: routing_key?,
        queue: queue?,
    }))
}

/// Parses `text {MSH-9.2} text`: literal text with HL7 paths in braces.
pub(crate) fn template(s: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| {
            format!("{s:?} has an unclosed {{: expected {{PATH}} such as {{MSH-9.2}}")
        })?;
        let path = after[..close]
            .parse::<wyvern_hl7::Path>()
            .map_err(|e| e.to_string())?;
        parts.push(TemplatePart::Field(path));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest.to_string()));
    }
    Ok(parts)
}

/// A value that may be a secret: parsed, with unset variables warned about.
pub(crate) fn secret(at: &mut At<'_>, v: &Spanned<String>) -> Option<SecretValue> {
    match SecretValue::parse(&v.value) {
        Ok((s, vars)) => {
            for var in vars {
                if std::env::var_os(&var).is_none() {
                    at.warn(
                        v,
                        format!(
                            "${{{var}}} is not set here; the engine will need it when it starts"
                        ),
                    );
                }
            }
            Some(s)
        }
        Err(e) => {
            at.err(v, e);
            None
        }
    }
}
