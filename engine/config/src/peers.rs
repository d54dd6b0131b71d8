//! Who may connect to a listener and as whom. `allow_from`: the addresses it takes connections
//! from, as CIDR blocks or single addresses; empty (or absent) allows any — fine on 127.0.0.1,
//! and warned about on any other address, since a listener facing other organisations should
//! name who may send. `senders`: the sending facility (MSH-4) each network or client
//! certificate is, so a sender cannot send as another; `sender_mismatch` says what happens when
//! one tries.
//!
//! ```yaml
//! allow_from: [10.20.0.0/16]
//! senders:
//!   - { from: 10.20.1.0/24, facility: RX1 }   # the acute trust's PAS
//!   - { certificate: ris.rx2.example.nhs.uk, facility: RX2 }   # over mTLS: the certificate's name
//! sender_mismatch: reject    # reject (default): AR, kept as rejected | flag: accepted, counted, logged
//! ```

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::at::At;

/// One `senders` entry as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SenderFile {
    /// The network (CIDR block or address) this sender connects from.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub from: Option<Spanned<String>>,
    /// Or: the client certificate it connects with (common name, DNS name or whole subject);
    /// needs `tls.client_ca`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub certificate: Option<Spanned<String>>,
    /// The sending facility (MSH-4.1) its messages must carry, e.g. an ODS code.
    #[schemars(with = "String")]
    pub facility: Spanned<String>,
}

/// A network or certificate and the facility it sends as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderRule {
    pub from: SenderIdentity,
    pub facility: String,
}

/// How a sender is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderIdentity {
    Network(ipnet::IpNet),
    /// A client certificate's common name, DNS name or whole subject.
    Certificate(String),
}

/// What a message whose MSH-4 is not its network's facility gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SenderMismatch {
    /// AR with an ERR naming both, and the message kept as rejected.
    #[default]
    Reject,
    /// Accepted, and counted (`wyvern_sender_mismatch_total`) and logged.
    Flag,
}

/// Parses `senders`: each network as in `allow_from` or a certificate name (only where the
/// listener verifies client certificates), each facility non-empty.
pub(crate) fn senders(
    at: &mut At<'_>,
    entries: Option<&[SenderFile]>,
    client_certificates: bool,
) -> Vec<SenderRule> {
    entries
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            let from = match (&e.from, &e.certificate) {
                (Some(net), None) => SenderIdentity::Network(network(at, net, "senders from")?),
                (None, Some(c)) if c.value.trim().is_empty() => {
                    at.err(c, "senders certificate is empty: expected the client certificate's common name, e.g. pas.rx1.example.nhs.uk");
                    return None;
                }
                (None, Some(c)) if !client_certificates => {
                    at.err(c, "senders certificate needs tls.client_ca: without client certificates there is no certificate to match");
                    return None;
                }
                (None, Some(c)) => SenderIdentity::Certificate(c.value.trim().to_string()),
                (Some(net), Some(_)) => {
                    at.err(net, "a senders entry has both from and certificate: give one (a network or a client certificate)");
                    return None;
                }
                (None, None) => {
                    at.err(&e.facility, "a senders entry needs from (a network) or certificate (a client certificate's name)");
                    return None;
                }
            };
            let facility = e.facility.value.trim().to_string();
            if facility.is_empty() {
                at.err(&e.facility, "senders facility is empty: expected the MSH-4.1 this network sends as, e.g. RX1");
                return None;
            }
            Some(SenderRule { from, facility })
        })
        .collect()
}

/// One CIDR block or address (an error at it otherwise). `what` names the setting.
fn network(at: &mut At<'_>, e: &Spanned<String>, what: &str) -> Option<ipnet::IpNet> {
    let text = e.value.trim();
    let net = text
        .parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from));
    match net {
        // 10.20.3.4/16 means 10.20.0.0/16: say what is meant.
        Ok(net) if net.network() != net.addr() => {
            at.err(
                e,
                format!(
                    "{what} {text:?} has host bits set: write the block as {}",
                    net.trunc()
                ),
            );
            None
        }
        Ok(net) => Some(net),
        Err(_) => {
            at.err(
                e,
                format!(
                    "{what} {text:?} is not an address or a CIDR block: expected e.g. 10.20.0.0/16, 192.0.2.7 or 2001:db8::/32"
                ),
            );
            None
        }
    }
}

/// Parses `allow_from` (an error at each entry that is not a block or an address), and warns
/// when `listen` is reachable from other hosts and the list is empty.
pub(crate) fn allow_from(
    at: &mut At<'_>,
    listen: &Spanned<String>,
    addr: SocketAddr,
    entries: Option<&[Spanned<String>]>,
) -> Vec<ipnet::IpNet> {
    let entries = entries.unwrap_or_default();
    let nets: Vec<ipnet::IpNet> = entries
        .iter()
        .filter_map(|e| network(at, e, "allow_from"))
        .collect();
    if entries.is_empty() && !addr.ip().is_loopback() && addr.port() != 0 {
        at.warn(
            listen,
            format!(
                "listen {addr} takes connections from any address: list the senders in allow_from (e.g. [10.20.0.0/16])"
            ),
        );
    }
    nets
}
