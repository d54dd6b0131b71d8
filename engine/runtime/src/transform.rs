//! The seam between route steps and plugins: `wasm:` steps call a [`Transform`], loaded by a
//! [`TransformLoader`] the binary provides (over wasmtime, in `wyvern-wasm`). The runtime
//! itself never links wasmtime, so its tests build in seconds.

use std::fmt::Debug;
use std::sync::Arc;

use wyvern_config::{MapKind, WasmStep};

/// One message handed to or returned by a transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformMessage {
    pub content_type: String,
    pub body: Vec<u8>,
    pub metadata: Vec<(String, String)>,
}

/// Why a transform produced no messages, as the sender will hear it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransformError {
    /// The input is wrong: AR, never retried.
    Reject(String),
    /// This attempt failed (the plugin said so, trapped, timed out or hit a limit): AE, the
    /// sender may resend.
    Error(String),
}

/// A loaded plugin.
pub trait Transform: Send + Sync + Debug {
    /// `id`: the message's id, for the plugin's log lines.
    fn process(
        &self,
        id: &str,
        msg: TransformMessage,
    ) -> Result<Vec<TransformMessage>, TransformError>;
}

/// Loads the plugin of a `wasm:` step (when the engine is built).
pub trait TransformLoader: Send + Sync {
    fn load(&self, step: &WasmStep) -> Result<Arc<dyn Transform>, String>;

    /// The built-in mapping of a `map:` step; its output is the mapped message (FHIR JSON).
    fn mapper(&self, kind: MapKind) -> Result<Arc<dyn Transform>, String> {
        Err(format!("this build has no {kind:?} mapping"))
    }

    /// The FHIR parser of `fhir` sources.
    fn fhir_codec(&self) -> Result<Arc<dyn crate::source::fhir::FhirCodec>, String> {
        Err("this build cannot parse FHIR".into())
    }
}

/// For engines without plugin support: every `wasm:` step is refused with a clear reason.
#[derive(Debug)]
pub struct NoPlugins;

impl TransformLoader for NoPlugins {
    fn load(&self, step: &WasmStep) -> Result<Arc<dyn Transform>, String> {
        Err(format!(
            "this build cannot run WebAssembly plugins ({})",
            step.plugin.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Decision, RoutePlan};
    use wyvern_config::{OrderBy, Step};
    use wyvern_hl7::Message;

    /// Splits on `SPLIT`, rejects `REJECT`, fails `FAIL`, filters `DROP`, else upper-cases PID.
    #[derive(Debug)]
    struct Fake;

    impl Transform for Fake {
        fn process(
            &self,
            _id: &str,
            msg: TransformMessage,
        ) -> Result<Vec<TransformMessage>, TransformError> {
            let text = String::from_utf8_lossy(&msg.body).into_owned();
            let with = |body: String| TransformMessage {
                body: body.into_bytes(),
                ..msg.clone()
            };
            if text.contains("REJECT") {
                Err(TransformError::Reject("bad input".into()))
            } else if text.contains("FAIL") {
                Err(TransformError::Error("plugin fake trapped".into()))
            } else if text.contains("GARBLE") {
                Ok(vec![with("not hl7 at all".into())])
            } else if text.contains("DROP") {
                Ok(vec![])
            } else if text.contains("SPLIT") {
                Ok(vec![
                    with(text.replace("SPLIT", "ONE")),
                    with(text.replace("SPLIT", "TWO")),
                ])
            } else {
                Ok(vec![with(text.replace("pid", "PID"))])
            }
        }
    }

    fn plan() -> RoutePlan {
        let step = Step::Wasm(wyvern_config::WasmStep {
            plugin: "fake.wasm".into(),
            config: String::new(),
            time: std::time::Duration::from_millis(100),
            memory: 1 << 20,
            fuel: None,
            tables: Vec::new(),
        });
        RoutePlan {
            route: "r".into(),
            steps: vec![step],
            transforms: vec![Some(Arc::new(Fake))],
            destinations: vec!["d".into()],
            order_by: OrderBy::Sender,
        }
    }

    fn decide(body: &str) -> Decision {
        let raw = format!("MSH|^~\\&|A|B|||2026||ADT^A01|C1|P|2.4\r{body}\r");
        plan().decide(&Message::parse(raw.as_bytes()).unwrap(), "01ID")
    }

    #[test]
    fn plugin_outcomes_become_decisions() {
        match decide("ZZZ|pid") {
            Decision::Deliver(d) => {
                assert_eq!(d.len(), 1);
                assert!(
                    String::from_utf8_lossy(d[0].payload.as_ref().unwrap()).contains("ZZZ|PID")
                );
            }
            other => panic!("{other:?}"),
        }
        match decide("ZZZ|SPLIT") {
            Decision::Deliver(d) => assert_eq!(d.len(), 2, "two outputs, two deliveries"),
            other => panic!("{other:?}"),
        }
        assert_eq!(decide("ZZZ|DROP"), Decision::Filtered { step: 1 });
        assert!(matches!(
            decide("ZZZ|REJECT"),
            Decision::Refused { reject: true, .. }
        ));
        assert!(matches!(
            decide("ZZZ|FAIL"),
            Decision::Refused { reject: false, .. }
        ));
    }

    #[test]
    fn a_route_without_a_loader_refuses_wasm_steps_at_build() {
        let e = NoPlugins
            .load(&wyvern_config::WasmStep {
                plugin: "x.wasm".into(),
                config: String::new(),
                time: std::time::Duration::from_millis(1),
                memory: 1,
                fuel: None,
                tables: Vec::new(),
            })
            .unwrap_err();
        assert!(e.contains("x.wasm"));
    }
}
