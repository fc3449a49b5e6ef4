//! The protobuf codec of every Cutover RPC: tonic's prost codec with small
//! per-RPC buffers.
//!
//! tonic allocates its encode and decode buffers eagerly, 8 KiB each per
//! RPC, and an agent session is one RPC held open for the life of the
//! agent: at 10,000 agents that is 160 MiB of mostly empty buffers on the
//! coordinator. Almost every session message (heartbeats, health reports,
//! results) is well under 1 KiB; larger ones grow the buffer as needed.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::ProstCodec;

/// Initial size of a per-RPC buffer, and the step it grows by.
pub const BUFFER_SIZE: usize = 1024;
/// Encoded bytes buffered before a streaming encoder yields (tonic's
/// default).
pub const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with [`BUFFER_SIZE`] buffers (used by the generated code).
#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = <ProstCodec<T, U> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}
