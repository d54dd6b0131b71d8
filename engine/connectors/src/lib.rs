//! Wyvern's transports, one module per protocol. Each knows its wire format and nothing of
//! routes or storage: a listener hands frames to a handler and writes back what it is given.

pub mod amqp;
pub mod amqp_consumer;
pub mod fhir;
pub mod file;
pub mod jwt;
pub mod mllp;
pub mod peers;
pub mod tls;
