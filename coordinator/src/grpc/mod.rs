//! The coordinator's gRPC edge: the services agents and operators call.
//! Handlers are thin: authenticate, convert, hand to the domain, convert
//! back. Prost types do not leave this module.

pub mod agent;
pub mod auth;
pub mod control;
pub mod deploy;
pub mod enroll;
