//! What can go wrong, classified as the rest of the store's errors are: a node that cannot
//! reach PostgreSQL waits and tries again (transient); one that finds a schema newer than it
//! knows must not start (permanent, an operator's upgrade).

/// A failure of the PostgreSQL store.
#[derive(Debug, thiserror::Error)]
pub enum PgStoreError {
    #[error("cannot connect to PostgreSQL at {at}: {source}")]
    Connect {
        at: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL refused a query: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error(
        "the store's schema is version {found}, newer than this build of Wyvern knows ({known}): upgrade this node before starting it"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error("the store holds {what} this build cannot read")]
    Corrupt { what: String },
    #[error(
        "this node no longer holds partition {partition} of lane {lane} (another node took it over): the pass is dropped and delivered again by its new holder"
    )]
    LeaseLost { lane: i64, partition: i16 },
    #[error("the connection to PostgreSQL is closed; it is opened again by the next pass")]
    Unreachable,
}

impl PgStoreError {
    /// Worth trying again later (the database away or busy), as opposed to a node that must
    /// not run until someone acts.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            PgStoreError::SchemaTooNew { .. } | PgStoreError::Corrupt { .. }
        )
    }
}
