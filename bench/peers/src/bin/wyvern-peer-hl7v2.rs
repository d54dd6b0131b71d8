//! The `hl7v2` crate's own MLLP server (its `network` feature): every message parsed into the
//! crate's model and answered AA with the ACK the crate builds. Nothing is stored.

use hl7v2::transport::network::{MessageHandler, MllpServer, MllpServerConfig};
use hl7v2::{AckCode, Error, Message, ack};

struct Accept;

impl MessageHandler for Accept {
    async fn handle_message(&self, message: Message) -> Result<Option<Message>, Error> {
        ack(&message, AckCode::AA).map(Some)
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let config = MllpServerConfig {
        max_concurrent_connections: 1024,
        ..MllpServerConfig::default()
    };
    let mut server = MllpServer::new(config);
    server.bind(wyvern_bench_peers::listen_addr()).await?;
    server.run(Accept).await
}
