//! One connection to the broker, for publishing: the handshake, then a reader task that owns
//! the socket's read side and a writer shared by the publisher and the reader's replies.
//!
//! The reader is the connection's only task: it cuts frames from what arrives, feeds
//! confirms, returns and closes into [`Confirms`], answers `close` with `close-ok`, sends a
//! heartbeat every half interval and declares the connection dead after two intervals of
//! silence. It wakes once per read, not per message, and the publisher writes a whole batch
//! with one `write_all`: the wake-ups lapin spent per message (its I/O thread) are gone.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use amq_protocol::frame::{AMQPFrame, ProtocolVersion};
use amq_protocol::protocol::{AMQPClass, basic, channel, connection};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Notify;

use super::confirms::Confirms;
use super::wire::{FrameBuffer, encode};

/// What the connection runs over: TCP, or TLS over TCP.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}
pub(crate) type Io = Box<dyn Stream>;

/// What the reader and the publisher share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) confirms: Mutex<Confirms>,
    /// Woken after every read that changed `confirms`.
    pub(crate) changed: Notify,
}

impl Shared {
    pub(crate) fn confirms(&self) -> std::sync::MutexGuard<'_, Confirms> {
        // The bookkeeping stays consistent whatever panicked while holding it.
        self.confirms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn break_all(&self, why: String) {
        self.confirms().break_all(why);
        self.changed.notify_waiters();
    }
}

/// An open connection whose channels are in confirm mode.
pub(crate) struct Connection {
    writer: Arc<tokio::sync::Mutex<WriteHalf<Io>>>,
    pub(crate) shared: Arc<Shared>,
    reader: tokio::task::JoinHandle<()>,
    pub(crate) frame_max: usize,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("frame_max", &self.frame_max)
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    /// Starts the reader over a connection the handshake opened.
    pub(crate) fn start(opened: super::handshake::Opened, channels: usize) -> Connection {
        let (read, write) = tokio::io::split(opened.io);
        let writer = Arc::new(tokio::sync::Mutex::new(write));
        let shared = Arc::new(Shared {
            confirms: Mutex::new(Confirms::new(channels)),
            changed: Notify::new(),
        });
        let reader = tokio::spawn(read_loop(Reader {
            read,
            frames: opened.frames,
            shared: shared.clone(),
            writer: writer.clone(),
            frame_max: opened.frame_max,
            heartbeat: opened.heartbeat,
        }));
        Connection {
            writer,
            shared,
            reader,
            frame_max: opened.frame_max,
        }
    }

    /// Writes `bytes` whole; a failure breaks the connection (what waits is lost).
    pub(crate) async fn write(&self, bytes: &[u8]) {
        if let Err(why) = send(&mut *self.writer.lock().await, bytes).await {
            self.shared.break_all(why);
        }
    }

    /// Says goodbye (`connection.close`), waits a moment for the broker's `close-ok`, and
    /// drops the socket.
    pub(crate) async fn close(mut self, why: &str) {
        let close = encode(&AMQPFrame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: 200,
                reply_text: why.into(),
                class_id: 0,
                method_id: 0,
            })),
        ));
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            self.write(&close).await;
            let _ = (&mut self.reader).await;
        })
        .await;
    }
}

struct Reader {
    read: ReadHalf<Io>,
    frames: FrameBuffer,
    shared: Arc<Shared>,
    writer: Arc<tokio::sync::Mutex<WriteHalf<Io>>>,
    frame_max: usize,
    heartbeat: Option<Duration>,
}

/// What a frame asks of the reader.
enum Next {
    Go,
    Reply(u16, AMQPClass),
    /// The connection is over; `close-ok` first when the broker closed it.
    Stop(String, Option<AMQPClass>),
}

async fn read_loop(mut r: Reader) {
    let Err(why) = read_until_broken(&mut r).await;
    tracing::debug!(%why, "AMQP publishing connection ended");
    r.shared.break_all(why);
}

/// Reads until the connection ends; the error is why.
async fn read_until_broken(r: &mut Reader) -> Result<std::convert::Infallible, String> {
    const HEARTBEAT: [u8; 8] = [8, 0, 0, 0, 0, 0, 0, 0xCE];
    // A returned message's reply text, per channel, until its header names it.
    let mut returning: Vec<Option<String>> = Vec::new();
    let mut silent = 0u32;
    loop {
        let mut changed = false;
        loop {
            let frame = match r.frames.next_frame(r.frame_max) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            };
            match on_frame(frame, &r.shared, &mut returning, &mut changed) {
                Next::Go => {}
                Next::Reply(ch, method) => {
                    let bytes = encode(&AMQPFrame::Method(ch, method));
                    send(&mut *r.writer.lock().await, &bytes).await?;
                }
                Next::Stop(why, reply) => {
                    if let Some(method) = reply {
                        let bytes = encode(&AMQPFrame::Method(0, method));
                        let _ = send(&mut *r.writer.lock().await, &bytes).await;
                    }
                    return Err(why);
                }
            }
        }
        if changed {
            r.shared.changed.notify_waiters();
        }
        let buf = r.frames.spare(64 << 10);
        let read = match r.heartbeat {
            Some(every) => match tokio::time::timeout(every / 2, r.read.read_buf(buf)).await {
                Ok(read) => read,
                Err(_) => {
                    silent += 1;
                    if silent >= 4 {
                        return Err(format!(
                            "the broker sent nothing for {} s (heartbeats missed)",
                            (every * 2).as_secs()
                        ));
                    }
                    // A write in progress is traffic enough.
                    if let Ok(mut w) = r.writer.try_lock() {
                        send(&mut w, &HEARTBEAT).await?;
                    }
                    continue;
                }
            },
            None => r.read.read_buf(buf).await,
        };
        match read {
            Ok(0) => return Err("the broker closed the connection".into()),
            Ok(_) => silent = 0,
            Err(e) => return Err(format!("cannot read from the broker: {e}")),
        }
    }
}

fn on_frame(
    frame: AMQPFrame,
    shared: &Shared,
    returning: &mut Vec<Option<String>>,
    changed: &mut bool,
) -> Next {
    let index = |ch: u16| usize::from(ch).saturating_sub(1);
    match frame {
        AMQPFrame::Method(ch, AMQPClass::Basic(basic::AMQPMethod::Ack(a))) => {
            shared
                .confirms()
                .settle(index(ch), a.delivery_tag, a.multiple, true);
            *changed = true;
        }
        AMQPFrame::Method(ch, AMQPClass::Basic(basic::AMQPMethod::Nack(n))) => {
            shared
                .confirms()
                .settle(index(ch), n.delivery_tag, n.multiple, false);
            *changed = true;
        }
        AMQPFrame::Method(ch, AMQPClass::Basic(basic::AMQPMethod::Return(r))) => {
            let i = usize::from(ch);
            if returning.len() <= i {
                returning.resize(i + 1, None);
            }
            returning[i] = Some(format!("{} {}", r.reply_code, r.reply_text));
        }
        AMQPFrame::Header(ch, header) => {
            if let Some(reply) = returning.get_mut(usize::from(ch)).and_then(Option::take) {
                let id = header
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                shared.confirms().returned(index(ch), id, reply);
            }
        }
        AMQPFrame::Method(ch, AMQPClass::Channel(channel::AMQPMethod::Close(c))) => {
            shared.confirms().close_channel(
                index(ch),
                format!(
                    "the broker closed the channel: {} {}",
                    c.reply_code, c.reply_text
                ),
            );
            *changed = true;
            return Next::Reply(
                ch,
                AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
            );
        }
        AMQPFrame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
            return Next::Stop(
                format!(
                    "the broker closed the connection: {} {}",
                    c.reply_code, c.reply_text
                ),
                Some(AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                    connection::CloseOk {},
                ))),
            );
        }
        AMQPFrame::Method(_, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))) => {
            return Next::Stop("closed".into(), None);
        }
        // Heartbeats, a returned message's body, and anything else a publisher ignores.
        _ => {}
    }
    Next::Go
}

/// Writes `bytes` whole and flushes them (TLS holds records until a flush).
async fn send(w: &mut WriteHalf<Io>, bytes: &[u8]) -> Result<(), String> {
    match w.write_all(bytes).await {
        Ok(()) => w.flush().await,
        Err(e) => Err(e),
    }
    .map_err(|e| format!("cannot write to the broker: {e}"))
}

/// The protocol header that opens a connection.
pub(crate) fn protocol_header() -> Vec<u8> {
    encode(&AMQPFrame::ProtocolHeader(ProtocolVersion::amqp_0_9_1()))
}

/// The reader's frame handling without a socket (see `super::read_as_publisher`).
pub(crate) fn read_for_fuzzing(
    bytes: &[u8],
    chunk: usize,
    frame_max: usize,
    channels: usize,
) -> usize {
    let shared = Shared {
        confirms: Mutex::new(Confirms::new(channels)),
        changed: Notify::new(),
    };
    for channel in 0..channels {
        for _ in 0..4 {
            shared.confirms().publish(channel);
        }
    }
    let (mut frames, mut returning, mut changed, mut taken) =
        (FrameBuffer::default(), Vec::new(), false, 0);
    for piece in bytes.chunks(chunk) {
        frames.spare(piece.len()).extend_from_slice(piece);
        loop {
            match frames.next_frame(frame_max) {
                Ok(Some(frame)) => {
                    taken += 1;
                    if let Next::Stop(..) = on_frame(frame, &shared, &mut returning, &mut changed) {
                        return taken;
                    }
                }
                Ok(None) => break,
                Err(_) => return taken,
            }
        }
    }
    let mut confirms = shared.confirms();
    for channel in 0..channels {
        for tag in 1..=4 {
            let _ = confirms.take(channel, tag, "");
        }
    }
    taken
}
