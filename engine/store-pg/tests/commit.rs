//! Group commit into a real PostgreSQL (a throwaway cluster): every `Ok` is stored, senders
//! waiting together share transactions and keep their order, a message committed twice is
//! stored once, and a database restarted mid-stream loses nothing that was answered `Ok`.

use std::collections::HashSet;

use tokio_postgres::Client;
use wyvern_store::{InboxRecord, Stored};
use wyvern_store_pg::{CommitOptions, PgCommitter, connect};
use wyvern_testpg::PgCluster;

mod support;

use support::database;

fn record(sender: usize, n: usize) -> InboxRecord {
    support::record(sender, n, format!("patient-{sender}"))
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

/// 16 stop-and-wait senders: all 3,200 stored with their deliveries, in fewer transactions
/// than messages, and each sender's deliveries in the order it sent them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_waiting_together_share_commits_and_keep_their_order() {
    let pg = PgCluster::start();
    let (url, client) = database(&pg).await;
    let committer = PgCommitter::start(CommitOptions::new(url, "node-a"))
        .await
        .expect("committer");
    let mut senders = Vec::new();
    for s in 0..16 {
        let c = committer.clone();
        senders.push(tokio::spawn(async move {
            for n in 0..200 {
                c.commit(record(s, n)).await.expect("committed");
            }
        }));
    }
    for s in senders {
        s.await.expect("sender");
    }
    assert_eq!(count(&client, "SELECT count(*) FROM messages").await, 3200);
    assert_eq!(
        count(&client, "SELECT count(*) FROM deliveries").await,
        3200
    );
    let transactions = count(&client, "SELECT count(DISTINCT xid)::int8 FROM deliveries").await;
    assert!(
        transactions < 1600,
        "{transactions} transactions for 3,200 messages: commits are not grouped"
    );
    let rows = client
        .query(
            "SELECT m.control_id FROM deliveries d JOIN messages m ON m.seq = d.message \
             ORDER BY d.xid, d.seq",
            &[],
        )
        .await
        .expect("the log in its order");
    let mut next = [0usize; 16];
    for row in rows {
        let id: String = row.get(0);
        let (s, n) = id[1..].split_once('-').expect("S{s}-{n}");
        let (s, n): (usize, usize) = (s.parse().expect("s"), n.parse().expect("n"));
        assert_eq!(n, next[s], "sender {s}'s messages out of order in the log");
        next[s] += 1;
    }
    let partitions = count(&client, "SELECT count(DISTINCT partition) FROM deliveries").await;
    assert!(partitions > 1, "keys spread over partitions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_committed_twice_is_stored_once() {
    let pg = PgCluster::start();
    let (url, client) = database(&pg).await;
    let committer = PgCommitter::start(CommitOptions::new(url, "node-a"))
        .await
        .expect("committer");
    let r = record(0, 1);
    assert_eq!(
        committer.commit(r.clone()).await.expect("first"),
        Stored::New
    );
    assert_eq!(
        committer.commit(r).await.expect("again (a replay)"),
        Stored::New
    );
    assert_eq!(count(&client, "SELECT count(*) FROM messages").await, 1);
    assert_eq!(count(&client, "SELECT count(*) FROM deliveries").await, 1);
}

/// A sender resends (its ACK went missing) and the resend reaches another node: that node's
/// commit skips it and says whose resend it is and what it was answered; other content under
/// the same control id, or the same content from another sender, is a message of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_committed_on_another_node_is_not_stored_again() {
    let pg = PgCluster::start();
    let (url, client) = database(&pg).await;
    let a = PgCommitter::start(CommitOptions::new(url.clone(), "node-a"))
        .await
        .expect("committer a");
    let b = PgCommitter::start(CommitOptions::new(url, "node-b"))
        .await
        .expect("committer b");
    let original = record(0, 1);
    assert_eq!(
        a.commit(original.clone()).await.expect("original"),
        Stored::New
    );
    let mut resend = original.clone();
    resend.envelope.id = wyvern_core::MessageId::new(2_000);
    resend.ack = Some(bytes::Bytes::from_static(b"MSA|AA|this node's own ACK"));
    assert_eq!(
        b.commit(resend.clone()).await.expect("resend"),
        Stored::ResendOf {
            original: original.envelope.id.to_string(),
            ack: Some(b"MSA|AA".to_vec()),
        }
    );
    let mut other_content = resend.clone();
    other_content.envelope.id = wyvern_core::MessageId::new(2_000);
    other_content.envelope.raw = bytes::Bytes::from(record(0, 2).envelope.raw.to_vec());
    other_content.digest = None;
    assert_eq!(
        b.commit(other_content).await.expect("other content"),
        Stored::New
    );
    let mut other_sender = resend;
    other_sender.envelope.id = wyvern_core::MessageId::new(2_000);
    other_sender.envelope.meta.sending_facility = Some("ELSEWHERE".into());
    assert_eq!(
        b.commit(other_sender).await.expect("other sender"),
        Stored::New
    );
    assert_eq!(count(&client, "SELECT count(*) FROM messages").await, 3);
    assert_eq!(count(&client, "SELECT count(*) FROM deliveries").await, 3);
}

/// PostgreSQL stopped at once (no shutdown checkpoint) and started again while 4 senders
/// commit: whatever was answered `Ok` is there afterwards, and commits go on by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restarted_mid_stream_loses_nothing_answered_ok() {
    let pg = PgCluster::start();
    let (url, _) = database(&pg).await;
    let committer = PgCommitter::start(CommitOptions::new(url.clone(), "node-a"))
        .await
        .expect("committer");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    for s in 0..4 {
        let (c, stop) = (committer.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (Vec::new(), 0);
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match c.commit(record(s, n)).await {
                    Ok(_) => ok.push(format!("S{s}-{n}")),
                    Err(_) => failed += 1,
                }
                n += 1;
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .expect("restarted");
    // Senders go on after the restart, so commits are seen to resume by themselves.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut acked, mut failed) = (HashSet::new(), 0);
    for s in senders {
        let (ok, f) = s.await.expect("sender");
        acked.extend(ok);
        failed += f;
    }
    let client = connect(&url).await.expect("connect after the restart");
    let stored: HashSet<String> = client
        .query("SELECT control_id FROM messages", &[])
        .await
        .expect("stored")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} answered Ok but not stored ({failed} failed): {lost:?}\nserver log:\n{}",
        lost.len(),
        pg.log()
    );
    committer
        .commit(record(9, 0))
        .await
        .expect("commits go on after the restart");
}
