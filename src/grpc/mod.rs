//! The gRPC adapter: vigil's own services (AccessControl, DataMasking,
//! Audit, PolicyAdmin) and Envoy's ext_authz. Each handler decodes its
//! message into the core's request, reads the [`Caller`] from the call's
//! metadata and connection, calls [`app::Core`](crate::app::Core), and
//! encodes the answer; an [`AppError`] becomes a `Status` in `status.rs`,
//! from the core's one refusal table.

mod access;
pub mod admin;
mod audit;
pub mod ext_authz;
pub mod io;
pub mod masking;
pub mod status;

pub use access::AccessControlService;
pub use admin::PolicyAdminService;
pub use audit::AuditService;
pub use masking::DataMaskingService;

use crate::{app::Caller, listen::Connection};

/// The caller of a gRPC call: its metadata (the bearer token, the trace
/// context) and the connection the listener recorded in its extensions.
fn caller<'a>(
    metadata: &'a tonic::metadata::MetadataMap,
    extensions: &'a tonic::Extensions,
) -> Caller<'a> {
    Caller::new(extensions.get::<Connection>(), |name| {
        metadata.get(name)?.to_str().ok()
    })
}
