//! Read-only access for people and tools: search the inbox by control id, NHS number, status.
//!
//! Opens its own read-only connection, so it works while an engine is writing (WAL readers
//! never block the writer) and from another process such as `wyvern inbox list`.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, types::Value};

use crate::{InboxStatus, StoreError};

/// Filters for [`InboxReader::list`]; all optional, newest first.
#[derive(Debug, Clone, Default)]
pub struct InboxQuery {
    pub control_id: Option<String>,
    pub nhs_number: Option<String>,
    pub status: Option<InboxStatus>,
    pub source: Option<String>,
    /// Only rows older than this sequence number (paging).
    pub before_seq: Option<i64>,
    pub limit: usize,
}

/// One inbox row as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRow {
    pub seq: i64,
    pub id: String,
    pub received_at_ms: i64,
    pub source: String,
    pub peer: Option<String>,
    pub content_type: String,
    pub status: String,
    pub sending_application: Option<String>,
    pub sending_facility: Option<String>,
    pub message_type: Option<String>,
    pub control_id: Option<String>,
    pub nhs_number: Option<String>,
    pub error: Option<String>,
    pub raw_len: i64,
    /// Present from [`InboxReader::get`] only.
    pub raw: Option<Vec<u8>>,
    pub ack: Option<Vec<u8>>,
}

/// What duplicate detection keeps of a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentKey {
    pub id: String,
    pub sending_application: String,
    pub sending_facility: String,
    pub control_id: String,
    pub digest: wyvern_core::ContentDigest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    pub status: String,
    pub count: i64,
}

#[derive(Debug)]
pub struct InboxReader {
    conn: Connection,
}

pub(crate) const COLUMNS: &str = "seq, id, received_at, source, peer, content_type, status, sending_app, sending_facility, \
    message_type, control_id, nhs_number, error, raw_len";

impl InboxReader {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let conn = crate::schema::connect(
            dir,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            std::time::Duration::from_secs(5),
        )?;
        Ok(InboxReader { conn })
    }

    pub fn list(&self, q: &InboxQuery) -> Result<Vec<InboxRow>, StoreError> {
        let mut clauses = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        // Each condition is made from its parameter's number.
        let mut add = |v: Value, clause: &dyn Fn(usize) -> String| {
            args.push(v);
            clauses.push(clause(args.len()));
        };
        if let Some(c) = &q.control_id {
            add(Value::Text(c.clone()), &|n| format!("control_id = ?{n}"));
        }
        if let Some(n) = &q.nhs_number {
            add(Value::Text(n.clone()), &crate::nhs_index::matches);
        }
        if let Some(s) = q.status {
            add(Value::Text(s.as_str().into()), &|n| {
                format!("status = ?{n}")
            });
        }
        if let Some(s) = &q.source {
            add(Value::Text(s.clone()), &|n| format!("source = ?{n}"));
        }
        if let Some(b) = q.before_seq {
            add(Value::Integer(b), &|n| format!("seq < ?{n}"));
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let limit = if q.limit == 0 { 50 } else { q.limit };
        let sql = format!("SELECT {COLUMNS} FROM inbox {filter} ORDER BY seq DESC LIMIT {limit}");
        let mut stmt = self.conn.prepare(&sql).map_err(StoreError::Query)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), summary)
            .map_err(StoreError::Query)?;
        rows.collect::<Result<_, _>>().map_err(StoreError::Query)
    }

    /// The (route, destination) of every lane that has carried a message about `nhs_number`:
    /// the regional patient index (`patient_index.rs`).
    pub fn lanes_of(&self, nhs_number: &str) -> Result<Vec<(String, String)>, StoreError> {
        crate::patient_index::lanes_of(&self.conn, nhs_number)
    }

    /// One row with its raw bytes and ACK, by ULID or sequence number.
    pub fn get(&self, id_or_seq: &str) -> Result<Option<InboxRow>, StoreError> {
        let (clause, arg) = match id_or_seq.parse::<i64>() {
            Ok(seq) => ("seq = ?1", Value::Integer(seq)),
            Err(_) => ("id = ?1", Value::Text(id_or_seq.to_ascii_uppercase())),
        };
        let sql = format!("SELECT {COLUMNS}, raw, ack FROM inbox WHERE {clause}");
        self.conn
            .query_row(&sql, [arg], whole)
            .optional()
            .map_err(StoreError::Query)
    }

    /// A page of a route's messages in a time range, oldest first, each with what was queued
    /// for each destination (shadow replay).
    pub fn traffic(
        &self,
        q: &crate::TrafficQuery,
    ) -> Result<Vec<crate::StoredTraffic>, StoreError> {
        crate::traffic::page(&self.conn, q)
    }

    /// The most recent accepted or filtered messages of one source, newest first, as
    /// `(id, MSH-3, MSH-4, MSH-10, CRC-32 of the bytes)`: what duplicate detection remembers.
    pub fn recent_keys(&self, source: &str, limit: usize) -> Result<Vec<RecentKey>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, COALESCE(sending_app, ''), COALESCE(sending_facility, ''), COALESCE(control_id, ''), \
                 CASE WHEN typeof(digest) = 'blob' THEN digest END, CASE WHEN typeof(digest) = 'blob' THEN NULL ELSE raw END \
                 FROM inbox WHERE source = ?1 AND status IN ('accepted', 'filtered') ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(StoreError::Query)?;
        let rows = stmt
            .query_map(rusqlite::params![source, limit as i64], |r| {
                Ok(RecentKey {
                    id: r.get(0)?,
                    sending_application: r.get(1)?,
                    sending_facility: r.get(2)?,
                    control_id: r.get(3)?,
                    // A row from before the SHA-256 digest: hash its bytes now.
                    digest: match r.get::<_, Option<Vec<u8>>>(4)? {
                        Some(d) if d.len() == 16 => {
                            let mut out = [0u8; 16];
                            out.copy_from_slice(&d);
                            out
                        }
                        _ => wyvern_core::content_digest(
                            &r.get::<_, Option<Vec<u8>>>(5)?.unwrap_or_default(),
                        ),
                    },
                })
            })
            .map_err(StoreError::Query)?;
        rows.collect::<Result<_, _>>().map_err(StoreError::Query)
    }

    /// How many rows have each status.
    pub fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT status, COUNT(*) FROM inbox GROUP BY status ORDER BY status")
            .map_err(StoreError::Query)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StatusCount {
                    status: r.get(0)?,
                    count: r.get(1)?,
                })
            })
            .map_err(StoreError::Query)?;
        rows.collect::<Result<_, _>>().map_err(StoreError::Query)
    }

    /// Every control id of one source with a given status, in commit order (for audits and tests).
    pub fn control_ids(&self, status: InboxStatus) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT control_id FROM inbox WHERE status = ?1 AND control_id IS NOT NULL ORDER BY seq").map_err(StoreError::Query)?;
        let rows = stmt
            .query_map([status.as_str()], |r| r.get(0))
            .map_err(StoreError::Query)?;
        rows.collect::<Result<_, _>>().map_err(StoreError::Query)
    }
}

/// A row of `COLUMNS, raw, ack`.
pub(crate) fn whole(r: &Row<'_>) -> rusqlite::Result<InboxRow> {
    let mut row = summary(r)?;
    row.raw = r.get(14)?;
    row.ack = r.get(15)?;
    Ok(row)
}

fn summary(r: &Row<'_>) -> rusqlite::Result<InboxRow> {
    Ok(InboxRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        received_at_ms: r.get(2)?,
        source: r.get(3)?,
        peer: r.get(4)?,
        content_type: r.get(5)?,
        status: r.get(6)?,
        sending_application: r.get(7)?,
        sending_facility: r.get(8)?,
        message_type: r.get(9)?,
        control_id: r.get(10)?,
        nhs_number: r.get(11)?,
        error: r.get(12)?,
        raw_len: r.get(13)?,
        raw: None,
        ack: None,
    })
}
