//! `source: { fhir: { listen, max_body } }`: FHIR REST inbound. Systems that already speak FHIR
//! POST resources and Bundles to `http://LISTEN/fhir`; each accepted one is stored and
//! delivered like any message, and answered 200/201 only after the commit.
//!
//! ```yaml
//! source:
//!   fhir: { listen: 0.0.0.0:8443, max_body: 10MiB }
//! ```

use std::net::SocketAddr;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::ByteSize;
use crate::at::At;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FhirSourceFile {
    /// IP:PORT to serve `/fhir` on.
    #[schemars(with = "String")]
    pub listen: Spanned<String>,
    /// The largest body accepted (default 10MiB); larger ones get 413 and an OperationOutcome.
    #[serde(default)]
    #[schemars(with = "Option<ByteSize>")]
    pub max_body: Option<Spanned<ByteSize>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirSource {
    pub listen: SocketAddr,
    pub max_body: u64,
}

pub(crate) fn fhir_source(at: &mut At<'_>, f: &FhirSourceFile) -> FhirSource {
    let listen = f.listen.value.parse::<SocketAddr>().unwrap_or_else(|_| {
        at.err(
            &f.listen,
            format!(
                "listen {:?} is not an address: expected IP:PORT such as 0.0.0.0:8443",
                f.listen.value
            ),
        );
        SocketAddr::from(([0, 0, 0, 0], 0))
    });
    let max_body = match &f.max_body {
        Some(m) if !(1024..=256 << 20).contains(&m.value.0) => {
            at.err(
                m,
                "max_body must be between 1KiB and 256MiB: expected a size such as 10MiB",
            );
            10 << 20
        }
        Some(m) => m.value.0,
        None => 10 << 20,
    };
    FhirSource { listen, max_body }
}
