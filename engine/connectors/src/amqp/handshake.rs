//! Opening a publishing connection: TCP (and TLS for `amqps://`), the AMQP 0-9-1 handshake
//! (PLAIN credentials from the URL), the channels in confirm mode, and the exchange, queue
//! and binding a destination declares. One request at a time, each awaiting its reply: this
//! runs once per (re)connect, never per message.

use std::time::Duration;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, channel, confirm, connection, exchange, queue};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use amq_protocol::uri::{AMQPScheme, AMQPUri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::connection::{Io, protocol_header};
use super::wire::{FrameBuffer, encode};
use super::{AmqpTarget, PublishError};
use crate::tls::{ClientTls, ClientTlsSettings};

/// The largest frame we offer to take; the broker may ask for less.
const FRAME_MAX: u32 = 128 << 10;
/// The longest we wait for the broker to answer during the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat interval when the broker proposes a longer one (or none, with `heartbeat=0` in
/// the URL: then none).
const HEARTBEAT_MAX: u16 = 60;

/// A connection through the handshake, ready for [`super::connection::Connection::start`].
pub(crate) struct Opened {
    pub(crate) io: Io,
    pub(crate) frames: FrameBuffer,
    pub(crate) frame_max: usize,
    pub(crate) heartbeat: Option<Duration>,
}

/// Connects, opens `channels` channels in confirm mode (numbered 1…) and declares what the
/// target asks for.
pub(crate) async fn open(target: &AmqpTarget, channels: u16) -> Result<Opened, PublishError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, open_inner(target, channels)).await {
        Ok(r) => r,
        Err(_) => Err(PublishError::Transient(format!(
            "cannot connect to the broker: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

async fn open_inner(target: &AmqpTarget, channels: u16) -> Result<Opened, PublishError> {
    let uri: AMQPUri = target.url.parse().map_err(|e| {
        PublishError::Transient(format!("cannot connect to the broker: a bad URL: {e}"))
    })?;
    let io = dial(&uri)
        .await
        .map_err(|e| PublishError::Transient(format!("cannot connect to the broker: {e}")))?;
    let mut h = Handshake {
        io,
        frames: FrameBuffer::default(),
        frame_max: FRAME_MAX as usize,
    };
    let heartbeat = h.login(&uri).await?;
    for ch in 1..=channels {
        h.call(
            ch,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
            "cannot open a channel",
        )
        .await?;
        h.call(
            ch,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                nowait: false,
            })),
            "cannot enable publisher confirms",
        )
        .await?;
    }
    h.declare(target).await?;
    Ok(Opened {
        io: h.io,
        frames: h.frames,
        frame_max: h.frame_max,
        heartbeat,
    })
}

async fn dial(uri: &AMQPUri) -> std::io::Result<Io> {
    let addr = format!("{}:{}", uri.authority.host, uri.authority.port);
    let tcp = tokio::net::TcpStream::connect(&addr).await?;
    tcp.set_nodelay(true)?;
    match uri.scheme {
        AMQPScheme::AMQP => Ok(Box::new(tcp)),
        AMQPScheme::AMQPS => {
            let tls = ClientTls::load("amqp", ClientTlsSettings::default())
                .map_err(std::io::Error::other)?;
            Ok(Box::new(tls.connect(tcp, &addr).await?))
        }
    }
}

struct Handshake {
    io: Io,
    frames: FrameBuffer,
    frame_max: usize,
}

impl Handshake {
    async fn send(&mut self, ch: u16, method: AMQPClass) -> Result<(), PublishError> {
        let bytes = encode(&AMQPFrame::Method(ch, method));
        self.io
            .write_all(&bytes)
            .await
            .map_err(|e| PublishError::Transient(format!("cannot write to the broker: {e}")))
    }

    /// The next method frame (heartbeats skipped); a close of the connection or of `ch` is an
    /// error with the broker's reason.
    async fn receive(&mut self, what: &str) -> Result<(u16, AMQPClass), PublishError> {
        let fail = |why: String| PublishError::Transient(format!("{what}: {why}"));
        loop {
            match self.frames.next_frame(self.frame_max) {
                Ok(Some(AMQPFrame::Method(ch, m))) => {
                    return match m {
                        AMQPClass::Connection(connection::AMQPMethod::Close(c)) => Err(fail(
                            format!("the broker said {} {}", c.reply_code, c.reply_text),
                        )),
                        AMQPClass::Channel(channel::AMQPMethod::Close(c)) => Err(fail(format!(
                            "the broker said {} {}",
                            c.reply_code, c.reply_text
                        ))),
                        m => Ok((ch, m)),
                    };
                }
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => return Err(fail(e.to_string())),
            }
            let buf = self.frames.spare(4096);
            match self.io.read_buf(buf).await {
                Ok(0) => return Err(fail("the broker closed the connection".into())),
                Ok(_) => {}
                Err(e) => return Err(fail(e.to_string())),
            }
        }
    }

    /// Sends a synchronous method and awaits its reply.
    async fn call(
        &mut self,
        ch: u16,
        method: AMQPClass,
        what: &str,
    ) -> Result<AMQPClass, PublishError> {
        self.send(ch, method).await?;
        Ok(self.receive(what).await?.1)
    }

    /// The connection's opening: protocol header, start, tune, open. Returns the agreed
    /// heartbeat interval.
    async fn login(&mut self, uri: &AMQPUri) -> Result<Option<Duration>, PublishError> {
        const WHAT: &str = "cannot connect to the broker";
        self.io
            .write_all(&protocol_header())
            .await
            .map_err(|e| PublishError::Transient(format!("{WHAT}: {e}")))?;
        match self.receive(WHAT).await? {
            (0, AMQPClass::Connection(connection::AMQPMethod::Start(s))) => {
                let mechanisms = String::from_utf8_lossy(s.mechanisms.as_bytes()).to_string();
                if !mechanisms.split(' ').any(|m| m == "PLAIN") {
                    return Err(PublishError::Transient(format!(
                        "{WHAT}: the broker does not take PLAIN credentials (it offers {mechanisms})"
                    )));
                }
            }
            other => return Err(unexpected(WHAT, &other.1)),
        }
        let user = &uri.authority.userinfo;
        let response = format!("\0{}\0{}", user.username, user.password);
        let tune = self
            .call(
                0,
                AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                    client_properties: client_properties(),
                    mechanism: "PLAIN".into(),
                    response: LongString::from(response.into_bytes()),
                    locale: "en_US".into(),
                })),
                "the broker refused the credentials",
            )
            .await?;
        let AMQPClass::Connection(connection::AMQPMethod::Tune(tune)) = tune else {
            return Err(unexpected(WHAT, &tune));
        };
        let frame_max = match tune.frame_max {
            0 => FRAME_MAX,
            n => n.min(FRAME_MAX),
        };
        let heartbeat = match (uri.query.heartbeat, tune.heartbeat) {
            (Some(0), _) | (None, 0) => 0,
            (Some(asked), 0) => asked.min(HEARTBEAT_MAX),
            (Some(asked), offered) => asked.min(offered),
            (None, offered) => offered.min(HEARTBEAT_MAX),
        };
        self.frame_max = frame_max as usize;
        self.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max,
                heartbeat,
            })),
        )
        .await?;
        self.call(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: uri.vhost.as_str().into(),
            })),
            "the broker refused the virtual host",
        )
        .await?;
        Ok((heartbeat > 0).then(|| Duration::from_secs(u64::from(heartbeat))))
    }

    /// The exchange (a durable topic exchange), the queue and its binding, when configured.
    async fn declare(&mut self, target: &AmqpTarget) -> Result<(), PublishError> {
        if !target.exchange.is_empty() {
            self.call(
                1,
                AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
                    exchange: target.exchange.as_str().into(),
                    kind: "topic".into(),
                    passive: false,
                    durable: true,
                    auto_delete: false,
                    internal: false,
                    nowait: false,
                    arguments: FieldTable::default(),
                })),
                "cannot declare the exchange",
            )
            .await?;
        }
        let Some(q) = &target.queue else {
            return Ok(());
        };
        let mut arguments = FieldTable::default();
        if q.quorum {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        self.call(
            1,
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: q.name.as_str().into(),
                passive: false,
                durable: true,
                exclusive: false,
                auto_delete: false,
                nowait: false,
                arguments,
            })),
            "cannot declare the queue",
        )
        .await?;
        if !target.exchange.is_empty() {
            self.call(
                1,
                AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
                    queue: q.name.as_str().into(),
                    exchange: target.exchange.as_str().into(),
                    routing_key: q.bind.as_str().into(),
                    nowait: false,
                    arguments: FieldTable::default(),
                })),
                "cannot bind the queue",
            )
            .await?;
        }
        Ok(())
    }
}

/// Who we are, and what we can do: confirms, and a `close` (not a dropped socket) when the
/// credentials are refused, so the reason reaches the log.
fn client_properties() -> FieldTable {
    let mut capabilities = FieldTable::default();
    for c in [
        "publisher_confirms",
        "basic.nack",
        "authentication_failure_close",
    ] {
        capabilities.insert(c.into(), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    props.insert("product".into(), AMQPValue::LongString("wyvern".into()));
    props.insert(
        "version".into(),
        AMQPValue::LongString(env!("CARGO_PKG_VERSION").into()),
    );
    props.insert(
        "connection_name".into(),
        AMQPValue::LongString("wyvern".into()),
    );
    props.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
    props
}

fn unexpected(what: &str, got: &AMQPClass) -> PublishError {
    PublishError::Transient(format!(
        "{what}: the broker answered out of turn ({:?})",
        got.get_amqp_class_id()
    ))
}
