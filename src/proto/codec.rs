//! The protobuf codec of vigil's own services and of ext_authz: prost,
//! with buffers sized for vigil's messages, and a request that does not
//! decode reported as the caller's mistake. The generated code names it
//! (`codec_path` in build.rs), so it depends on nothing of vigil's above
//! `proto`.
//!
//! tonic allocates an 8 KiB encode buffer per call (and as much to decode),
//! made for streaming. A decision's answer is ~200 bytes and its request
//! about as small; under load hundreds of answers wait for their batch's
//! fdatasync and then for their connection's write, each pinning its own 8
//! KiB, so the answers of one wave spread over megabytes that no cache
//! holds. Larger messages still fit: encoding grows the buffer as it
//! writes, decoding reserves a message's length once it is known.

use std::marker::PhantomData;

use tonic::{
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
    Status,
};
use tonic_prost::{ProstDecoder, ProstEncoder};

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

/// A request body that does not decode is the caller's mistake: tonic's
/// codec says INTERNAL, vigil says INVALID_ARGUMENT. Tonic plumbing: the
/// codec runs before any handler, so this cannot go through the core's refusal table.
pub fn undecodable(status: Status) -> Status {
    if status.code() != tonic::Code::Internal {
        return status;
    }
    let detail = status.message();
    if let Some((_, path)) = detail.split_once(super::json::NESTED_TOO_DEEP) {
        // A path of keys (values among them starred) and indexes; cut
        // long, it has made its point.
        let path: String = path.chars().take(120).collect();
        return Status::invalid_argument(format!(
            "the request cannot be decoded: a record nests deeper than decoding allows, at {path}… \
             (max_depth, lower still, is the limit to design for)"
        ));
    }
    let why = if detail.contains("recursion limit") {
        "it nests deeper than protobuf decoding allows (max_depth is lower still)"
    } else if detail.contains("UTF-8") {
        "a string field is not valid UTF-8"
    } else {
        "it is not a valid protobuf message of this method's request type"
    };
    Status::invalid_argument(format!("the request cannot be decoded: {why}"))
}
