//! `vigil.v1.Audit`: streaming export and verification of the trail, for
//! administrators.

use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::caller;
use crate::{
    app::{Core, ExportCall},
    audit::record::{self, CheckedLine},
    listen::Plane,
    proto::{
        audit_server::Audit, AuditRecord, ExportAuditRequest, VerifyAuditRequest,
        VerifyAuditResponse,
    },
};

#[derive(Debug, Clone)]
pub struct AuditService {
    core: Arc<Core>,
    /// The plane of the listener this instance serves.
    plane: Plane,
}

impl AuditService {
    pub fn new(core: Arc<Core>, plane: Plane) -> AuditService {
        AuditService { core, plane }
    }
}

/// An export whose reader takes nothing for this long is abandoned, so a
/// stalled client cannot pin a thread.
const STALLED_READER: std::time::Duration = std::time::Duration::from_secs(30);

fn to_proto(line: &[u8], checked: &CheckedLine) -> AuditRecord {
    let r = &checked.record;
    AuditRecord {
        seq: r.seq,
        time: r.ts.clone(),
        kind: r.kind.to_string(),
        decision_id: r.id.clone().unwrap_or_default(),
        subject: r.sub.clone().unwrap_or_default(),
        object: r.obj.clone().unwrap_or_default(),
        action: r.act.clone().unwrap_or_default(),
        domain: r.dom.clone().unwrap_or_default(),
        allowed: r.allowed.unwrap_or(false),
        reason: r.reason.clone().unwrap_or_default(),
        policy_version: r.pv.clone().unwrap_or_default(),
        prev_hash: r.prev.clone(),
        hash: record::hash_text(&checked.hash),
        raw: String::from_utf8_lossy(line).into_owned(),
    }
}

#[tonic::async_trait]
impl Audit for AuditService {
    type ExportAuditStream = ReceiverStream<Result<AuditRecord, Status>>;

    async fn export_audit(
        &self,
        request: Request<ExportAuditRequest>,
    ) -> Result<Response<Self::ExportAuditStream>, Status> {
        let (metadata, extensions, request) = request.into_parts();
        let call = ExportCall {
            since: request.since,
            until: request.until,
            subject: request.subject,
            allowed: request.allowed,
            from_seq: request.from_seq,
        };
        let export = self
            .core
            .export_audit(&caller(&metadata, &extensions), self.plane, call)
            .await?;
        // The export holds one blocking thread only while its reader keeps
        // up.
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let send = |item| {
                runtime
                    .block_on(tokio::time::timeout(STALLED_READER, tx.send(item)))
                    .map_err(|_| "the client stopped reading".to_owned())?
                    .map_err(|_| "the client went away".to_owned())
            };
            if let Err(error) = export.run(|line, checked| send(Ok(to_proto(line, checked)))) {
                let _ = send(Err(error.into()));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn verify_audit(
        &self,
        request: Request<VerifyAuditRequest>,
    ) -> Result<Response<VerifyAuditResponse>, Status> {
        let (metadata, extensions, request) = request.into_parts();
        let verified = self
            .core
            .verify_audit(&caller(&metadata, &extensions), self.plane, &request.anchor)
            .await?;
        let response = match verified {
            Ok(report) => VerifyAuditResponse {
                ok: true,
                first_seq: report.first_seq,
                last_seq: report.last_seq,
                head_hash: hex::encode(report.head),
                error: String::new(),
                records: report.records,
            },
            Err(error) => VerifyAuditResponse {
                ok: false,
                error: error.to_string(),
                ..Default::default()
            },
        };
        Ok(Response::new(response))
    }
}
