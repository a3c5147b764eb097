//! vigil: a data governance and access-control policy sidecar.
//!
//! The library is the whole product minus argument parsing: the decision
//! core ([`authz`]), identity ([`authn`]), the audit log ([`audit`]), the
//! policy loader and live snapshot ([`policy`]), the application core every
//! front door calls ([`app`]), the adapters ([`grpc`], [`http`]) and their
//! assembly into a server ([`server`]). See ARCHITECTURE.md for the
//! map and the invariants.

pub mod app;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod cli;
pub mod config;
pub mod diagnostics;
pub mod gateway;
pub mod grpc;
pub mod http;
pub mod keyfile;
pub mod keys;
pub mod limits;
pub mod listen;
pub mod logging;
pub mod mask;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod witness;

/// Generated protobuf and gRPC code for package `vigil.v1`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("vigil.v1");

    pub mod codec;
    pub mod json;
    pub mod text;

    /// Encoded descriptors of `vigil.v1`, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("vigil_descriptor");
}
