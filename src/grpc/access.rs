//! `vigil.v1.AccessControl`: Authorize and AuthorizeBatch, decoded and
//! encoded; the use cases are the core's.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::caller;
use crate::{
    app::{AccessCall, Authorized, AuthorizedParts, Core},
    proto::{
        access_control_server::AccessControl, AuthorizeBatchRequest, AuthorizeBatchResponse,
        AuthorizeRequest, AuthorizeResponse,
    },
};

#[derive(Debug, Clone)]
pub struct AccessControlService {
    core: Arc<Core>,
}

impl AccessControlService {
    pub fn new(core: Arc<Core>) -> AccessControlService {
        AccessControlService { core }
    }
}

fn access_call(request: AuthorizeRequest) -> AccessCall {
    AccessCall {
        subject: request.subject,
        object: request.object,
        action: request.action,
        domain: request.domain,
        attributes: request.attributes,
    }
}

fn response(answer: Authorized) -> AuthorizeResponse {
    let AuthorizedParts {
        allowed,
        decision_id,
        reason,
        policy_version,
        limit,
        retry_after_ms,
        receipt,
    } = answer.into_parts();
    AuthorizeResponse {
        allowed,
        decision_id,
        reason,
        policy_version,
        audit_seq: receipt.seq(),
        audit_hash: receipt.hash_hex(),
        retry_after_ms,
        limit,
    }
}

#[tonic::async_trait]
impl AccessControl for AccessControlService {
    async fn authorize(
        &self,
        request: Request<AuthorizeRequest>,
    ) -> Result<Response<AuthorizeResponse>, Status> {
        let (metadata, extensions, message) = request.into_parts();
        let caller = caller(&metadata, &extensions);
        let answer = self.core.authorize(&caller, access_call(message)).await?;
        Ok(Response::new(response(answer)))
    }

    async fn authorize_batch(
        &self,
        request: Request<AuthorizeBatchRequest>,
    ) -> Result<Response<AuthorizeBatchResponse>, Status> {
        let (metadata, extensions, message) = request.into_parts();
        let caller = caller(&metadata, &extensions);
        let requests = message.requests.into_iter().map(access_call).collect();
        let answers = self.core.authorize_batch(&caller, requests).await?;
        Ok(Response::new(AuthorizeBatchResponse {
            responses: answers.into_iter().map(response).collect(),
        }))
    }
}
