//! The protobuf codec of vigil's own services: prost, with buffers sized
//! for vigil's messages.
//!
//! tonic allocates an 8 KiB encode buffer per call (and as much to decode),
//! made for streaming. A decision's answer is ~200 bytes and its request
//! about as small; under load hundreds of answers wait for their batch's
//! fdatasync and then for their connection's write, each pinning its own 8
//! KiB, so the answers of one wave spread over megabytes that no cache
//! holds. Larger messages still fit: encoding grows the buffer as it
//! writes, decoding reserves a message's length once it is known.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstDecoder, ProstEncoder};

use super::status::undecodable;

/// Initial size of a call's encode and decode buffers: decisions and
/// one-record Mask answers (~1.2 KB) fit without growing.
const BUFFER_BYTES: usize = 2 * 1024;
/// Streaming answers (audit export) still reach tonic's default batch size
/// before yielding a body chunk.
const YIELD_THRESHOLD: usize = 32 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD)
}

/// Named by the generated service code (`codec_path` in build.rs).
#[derive(Debug)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        LeanCodec(PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder(ProstDecoder::new(settings()))
    }
}

/// prost's decoder, with a request that does not decode (malformed
/// protobuf, a string that is not UTF-8, nesting past prost's recursion
/// limit) reported as the caller's INVALID_ARGUMENT rather than tonic's
/// INTERNAL.
#[derive(Debug)]
pub struct CheckedDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, tonic::Status> {
        self.0.decode(buf).map_err(undecodable)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
