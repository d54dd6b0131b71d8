//! An operator's two switches on a route, flipped through the API (`POST
//! /api/v1/routes/{name}/stop|start|pause|resume`) and read on the hot paths with one relaxed
//! load each:
//!
//! - **Intake stopped**: new messages are answered "not now" and not stored, so their senders
//!   keep them and send again later — AE for HL7v2 (the MLLP connection stays open), 503 with
//!   an OperationOutcome for FHIR, the file left in its folder, the queue message requeued.
//!   Delivery of what was already accepted goes on.
//! - **Delivery paused**: the route's delivery workers send nothing; accepted messages wait in
//!   the outbox, in order, and go when it is resumed. Intake goes on.
//!
//! Both start off at every engine start: the switches are for the hours a destination is in
//! maintenance, not configuration (which is the route file).

use std::sync::atomic::{AtomicBool, Ordering};

/// A route's switches.
#[derive(Debug, Default)]
pub struct RouteControl {
    intake_stopped: AtomicBool,
    delivery_paused: AtomicBool,
}

/// What an operator asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    StopIntake,
    StartIntake,
    PauseDelivery,
    ResumeDelivery,
}

impl Switch {
    pub fn parse(s: &str) -> Option<Switch> {
        match s {
            "stop" => Some(Switch::StopIntake),
            "start" => Some(Switch::StartIntake),
            "pause" => Some(Switch::PauseDelivery),
            "resume" => Some(Switch::ResumeDelivery),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Switch::StopIntake => "stop",
            Switch::StartIntake => "start",
            Switch::PauseDelivery => "pause",
            Switch::ResumeDelivery => "resume",
        }
    }
}

impl RouteControl {
    pub fn intake_stopped(&self) -> bool {
        self.intake_stopped.load(Ordering::Relaxed)
    }

    pub fn delivery_paused(&self) -> bool {
        self.delivery_paused.load(Ordering::Relaxed)
    }

    pub fn apply(&self, s: Switch) {
        match s {
            Switch::StopIntake => self.intake_stopped.store(true, Ordering::Relaxed),
            Switch::StartIntake => self.intake_stopped.store(false, Ordering::Relaxed),
            Switch::PauseDelivery => self.delivery_paused.store(true, Ordering::Relaxed),
            Switch::ResumeDelivery => self.delivery_paused.store(false, Ordering::Relaxed),
        }
    }

    /// `running`, `stopped` (intake), `paused` (delivery) or `stopped, paused`.
    pub fn state(&self) -> &'static str {
        match (self.intake_stopped(), self.delivery_paused()) {
            (false, false) => "running",
            (true, false) => "stopped",
            (false, true) => "paused",
            (true, true) => "stopped, paused",
        }
    }
}
