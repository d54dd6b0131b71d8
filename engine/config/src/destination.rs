//! `destinations:` as written and as validated. Each destination has a name (unique in its
//! route, used for its outbox, metrics and `wyvern dlq`) and exactly one kind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::at::At;
use crate::{ByteSize, HumanDuration};

const KINDS: &str = "file or mllp";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationFile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub file: Option<FileDestinationFile>,
    #[serde(default)]
    pub mllp: Option<MllpDestinationFile>,
}

/// `file: { dir: out/chie }`: each message written atomically (temp file + rename).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDestinationFile {
    pub dir: Spanned<String>,
    #[serde(default)]
    pub extension: Option<Spanned<String>>,
}

/// `mllp: { connect: 10.0.0.5:2575 }`: a kept-open MLLP connection that waits for each ACK.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MllpDestinationFile {
    pub connect: Spanned<String>,
    #[serde(default)]
    pub ack_timeout: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    pub max_frame: Option<Spanned<ByteSize>>,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDestination {
    /// Resolved against the config folder.
    pub dir: PathBuf,
    pub extension: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MllpDestination {
    /// `HOST:PORT`; resolved when the engine starts, not during validation.
    pub connect: String,
    pub ack_timeout: Duration,
    pub max_frame: usize,
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
        let kind = match (&d.file, &d.mllp) {
            (Some(f), None) => file(at, base, f),
            (None, Some(m)) => mllp(at, m),
            (None, None) => {
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
        Some(e) => e.value.clone(),
        None => "hl7".into(),
    };
    Some(DestinationKind::File(FileDestination {
        dir: base.join(&f.dir.value),
        extension,
    }))
}

fn mllp(at: &mut At<'_>, m: &MllpDestinationFile) -> Option<DestinationKind> {
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
    if !port_ok || ack_timeout.is_zero() {
        return None;
    }
    let max_frame = m.max_frame.as_ref().map_or(8 << 20, |s| s.value.0);
    Some(DestinationKind::Mllp(MllpDestination {
        connect: connect.to_string(),
        ack_timeout,
        max_frame: usize::try_from(max_frame).unwrap_or(usize::MAX),
    }))
}
