//! vigil's integration tests, one binary (one link step instead of one per
//! file): each module drives the real server through its real surfaces
//! (gRPC over TCP and Unix sockets, HTTP, the binary itself); `common` is
//! the kit that starts it.

mod audit;
mod authorize;
mod common;
mod deploy;
mod differential;
mod ext_authz;
mod files;
mod gateway;
mod go_casbin;
mod http;
mod jwt;
mod layering;
mod lifecycle;
mod limits;
mod masking;
mod metrics;
mod models;
mod tls;
mod tracing;
mod transport;
