//! What both peers share: the listen address from `--listen ADDR`.

/// The address after `--listen`, or 127.0.0.1:2575.
pub fn listen_addr() -> std::net::SocketAddr {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| ([127, 0, 0, 1], 2575).into())
}
