//! End-to-end tests: the real `wyvern` binary, real sockets, a real store on disk.
//! One test binary (as ripgrep does), one module per area.

mod amqp;
mod amqp_publisher;
mod api;
mod audit;
mod bridge;
mod cli;
mod crash;
mod delivery;
mod directory;
mod fhir;
mod fhir_auth;
mod fhir_inbound;
mod harness;
mod medplum;
mod metrics;
mod mllp_wire;
mod nrl;
mod peers;
mod plugins;
mod receiver;
mod route_tests;
mod shadow;
mod shared_partition;
mod shared_store;
mod store_faults;
mod store_migrate;
mod tls;
