//! What the nodes sharing a store are doing (`wyvern cluster status`, the API's
//! `/api/v1/cluster`): plain values a shared store fills in (`wyvern-store-pg`'s `status.rs`).

/// The cluster as the database sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterStatus {
    pub nodes: Vec<NodeStatus>,
    pub lanes: Vec<LaneStatus>,
    /// Seconds the oldest open transaction (of anyone but this reader) has run, and who runs it.
    pub oldest_transaction: Option<(f64, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub node: String,
    pub version: String,
    pub started_at: String,
    /// Whole seconds since its last heartbeat (every few seconds).
    pub silent_secs: i64,
    /// Partitions whose lease it holds and that have not expired.
    pub holds: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneStatus {
    pub route: String,
    pub destination: String,
    pub partitions: i16,
    /// (node, partitions it holds), by node.
    pub held: Vec<(String, i64)>,
    /// Deliveries past their partition's cursor (not yet sent, or sent and not yet recorded).
    pub pending: i64,
    /// Deliveries waiting for a retry, behind their key, or held for a person.
    pub exceptions: i64,
}
