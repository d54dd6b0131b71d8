//! Lanes (one destination of one route) and their partitions, made on first use by whichever
//! node needs them first: the committer when a route first delivers there, a delivery worker
//! when it starts.

use tokio_postgres::Client;

use crate::{PARTITIONS, PgStoreError};

/// The lane of `route` → `destination` and how many partitions it has, made (with a
/// `partitions` row each, free and with its cursor at the start) if it is new. Each statement
/// commits on its own: a lane made inside a larger transaction would vanish with a rollback
/// while a caller kept its id.
pub(crate) async fn ensure_lane(
    client: &Client,
    route: &str,
    destination: &str,
) -> Result<(i32, i16), PgStoreError> {
    client
        .execute(
            "INSERT INTO lanes (route, destination, partitions) VALUES ($1, $2, $3) \
             ON CONFLICT (route, destination) DO NOTHING",
            &[&route, &destination, &PARTITIONS],
        )
        .await?;
    let row = client
        .query_one(
            "SELECT lane, partitions FROM lanes WHERE route = $1 AND destination = $2",
            &[&route, &destination],
        )
        .await?;
    let (lane, partitions): (i32, i16) = (row.get(0), row.get(1));
    client
        .execute(
            "INSERT INTO partitions (lane, partition) \
             SELECT $1, p::int2 FROM generate_series(0, $2::int4 - 1) AS p \
             ON CONFLICT DO NOTHING",
            &[&lane, &i32::from(partitions)],
        )
        .await?;
    Ok((lane, partitions))
}

/// The partition of a lane of `partitions` that a key's deliveries go to.
pub(crate) fn partition_of(order_key: &str, partitions: i16) -> i16 {
    let hash = crc32fast::hash(order_key.as_bytes());
    (hash % u32::from(partitions.max(1).unsigned_abs())) as i16
}
