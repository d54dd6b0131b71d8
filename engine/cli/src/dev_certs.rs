//! `wyvern dev certs`: a throwaway CA and certificates for trying TLS on one machine (the
//! Wessex routes in `routes/` name them). Never for production: the CA key is not kept, and
//! nothing here is what an organisation's PKI would issue.

use std::path::PathBuf;
use std::process::ExitCode;

use wyvern_testpki::{Ca, Leaf};

#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Folder to write into (created): ca.pem, wyvern.pem + wyvern.key (the listener's, for
    /// localhost, 127.0.0.1 and each --name), and CN.pem + CN.key for each --client.
    pub out: PathBuf,
    /// Another name for the listener's certificate.
    #[arg(long = "name", value_name = "HOST")]
    pub names: Vec<String>,
    /// A client certificate with this common name (repeat for several).
    #[arg(long = "client", value_name = "CN", default_value = "wyvern-client")]
    pub clients: Vec<String>,
    /// How long the certificates last, in days.
    #[arg(long, default_value_t = 365)]
    pub days: u64,
}

pub fn certs(args: CertsArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)?;
    let ca = Ca::new("Wyvern throwaway CA (wyvern dev certs)");
    let lifetime = std::time::Duration::from_secs(args.days.max(1) * 86_400);
    let ca_pem = ca.write(&args.out, "ca");
    let mut server = Leaf::server("localhost");
    server.names.extend(args.names.iter().cloned());
    server.lifetime = lifetime;
    let s = ca.issue(&args.out, "wyvern", &server);
    println!(
        "{}  the CA both sides trust (tls.client_ca, tls.ca)",
        ca_pem.display()
    );
    println!(
        "{}  {}  the listener's (tls.cert, tls.key)",
        s.cert.display(),
        s.key.display()
    );
    for cn in &args.clients {
        let mut leaf = Leaf::client(cn);
        leaf.lifetime = lifetime;
        let c = ca.issue(&args.out, cn, &leaf);
        println!("{}  {}  client {cn:?}", c.cert.display(), c.key.display());
    }
    Ok(ExitCode::SUCCESS)
}
