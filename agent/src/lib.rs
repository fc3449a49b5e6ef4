//! The Cutover host agent: everything on one host. It enrolls the host,
//! keeps a session to the coordinator, and (in later modules) stages
//! releases, holds listening sockets and swaps processes.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod cli;
pub mod config;
pub mod enroll;
pub mod facts;
pub mod fetch;
pub mod identity;
pub mod releases;
pub mod session;
pub mod sys;
pub mod unpack;
