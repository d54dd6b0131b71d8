//! The tables, versioned in `wyvern_schema`, and the one way they change: [`migrate`].
//!
//! Several nodes may start at the same moment against an empty or older database. Each runs
//! `migrate` in one transaction that first takes a transaction-scoped advisory lock, so the
//! migrations run exactly once and the others find them done; a crash mid-migration rolls the
//! whole transaction back. A node that finds a *newer* schema refuses to start rather than
//! write rows an older build does not understand.
//!
//! Never edit a migration once a release has run it: add one. (Nothing has been released on
//! PostgreSQL yet; leases and delivery state arrive with their code.)

use tokio_postgres::Client;

use crate::PgStoreError;

/// The advisory lock every node takes around migrations ("wyvern" in ASCII).
const MIGRATION_LOCK: i64 = 0x7779_7665_726e;

/// Each entry moves the schema one version up.
const MIGRATIONS: [&str; 8] = [V1, V2, V3, V4, V5, V6, V7, V8];

/// The newest schema this build knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// v1: the nodes of a cluster, each seen at start and then every few seconds (what
/// `wyvern cluster status` lists).
const V1: &str = "
CREATE TABLE nodes (
    node        TEXT        PRIMARY KEY,
    version     TEXT        NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
";

/// v2: messages and their deliveries, written by the committer (`commit.rs`) in one
/// transaction per group. A delivery row carries the id of the transaction that wrote it
/// (`xid`): a reader takes only rows below its snapshot's `xmin`, in `(xid, seq)` order, so a
/// transaction still in flight on another node is never skipped (ARCHITECTURE.md, "The store
/// on PostgreSQL"). `partition` is the ordering key's hash modulo the lane's partitions: the
/// unit a node leases.
const V2: &str = "
CREATE TABLE messages (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT      NOT NULL UNIQUE,
    received_at      BIGINT    NOT NULL,
    source           TEXT      NOT NULL,
    peer             TEXT,
    content_type     TEXT      NOT NULL,
    status           TEXT      NOT NULL,
    sending_app      TEXT,
    sending_facility TEXT,
    message_type     TEXT,
    control_id       TEXT,
    nhs_number       TEXT,
    error            TEXT,
    ack              BYTEA,
    raw_len          BIGINT    NOT NULL,
    raw              BYTEA     NOT NULL,
    digest           BYTEA     NOT NULL,
    node             TEXT      NOT NULL
);
CREATE INDEX messages_control_id ON messages (control_id);
CREATE INDEX messages_nhs_number ON messages (nhs_number) WHERE nhs_number IS NOT NULL;
CREATE INDEX messages_not_accepted ON messages (status, seq) WHERE status <> 'accepted';
CREATE TABLE lanes (
    lane         SERIAL   PRIMARY KEY,
    route        TEXT     NOT NULL,
    destination  TEXT     NOT NULL,
    partitions   SMALLINT NOT NULL,
    UNIQUE (route, destination)
);
CREATE TABLE deliveries (
    seq          BIGSERIAL PRIMARY KEY,
    xid          XID8      NOT NULL DEFAULT pg_current_xact_id(),
    lane         INTEGER   NOT NULL,
    partition    SMALLINT  NOT NULL,
    message      BIGINT    NOT NULL,
    part         INTEGER   NOT NULL,
    order_key    TEXT      NOT NULL,
    payload      BYTEA,
    content_type TEXT
);
CREATE INDEX deliveries_log ON deliveries (lane, partition, xid, seq);
CREATE INDEX deliveries_message ON deliveries (message);
";

/// v3: a row per (lane, partition): who delivers it (`owner`, until `expires_at` in the
/// database's clock), the fencing `token` each new holder increments, and the cursor
/// `(done_xid, done_seq)` below which the partition's deliveries are settled (`lease.rs`).
const V3: &str = "
CREATE TABLE partitions (
    lane        INTEGER     NOT NULL,
    partition   SMALLINT    NOT NULL,
    owner       TEXT,
    token       BIGINT      NOT NULL DEFAULT 0,
    expires_at  TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    done_xid    XID8        NOT NULL DEFAULT '0',
    done_seq    BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (lane, partition)
);
";

/// v4: what went wrong with a delivery, per partition (the embedded store's
/// `delivery_exceptions`): a retry waiting for `next_at`, a row waiting behind an earlier one of
/// its key, a dead letter, a held key. A delivery that simply succeeded has no row here: the
/// partition's cursor says it. `xid` is the delivery's, so a key's exceptions are taken in
/// the log's `(xid, seq)` order.
const V4: &str = "
CREATE TABLE delivery_exceptions (
    seq          BIGINT   PRIMARY KEY,
    xid          XID8     NOT NULL,
    lane         INTEGER  NOT NULL,
    partition    SMALLINT NOT NULL,
    order_key    TEXT     NOT NULL,
    state        TEXT     NOT NULL,
    attempts     INTEGER  NOT NULL DEFAULT 0,
    next_at      BIGINT   NOT NULL DEFAULT 0,
    last_error   TEXT,
    retry_from   BIGINT,
    done_at      BIGINT
);
CREATE INDEX exceptions_open ON delivery_exceptions (lane, partition, order_key, xid, seq)
    WHERE state IN ('retry', 'waiting', 'held');
CREATE INDEX exceptions_dead ON delivery_exceptions (lane, seq) WHERE state IN ('dead', 'held');
";

/// v5: the duplicate window shared by every node. `resend_key` is 128 bits of SHA-256 over a
/// message's route, sender (MSH-3, MSH-4), control id and content digest, set on accepted and
/// filtered messages that have a control id (`commit.rs`); at most one message per key. A
/// resend that a load balancer takes to another node meets this index in the commit
/// (waiting, if the original's transaction is still open, for it to end), is skipped, and is
/// answered with the original's ACK. One 16-byte key, not the five columns it is made of:
/// measured, the five-column index cost a quarter of the store's throughput. Messages stored
/// before this version have no key (the window starts with it).
const V5: &str = "
ALTER TABLE messages ADD COLUMN resend_key BYTEA;
CREATE UNIQUE INDEX messages_resend ON messages (resend_key) WHERE resend_key IS NOT NULL;
";

/// v6: the cluster's audit log (the embedded store's `audit`, `audit.rs` there): one chain
/// for every node, appended under a transaction-scoped advisory lock so the chain's order is
/// the sequence's; `node` says which node the actor came through.
const V6: &str = "
CREATE TABLE audit (
    seq         BIGSERIAL PRIMARY KEY,
    at          BIGINT    NOT NULL,
    actor       TEXT      NOT NULL,
    action      TEXT      NOT NULL,
    message_id  TEXT,
    nhs_number  TEXT,
    source      TEXT,
    detail      TEXT,
    prev_hash   BYTEA     NOT NULL,
    hash        BYTEA     NOT NULL,
    node        TEXT
);
CREATE INDEX audit_nhs_number ON audit (nhs_number) WHERE nhs_number IS NOT NULL;
";

/// v7: the operator API's tokens, shared by every node (the embedded store's `api_tokens`):
/// by the SHA-256 of their secret, which is never kept.
const V7: &str = "
CREATE TABLE api_tokens (
    name        TEXT   PRIMARY KEY,
    role        TEXT   NOT NULL,
    hash        BYTEA  NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);
";

/// v8: the regional patient index (the embedded store's `patient_index.rs`). While messages
/// are kept, the lanes that carried a patient are read from `messages` and `deliveries`
/// (`operations.rs`), so commits pay nothing for it; retention copies them into
/// `patient_lanes` before the messages go, so the index outlives them. `merged_nhs_number` is
/// MRG-1 of a merge: the survivor is also found under the number merged away, through the
/// merges kept (`messages`) and those retention noted (`patient_merges`).
const V8: &str = "
ALTER TABLE messages ADD COLUMN merged_nhs_number TEXT;
CREATE TABLE patient_lanes (
    nhs_number  TEXT    NOT NULL,
    lane        INTEGER NOT NULL,
    PRIMARY KEY (nhs_number, lane)
);
CREATE TABLE patient_merges (
    survivor     TEXT NOT NULL,
    merged_away  TEXT NOT NULL,
    PRIMARY KEY (survivor, merged_away)
);
";

/// What [`migrate`] found and left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: i32,
    pub to: i32,
}

/// Brings the schema to [`SCHEMA_VERSION`], once, whatever other nodes do at the same time.
pub async fn migrate(client: &mut Client) -> Result<Migrated, PgStoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS wyvern_schema (version INTEGER NOT NULL)")
        .await?;
    let found: i32 = tx
        .query_opt("SELECT version FROM wyvern_schema", &[])
        .await?
        .map_or(0, |row| row.get(0));
    if found > SCHEMA_VERSION {
        return Err(PgStoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for m in &MIGRATIONS[usize::try_from(found).unwrap_or(0)..] {
        tx.batch_execute(m).await?;
    }
    if found == 0 {
        tx.execute(
            "INSERT INTO wyvern_schema (version) VALUES ($1)",
            &[&SCHEMA_VERSION],
        )
        .await?;
    } else if found < SCHEMA_VERSION {
        tx.execute("UPDATE wyvern_schema SET version = $1", &[&SCHEMA_VERSION])
            .await?;
    }
    tx.commit().await?;
    if found < SCHEMA_VERSION {
        tracing::info!(
            from = found,
            to = SCHEMA_VERSION,
            "PostgreSQL store schema migrated"
        );
    }
    Ok(Migrated {
        from: found,
        to: SCHEMA_VERSION,
    })
}
