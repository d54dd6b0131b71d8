//! What the nodes sharing a store are doing, for `wyvern cluster status`: which nodes there
//! are, who holds which share of each destination's deliveries, how many wait, and the
//! oldest transaction open on the database (it holds every destination's delivery back: the
//! log is read only below the oldest running transaction, `log.rs`).

use tokio_postgres::Client;

use wyvern_store::{ClusterStatus, LaneStatus, NodeStatus};

use crate::PgStoreError;

pub async fn cluster_status(client: &Client) -> Result<ClusterStatus, PgStoreError> {
    let nodes = client
        .query(
            "SELECT n.node, n.version, to_char(n.started_at, 'YYYY-MM-DD HH24:MI:SS TZ'), \
                 (SELECT count(*) FROM partitions p WHERE p.owner = n.node AND p.expires_at > now()), \
                 floor(extract(epoch FROM now() - n.seen_at))::int8 \
             FROM nodes n ORDER BY n.node",
            &[],
        )
        .await?
        .iter()
        .map(|r| NodeStatus {
            node: r.get(0),
            version: r.get(1),
            started_at: r.get(2),
            holds: r.get(3),
            silent_secs: r.get(4),
        })
        .collect();
    let mut lanes = Vec::new();
    for r in client
        .query(
            concat!(
                "SELECT l.lane, l.route, l.destination, l.partitions, \
                 (SELECT count(*) FROM partitions p JOIN deliveries d \
                      ON d.lane = p.lane AND d.partition = p.partition AND ",
                crate::unsettled!(),
                " WHERE p.lane = l.lane), \
                 (SELECT count(*) FROM delivery_exceptions e WHERE e.lane = l.lane \
                      AND e.state IN ('retry', 'waiting', 'held')) \
                 FROM lanes l ORDER BY l.route, l.destination"
            ),
            &[],
        )
        .await?
    {
        let lane: i32 = r.get(0);
        let held = client
            .query(
                "SELECT owner, count(*) FROM partitions WHERE lane = $1 AND owner IS NOT NULL \
                 AND expires_at > now() GROUP BY owner ORDER BY owner",
                &[&lane],
            )
            .await?
            .iter()
            .map(|h| (h.get(0), h.get(1)))
            .collect();
        lanes.push(LaneStatus {
            route: r.get(1),
            destination: r.get(2),
            partitions: r.get(3),
            held,
            pending: r.get(4),
            exceptions: r.get(5),
        });
    }
    // Only a transaction with an id of its own holds the log's horizon back (a read-only
    // one does not); a prepared transaction does, with no session.
    let oldest_transaction = client
        .query_opt(
            "SELECT extract(epoch FROM now() - since)::float8, who FROM ( \
                 SELECT xact_start AS since, \
                     COALESCE(NULLIF(application_name, ''), usename::text, '?') AS who \
                 FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() \
                 UNION ALL \
                 SELECT prepared, 'prepared transaction ' || gid FROM pg_prepared_xacts \
             ) t ORDER BY since LIMIT 1",
            &[],
        )
        .await?
        .map(|r| (r.get(0), r.get(1)));
    Ok(ClusterStatus {
        nodes,
        lanes,
        oldest_transaction,
    })
}

/// Deliveries waiting for one destination of a route across every partition (past their
/// partition's cursor with no exception, or an open retry or wait), and when the oldest of
/// their messages was received: the shared store's `wyvern_outbox_depth`.
pub async fn lane_depth(
    client: &Client,
    route: &str,
    destination: &str,
) -> Result<(i64, Option<i64>), PgStoreError> {
    let row = client
        .query_one(
            concat!(
                "WITH l AS (SELECT lane FROM lanes WHERE route = $1 AND destination = $2), \
             ahead AS (SELECT d.message FROM partitions p JOIN l ON p.lane = l.lane \
                 JOIN deliveries d ON d.lane = p.lane AND d.partition = p.partition AND ",
                crate::unsettled!(),
                " LEFT JOIN delivery_exceptions e ON e.seq = d.seq WHERE e.seq IS NULL), \
             open AS (SELECT d.message FROM delivery_exceptions e JOIN l ON e.lane = l.lane \
                 JOIN deliveries d ON d.seq = e.seq WHERE e.state IN ('retry', 'waiting')) \
             SELECT (SELECT count(*) FROM ahead) + (SELECT count(*) FROM open), \
                 (SELECT received_at FROM messages WHERE seq = \
                     (SELECT min(m) FROM (SELECT min(message) AS m FROM ahead \
                                          UNION ALL SELECT min(message) FROM open) x))"
            ),
            &[&route, &destination],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}
