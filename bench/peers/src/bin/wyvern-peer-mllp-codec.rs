//! A tokio server on the `hl7-mllp-codec` crate, the way its README builds one: frames decoded
//! by the codec, each message parsed with `hl7-parser` (as any server that routes must parse),
//! MSH read from the parse, an AA written back. Nothing is stored.

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use hl7_mllp_codec::MllpCodec;
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

/// An AA for `message` (MSH-10 echoed in MSA-2, sender and receiver swapped), or an AR when
/// it does not parse.
fn answer(message: &[u8]) -> BytesMut {
    let text = String::from_utf8_lossy(message).replace('\n', "\r");
    let Ok(parsed) = hl7_parser::Message::parse(&text) else {
        return BytesMut::from(&b"MSH|^~\\&|||||||ACK||P|2.4\rMSA|AR|\r"[..]);
    };
    let field = |path: &str| parsed.query(path).map_or("", |v| v.raw_value());
    let ack = format!(
        "MSH|^~\\&|{}|{}|{}|{}|{}||ACK|{}|P|{}\rMSA|AA|{}\r",
        field("MSH.5"),
        field("MSH.6"),
        field("MSH.3"),
        field("MSH.4"),
        field("MSH.7"),
        field("MSH.10"),
        field("MSH.12"),
        field("MSH.10"),
    );
    BytesMut::from(ack.as_bytes())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(wyvern_bench_peers::listen_addr()).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut framed = Framed::new(stream, MllpCodec::new());
            while let Some(Ok(frame)) = framed.next().await {
                let frame: BytesMut = frame;
                if framed.send(answer(&frame)).await.is_err() {
                    break;
                }
            }
        });
    }
}
