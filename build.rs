//! Compiles proto/ with protox, so building vigil never needs a system protoc.
use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/vigil/v1/vigil.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Reflection serves this set, so grpcurl works without the .proto file.
    fs::write(out.join("vigil_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .codec_path("crate::proto::codec::LeanCodec")
        // Records: fields in a Vec, in the order sent (src/proto/json.rs).
        .extern_path(".google.protobuf.Struct", "crate::proto::json::Struct")
        .compile_fds(fds)?;
    Ok(())
}
