//! The Cutover coordinator and the `cutover` operator command.
//!
//! `cutover serve` runs [`server::Server`]: the fleet registry, the store,
//! the CA, and the gRPC services agents and operators call. Every other
//! subcommand is a client of it (or works on the coordinator's local
//! files, for `ca` and `config`).

#![forbid(unsafe_code)]

pub mod analysis;
pub mod app;
pub mod backup;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod demo;
pub mod demo_traffic;
pub mod deployments;
pub mod dora;
pub mod drift;
pub mod engine;
pub mod fleet;
pub mod grpc;
pub mod guard;
pub mod haproxy;
pub mod leader;
pub mod logs;
pub mod metrics;
pub mod notify;
pub mod output;
pub mod pki_setup;
pub mod promotion;
pub mod promql;
pub mod rollout;
pub mod samples;
pub mod server;
pub mod standby;
pub mod store;
pub mod tickets;
