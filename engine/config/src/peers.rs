//! `allow_from`: the addresses a listener takes connections from, as CIDR blocks or single
//! addresses. Empty (or absent) allows any — fine on 127.0.0.1, and warned about on any other
//! address, since a listener facing other organisations should name who may send.

use std::net::{IpAddr, SocketAddr};

use serde_saphyr::Spanned;

use crate::at::At;

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
        .filter_map(|e| {
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
                            "allow_from {text:?} has host bits set: write the block as {}",
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
                            "allow_from {text:?} is not an address or a CIDR block: expected e.g. 10.20.0.0/16, 192.0.2.7 or 2001:db8::/32"
                        ),
                    );
                    None
                }
            }
        })
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
