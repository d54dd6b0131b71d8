//! Wyvern's configuration: the YAML model, pure validation, and the validated [`Config`] the
//! runtime builds from.
//!
//! A config is a folder (or one route file). In a folder, `wyvern.yaml` holds engine settings
//! (optional: embedded defaults apply), `bridge.yaml` the federated read (optional), and every
//! other `*.yaml` is one route; `*.test.yaml` files are route tests, not routes. Reading files is the only I/O here ([`load`]);
//! [`validate`] is pure: it opens no socket, resolves no host and reads no secret, and it
//! reports every problem it finds as `file:line:col: what was expected`.

mod amqp_source;
mod at;
mod bridge;
mod code_table;
mod delivery;
mod destination;
mod diagnostic;
mod directory;
mod duplicates;
mod element_path;
mod fhir_destination;
mod fhir_source;
mod filter;
mod load;
mod model;
mod nrl_destination;
mod peers;
mod route_test;
mod schema;
mod secret;
mod step;
mod tls;
mod units;
mod validate;
mod wasm_step;

pub use amqp_source::{AmqpSource, AmqpSourceFile, QueueType};
pub use bridge::{
    BRIDGE_FILE, Bridge, BridgeFile, Member, MemberFile, Policy, PolicyFile, SearchType,
};
pub use code_table::{
    CodeTable, CodeTableFile, CodeTables, TableRef, parse_code_tables, read_code_table_files,
};
pub use delivery::{OnPermanent, OrderBy, RetryFile, RetryPolicy};
pub use destination::{
    AmqpDestination, AmqpQueue, Destination, DestinationFile, DestinationKind, FileDestination,
    MllpDestination, TemplatePart,
};
pub use diagnostic::{Diagnostic, Severity};
pub use directory::{DirectorySource, DirectorySourceFile};
pub use duplicates::ControlIdReuse;
pub use element_path::{ElementPath, ElementPathError};
pub use fhir_destination::{FhirAuth, FhirDestination, FhirDestinationFile, OAuth2Client};
pub use fhir_source::{FhirInboundAuthFile, FhirSource, FhirSourceFile, JwtAuth, JwtAuthFile};
pub use filter::{Condition, ConditionFile, FieldTest};
pub use load::{SourceFile, is_route_test_file, load, load_route_tests, read_sources};
pub use model::{EngineFile, MllpSourceFile, RouteFile, SourceFileKind, StoreFile};
pub use nrl_destination::{NrlDestination, NrlDestinationFile};
pub use peers::{SenderFile, SenderIdentity, SenderMismatch, SenderRule};
pub use route_test::{
    AckCode, DeliveryCheck, Expectation, ExpectedBody, Input, Line, Outcome, RouteTestFile,
    RouteTests, TestCase, validate_route_tests,
};
pub use schema::{
    bridge_schema, code_table_schema, engine_schema, route_schema, route_test_schema,
};
pub use secret::SecretValue;
pub use step::{MapKind, Removal, Step, StepFile};
pub use tls::{ClientTls, ClientTlsFile, Place, ServerTls, ServerTlsFile};
pub use units::{ByteSize, HumanDuration};
pub use validate::{
    Config, DEFAULT_LEASE, Durability, EngineSettings, MllpSource, Route, SharedStore, Source,
    valid_name, validate,
};
pub use wasm_step::{WasmLimitsFile, WasmStep, WasmStepFile};

/// The engine settings file inside a config folder.
pub const ENGINE_FILE: &str = "wyvern.yaml";
