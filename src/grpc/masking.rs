//! `vigil.v1.DataMasking`: Mask and Unmask, decoded and encoded; the use
//! cases are the core's.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::caller;
use crate::{
    app::{Core, MaskCall, UnmaskCall},
    proto::{
        self, data_masking_server::DataMasking, MaskRequest, MaskResponse, UnmaskRequest,
        UnmaskResponse,
    },
};

#[derive(Debug, Clone)]
pub struct DataMaskingService {
    core: Arc<Core>,
}

impl DataMaskingService {
    pub fn new(core: Arc<Core>) -> DataMaskingService {
        DataMaskingService { core }
    }
}

#[tonic::async_trait]
impl DataMasking for DataMaskingService {
    async fn mask(&self, request: Request<MaskRequest>) -> Result<Response<MaskResponse>, Status> {
        let (metadata, extensions, message) = request.into_parts();
        let caller = caller(&metadata, &extensions);
        let call = MaskCall {
            subject: message.subject,
            object: message.object,
            domain: message.domain,
            attributes: message.attributes,
            records: message.records,
        };
        let masked = self.core.mask(&caller, call).await?;
        let receipt = *masked.receipt();
        Ok(Response::new(MaskResponse {
            records: masked.records,
            actions: masked
                .actions
                .into_iter()
                .map(|a| proto::FieldAction {
                    record_index: a.record_index as u32,
                    validity: a.validity().to_owned(),
                    path: a.path,
                    label: a.label,
                    treatment: a.treatment,
                    rule: a.rule,
                    quota: a.quota.unwrap_or_default(),
                })
                .collect(),
            decision_id: masked.decision_id,
            audit_seq: receipt.seq(),
            audit_hash: receipt.hash_hex(),
            policy_version: masked.policy_version,
            retry_after_ms: masked.retry_after_ms,
        }))
    }

    async fn unmask(
        &self,
        request: Request<UnmaskRequest>,
    ) -> Result<Response<UnmaskResponse>, Status> {
        let (metadata, extensions, message) = request.into_parts();
        let caller = caller(&metadata, &extensions);
        let call = UnmaskCall {
            subject: message.subject,
            object: message.object,
            domain: message.domain,
            attributes: message.attributes,
            values: message.values,
            records: message.records,
        };
        let unmasked = self.core.unmask(&caller, call).await?;
        let receipt = *unmasked.receipt();
        Ok(Response::new(UnmaskResponse {
            values: unmasked.values,
            records: unmasked.records,
            decision_id: unmasked.decision_id,
            audit_seq: receipt.seq(),
            audit_hash: receipt.hash_hex(),
        }))
    }
}
