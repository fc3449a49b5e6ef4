//! The Cutover wire contract, generated from `proto/cutover/v1/`.
//!
//! Only the edge modules of each binary (`grpc`, `session`) use these types;
//! domain code converts at the edge with `From`/`TryFrom`.

#![forbid(unsafe_code)]

/// `cutover.v1`: agent session, enrollment, and operator control.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("cutover.v1");
}

pub use v1::*;

/// The compiled `proto/` (a `FileDescriptorSet`), for gRPC server
/// reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cutover_descriptor.bin"));

pub mod codec;
