//! MLLP at the wire: raw bytes in, ACK bytes out, against the real engine process.

use std::time::Duration;

use wyvern_store::{InboxQuery, InboxReader, InboxStatus};

use crate::harness::{EngineProcess, Wire, adt, frame, normalise_ack};

fn rejected_rows(e: &EngineProcess, total: usize) -> Vec<wyvern_store::InboxRow> {
    let reader = e.store_with(total);
    reader
        .list(&InboxQuery {
            status: Some(InboxStatus::Rejected),
            limit: 100,
            ..Default::default()
        })
        .expect("list")
}

#[test]
fn original_mode_ack_is_exact() {
    let e = EngineProcess::start("");
    let mut w = Wire::connect(e.addr);
    let ack = w.exchange(&adt("CTRL0001", 1));
    assert_eq!(
        ack,
        "MSH|^~\\&|WYVERN|CHIE|PAS|RX1|<TS>||ACK^A01^ACK|<ID>|P|2.4\nMSA|AA|CTRL0001"
    );
}

#[test]
fn pipelined_window_of_32_gets_every_ack_in_order() {
    let e = EngineProcess::start("");
    let mut w = Wire::connect(e.addr);
    let total = 500;
    let window = 32;
    let (mut sent, mut answered) = (0usize, 0usize);
    while answered < total {
        while sent < total && sent - answered < window {
            w.write(&frame(&adt(&format!("P{sent:05}"), sent as u64)));
            sent += 1;
        }
        let ack = normalise_ack(&w.read_frame());
        assert!(
            ack.ends_with(&format!("\nMSA|AA|P{answered:05}")),
            "answer {answered}: {ack}"
        );
        answered += 1;
    }
    let reader = e.store_with(total);
    let stored = reader.control_ids(InboxStatus::Accepted).expect("ids");
    let expected: Vec<String> = (0..total).map(|i| format!("P{i:05}")).collect();
    assert_eq!(stored, expected, "stored in arrival order");
}

#[test]
fn frames_split_across_writes_and_many_frames_in_one_write() {
    let e = EngineProcess::start("");
    let mut w = Wire::connect(e.addr);
    // One frame cut everywhere interesting, including between <FS> and <CR>.
    let f = frame(&adt("SPLIT1", 1));
    let cuts = [1, 5, f.len() / 2, f.len() - 2, f.len() - 1];
    let mut from = 0;
    for cut in cuts {
        w.write(&f[from..cut]);
        std::thread::sleep(Duration::from_millis(30));
        from = cut;
    }
    w.write(&f[from..]);
    assert!(normalise_ack(&w.read_frame()).ends_with("MSA|AA|SPLIT1"));
    // Three frames in one write.
    let mut three = Vec::new();
    for id in ["ONE", "TWO", "THREE"] {
        three.extend_from_slice(&frame(&adt(id, 2)));
    }
    w.write(&three);
    for id in ["ONE", "TWO", "THREE"] {
        assert!(normalise_ack(&w.read_frame()).ends_with(&format!("MSA|AA|{id}")));
    }
}

#[test]
fn bytes_outside_frames_are_skipped() {
    let e = EngineProcess::start("");
    let mut w = Wire::connect(e.addr);
    let mut bytes = b"\r\n\x00keepalive".to_vec();
    bytes.extend_from_slice(&frame(&adt("J1", 1)));
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes.extend_from_slice(&frame(&adt("J2", 2)));
    w.write(&bytes);
    assert!(normalise_ack(&w.read_frame()).ends_with("MSA|AA|J1"));
    assert!(normalise_ack(&w.read_frame()).ends_with("MSA|AA|J2"));
}

#[test]
fn oversized_frame_is_rejected_kept_and_the_connection_stays_usable() {
    let e = EngineProcess::start("    max_frame: 2KiB\n");
    let mut w = Wire::connect(e.addr);
    let mut big = adt("BIG1", 1);
    big.extend_from_slice(b"OBX|1|ED|PDF^Report||");
    big.extend(std::iter::repeat_n(b'A', 10_000));
    big.push(b'\r');
    let ack = w.exchange(&big);
    let len = big.len();
    assert_eq!(
        ack,
        format!(
            "MSH|^~\\&|WYVERN|CHIE|PAS|RX1|<TS>||ACK^A01^ACK|<ID>|P|2.4\n\
             MSA|AR|BIG1|the message is {len} bytes, larger than this listener's max_frame of 2048 bytes; it was not accepted\n\
             ERR|^^^207&Application internal error&HL70357"
        )
    );
    assert!(w.exchange(&adt("AFTER", 2)).ends_with("MSA|AA|AFTER"));
    let rows = rejected_rows(&e, 2);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].control_id.as_deref(), Some("BIG1"));
    assert_eq!(rows[0].raw_len, len as i64);
}

#[test]
fn malformed_messages_get_ar_with_err_and_are_kept() {
    let e = EngineProcess::start("");
    let mut w = Wire::connect(e.addr);
    let cases: [(&[u8], &str); 5] = [
        (b"this is not HL7 at all", "MSA|AR||"),
        (b"MSH", "MSA|AR||"),
        (b"PID|1||9990000018^^^NHS^NH\rMSH|^~\\&|PAS|RX1", "MSA|AR||"),
        (
            b"MSH|^~\\&|PAS|RX1|WYV|CHIE|20261125||ADT^A01|BIN1|P|2.5\rOBX|1|ST|\x00\x01\x02\xff\r",
            "MSA|AR|BIN1|the message holds binary data",
        ),
        (
            b"MSH|^~\\&|PAS|RX1|WYV|CHIE|20261125||ADT^A01|TRUNC1|P|2.5\rPID|1||99900\r\x7f\x45",
            "MSA|AR|TRUNC1|",
        ),
    ];
    for (input, expected) in cases {
        let ack = w.exchange(input);
        assert!(
            ack.contains(expected),
            "{:?} → {ack}",
            String::from_utf8_lossy(input)
        );
        assert!(ack.contains("\nERR|"), "an ERR segment says why: {ack}");
    }
    assert!(w.exchange(&adt("FINE", 1)).ends_with("MSA|AA|FINE"));
    assert_eq!(rejected_rows(&e, cases.len() + 1).len(), cases.len());
}

#[test]
fn enhanced_mode_follows_msh15() {
    let e = EngineProcess::start("");
    let mut w = Wire::connect(e.addr);
    let msg = |id: &str, msh15: &str| {
        format!("MSH|^~\\&|GP|Y99999|WYV|DCR|20261125||ADT^A08|{id}|P|2.5.1|||{msh15}|NE\rPID|1||9990000018^^^NHS^NH\r").into_bytes()
    };
    assert_eq!(
        w.exchange(&msg("E1", "AL")),
        "MSH|^~\\&|WYV|DCR|GP|Y99999|<TS>||ACK^A08^ACK|<ID>|P|2.5.1\nMSA|CA|E1"
    );
    // NE: no accept ACK at all; ER: only on error. The next message still gets its answer.
    w.write(&frame(&msg("E2", "NE")));
    w.write(&frame(&msg("E3", "ER")));
    assert!(w.exchange(&msg("E4", "AL")).ends_with("MSA|CA|E4"));
    // A rejected enhanced-mode message gets CR.
    let bad = b"MSH|^~\\&|GP|Y99999|WYV|DCR|20261125|||E5|P|2.5.1|||ER|NE\r";
    let ack = w.exchange(bad);
    assert!(
        ack.contains("MSA|CR|E5|MSH-9 (message type) is empty"),
        "{ack}"
    );
    let reader = e.store_with(5);
    assert_eq!(
        reader.control_ids(InboxStatus::Accepted).expect("ids"),
        ["E1", "E2", "E3", "E4"]
    );
}

#[test]
fn custom_delimiters_are_honoured_in_the_ack() {
    let e = EngineProcess::start("");
    let mut w = Wire::connect(e.addr);
    let msg = b"MSH#$*!@#LAB#RX1#WYV#CHIE#20261125##ORU$R01$ORU_R01#L77#P#2.4\rPID#1##9990000018$$$NHS$NH\r";
    assert_eq!(
        w.exchange(msg),
        "MSH#$*!@#WYV#CHIE#LAB#RX1#<TS>##ACK$R01$ACK#<ID>#P#2.4\nMSA#AA#L77"
    );
    let reader = e.store_with(1);
    let row = reader
        .list(&InboxQuery {
            limit: 1,
            ..Default::default()
        })
        .expect("list")
        .remove(0);
    assert_eq!(row.nhs_number.as_deref(), Some("9990000018"));
    assert_eq!(row.message_type.as_deref(), Some("ORU^R01"));
}

#[test]
fn a_frame_left_unfinished_is_not_acknowledged_and_the_listener_carries_on() {
    let e = EngineProcess::start("    frame_timeout: 1s\n");
    let mut w = Wire::connect(e.addr);
    let f = frame(&adt("HALF", 1));
    w.write(&f[..f.len() / 2]);
    assert_eq!(
        w.read_frame_within(Duration::from_secs(3)),
        None,
        "closed after frame_timeout, no ACK"
    );
    let mut w2 = Wire::connect(e.addr);
    assert!(w2.exchange(&adt("WHOLE", 2)).ends_with("MSA|AA|WHOLE"));
}

#[test]
fn sigterm_answers_what_was_read_then_exits_cleanly() {
    let mut e = EngineProcess::start("");
    let mut w = Wire::connect(e.addr);
    let mut burst = Vec::new();
    for i in 0..200 {
        burst.extend_from_slice(&frame(&adt(&format!("T{i:03}"), i)));
    }
    w.write(&burst);
    let first = w.read_frame();
    assert!(normalise_ack(&first).ends_with("MSA|AA|T000"));
    let status = e.terminate();
    assert!(status.success(), "exit status {status:?}\n{}", e.log());
    // Every ACK that was sent is for a stored message; nothing stored is half-written.
    let mut acked = 1;
    while let Some(ack) = w.read_frame_within(Duration::from_secs(2)) {
        assert!(normalise_ack(&ack).contains("MSA|AA|T"));
        acked += 1;
    }
    let reader = InboxReader::open(&e.store_dir()).expect("store");
    let stored = reader.control_ids(InboxStatus::Accepted).expect("ids");
    assert!(
        stored.len() >= acked,
        "acked {acked}, stored {}",
        stored.len()
    );
    assert!(e.log().contains("engine stopped"), "{}", e.log());
}

#[test]
fn connections_past_max_connections_are_closed_and_idle_ones_time_out() {
    let e = EngineProcess::start("    max_connections: 1\n    idle_timeout: 1s\n");
    // The start-up probe's connection may hold the one slot for a moment: try until served.
    let mut first = None;
    for attempt in 0..40 {
        let mut w = Wire::connect(e.addr);
        w.write(&frame(&adt(&format!("C1-{attempt}"), 1)));
        if w.read_frame_within(Duration::from_secs(1)).is_some() {
            first = Some(w);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut first = first.expect("one connection is served");
    let mut second = Wire::connect(e.addr);
    second.write(&frame(&adt("C2", 2)));
    assert_eq!(
        second.read_frame_within(Duration::from_secs(2)),
        None,
        "refused: no ACK"
    );
    // The first goes quiet, is closed after idle_timeout, and its slot is free again.
    assert_eq!(first.read_frame_within(Duration::from_secs(3)), None);
    let mut third = Wire::connect(e.addr);
    assert!(third.exchange(&adt("C3", 3)).ends_with("MSA|AA|C3"));
    assert!(e.log().contains("max_connections reached"), "{}", e.log());
}

#[test]
fn wrong_delimiters_are_rejected_with_a_reason() {
    let e = EngineProcess::start("");
    let mut w = Wire::connect(e.addr);
    for (msg, why) in [
        (
            &b"MSH|^^\\&|PAS|RX1|WYV|CHIE|2026||ADT^A01|D1|P|2.4\r"[..],
            "must be distinct",
        ),
        (b"MSHA^~\\&A", "not a punctuation character"),
        (
            b"MSH|^|PAS|RX1",
            "need at least a component and a repetition separator",
        ),
    ] {
        let ack = w.exchange(msg);
        assert!(ack.contains("MSA|AR||") && ack.contains(why), "{ack}");
        assert!(ack.contains("\nERR|"), "{ack}");
    }
}

/// Issue 11: 300 idle connections from one address filled the route's 256 slots and every other
/// sender was refused until the flooder let go. Now each address has its own cap
/// (`max_connections_per_peer`), so another sender is still served.
#[test]
fn a_flooding_peer_cannot_lock_out_another_sender() {
    let e = EngineProcess::start("");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let from = |ip: &str| {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{ip}:0").parse().expect("addr"))
            .expect("bind a loopback alias");
        socket.connect(e.addr)
    };
    let flood: Vec<tokio::net::TcpStream> = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..300 {
            if let Ok(s) = from("127.0.0.1").await {
                held.push(s);
            }
        }
        // Let the engine accept (and cap) them all before the other sender arrives.
        tokio::time::sleep(Duration::from_millis(500)).await;
        held
    });
    let other = rt
        .block_on(from("127.0.0.2"))
        .expect("connect from 127.0.0.2")
        .into_std()
        .expect("std socket");
    other.set_nonblocking(false).expect("blocking");
    let mut w = Wire::from_stream(other);
    w.write(&frame(&adt("OTHER1", 1)));
    let ack = w.read_frame_within(Duration::from_secs(5));
    assert!(
        ack.is_some_and(|a| normalise_ack(&a).contains("MSA|AA|OTHER1")),
        "a sender from another address is served while one address holds 300 connections; log:\n{}",
        e.log()
    );
    assert!(
        e.log().contains("max_connections_per_peer reached"),
        "{}",
        e.log()
    );
    drop(flood);
}
