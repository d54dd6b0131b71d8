//! The bridge's pure core, kept apart from its I/O (the endpoint and the member clients live in
//! `wyvern-runtime`'s `bridge/`) so it can be tested with data and fuzzed alone:
//!
//! - [`search`]: what a caller asked, checked before any member is asked;
//! - [`federate`]: every member's answer merged into one searchset, each entry tagged with
//!   where it came from.

pub mod federate;
pub mod search;

pub use federate::{
    Answer, MEMBER_TAG, OWNER_TAG, Origin, combine, federate, federate_page, is_outcome,
};
pub use search::{
    BadSearch, Everything, MAX_COUNT, MAX_OFFSET, NHS_NUMBER_SYSTEM, Page, Query, parse,
    parse_everything,
};
pub use wyvern_config::SearchType;
