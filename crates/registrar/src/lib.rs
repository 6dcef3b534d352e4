//! The registrar: REGISTER processing (RFC 3261 §10.3) and digest authentication
//! (RFC 2617, RFC 7616, RFC 8760), sans-IO.
//!
//! This crate owns the rules: which REGISTER is accepted, what bindings result, which events
//! they produce, and how credentials are checked. It never touches a socket, the clock or a
//! database: messages, `now` and the device's current bindings come in as arguments; replies,
//! binding changes and events go out. The tokio runtime (`switchboard-runtime`) drives it.
#![forbid(unsafe_code)]

pub mod date;
pub mod digest;
pub mod gruu;
pub mod outbound;
pub mod register;

pub use digest::Algorithm;
pub use outbound::{OutboundUse, outbound_use};
pub use register::{
    AuthOutcome, ChallengeStyle, Ha1Cache, Inspected, Origin, Refusal, Registrar, RegistrarConfig,
    Registration,
};
