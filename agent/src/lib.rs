//! The Cutover host agent: everything on one host. It enrolls the host,
//! keeps a session to the coordinator, and (in later modules) stages
//! releases, holds listening sockets and swaps processes.

#![deny(unsafe_code)]

pub mod attribute;
pub mod backoff;
pub mod cli;
pub mod command;
pub mod config;
pub mod doctor;
pub mod drift;
pub mod enroll;
pub mod exec;
pub mod facts;
pub mod fetch;
pub mod hooks;
pub mod identity;
pub mod instance;
pub mod journal;
pub mod journal_out;
pub mod lb;
pub mod logs;
pub mod notify;
pub mod policy;
pub mod probe;
pub mod releases;
pub mod runtime;
pub mod scrape;
pub mod sd;
pub mod service;
pub mod session;
pub mod state;
pub mod steer;
pub mod sys;
pub mod unpack;
pub mod wake;
