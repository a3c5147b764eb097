//! The HTTP/JSON API (`--http-listen`): the gRPC calls over plain HTTP for
//! callers without generated stubs, and `GET /v1/check` for gateways that
//! ask by subrequest (nginx `auth_request`, Traefik `forwardAuth`).
//!
//! Each endpoint hands the very same call to the gRPC service (identity,
//! limits, audit, errors): an HTTP decision is an Authorize in every
//! respect but its framing. gRPC codes become HTTP statuses as google.api's
//! HTTP mapping does.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::{Deserialize, Serialize};
use tonic::Code;

use crate::{
    gateway::{
        retry_after_seconds, HttpMapping, Mapped, DECISION_HEADER, DENIED_REASON,
        RATE_LIMITED_REASON,
    },
    grpc::{status::retry_after_ms, AccessControlService, DataMaskingService, Shared, Via},
    listen::Connection,
    proto::{
        access_control_server::AccessControl, data_masking_server::DataMasking,
        AuthorizeBatchRequest, AuthorizeRequest, AuthorizeResponse, MaskRequest, UnmaskRequest,
    },
};

#[derive(Clone)]
struct Api {
    access: AccessControlService,
    masking: DataMaskingService,
    mapping: Arc<HttpMapping>,
    shared: Arc<Shared>,
}

pub fn router(shared: Arc<Shared>, mapping: Arc<HttpMapping>) -> Router {
    let api = Api {
        access: AccessControlService::new(shared.clone()),
        masking: DataMaskingService::new(shared.clone()),
        shared: shared.clone(),
        mapping,
    };
    Router::new()
        .route("/v1/authorize", post(authorize))
        .route("/v1/authorize:batch", post(authorize_batch))
        .route("/v1/mask", post(mask))
        .route("/v1/unmask", post(unmask))
        .route("/v1/check", get(check).post(check))
        .with_state(api)
        .merge(super::metrics_router(shared))
}

/// `AuthorizeRequest` in proto3's JSON mapping (camelCase or the field
/// names, both accepted).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AuthorizeJson {
    subject: String,
    object: String,
    action: String,
    domain: String,
    attributes: HashMap<String, String>,
}

impl From<AuthorizeJson> for AuthorizeRequest {
    fn from(json: AuthorizeJson) -> Self {
        AuthorizeRequest {
            subject: json.subject,
            object: json.object,
            action: json.action,
            domain: json.domain,
            attributes: json.attributes,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizeAnswer {
    allowed: bool,
    decision_id: String,
    reason: String,
    policy_version: String,
    /// uint64 as a string, as proto3's JSON mapping writes it.
    audit_seq: String,
    audit_hash: String,
    /// Omitted at their defaults, as proto3's JSON mapping does.
    #[serde(skip_serializing_if = "str::is_empty")]
    retry_after_ms: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    limit: String,
}

impl From<AuthorizeResponse> for AuthorizeAnswer {
    fn from(answer: AuthorizeResponse) -> Self {
        AuthorizeAnswer {
            allowed: answer.allowed,
            decision_id: answer.decision_id,
            reason: answer.reason,
            policy_version: answer.policy_version,
            audit_seq: answer.audit_seq.to_string(),
            audit_hash: answer.audit_hash,
            retry_after_ms: match answer.retry_after_ms {
                0 => String::new(),
                ms => ms.to_string(),
            },
            limit: answer.limit,
        }
    }
}

/// A `429 Too Many Requests` with `Retry-After`, for a rate limit's deny.
fn too_many(body: impl serde::Serialize, retry_after_ms: u64) -> Response {
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    with_retry_after(&mut response, retry_after_ms);
    response
}

fn with_retry_after(response: &mut Response, retry_after_ms: u64) {
    if retry_after_ms > 0 {
        if let Ok(value) = HeaderValue::from_str(&retry_after_seconds(retry_after_ms)) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BatchJson {
    requests: Vec<AuthorizeJson>,
}

/// google.rpc.Status as JSON, with the HTTP status google.api maps its
/// code to.
fn error(status: tonic::Status) -> Response {
    let http = match status.code() {
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = serde_json::json!({
        "code": status.code() as i32,
        "status": format!("{:?}", status.code()),
        "message": status.message(),
    });
    let mut response = (http, Json(body)).into_response();
    with_retry_after(&mut response, retry_after_ms(&status));
    response
}

fn bad_json_status(e: serde_json::Error) -> tonic::Status {
    tonic::Status::invalid_argument(format!("the body is not the JSON this endpoint takes: {e}"))
}

fn bad_json(e: serde_json::Error) -> Response {
    error(bad_json_status(e))
}

/// The HTTP call's message as a gRPC call with its headers and connection.
fn grpc_request<T>(message: T, headers: &HeaderMap, via: Via) -> tonic::Request<T> {
    crate::grpc::forwarded(message, |name| headers.get(name)?.to_str().ok(), via)
}

/// A direct API call: the caller is who its own credentials say.
fn direct(connection: Connection) -> Via {
    Via {
        connection: Some(connection),
        vouched_by_gateway: false,
    }
}

async fn authorize(
    State(api): State<Api>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json: AuthorizeJson = match serde_json::from_slice(&body) {
        Ok(json) => json,
        Err(e) => return bad_json(e),
    };
    match api
        .access
        .authorize_observed(grpc_request(json.into(), &headers, direct(connection)))
        .await
    {
        Ok(answer) => {
            let retry_after_ms = answer.retry_after_ms;
            if answer.limit.is_empty() {
                Json(AuthorizeAnswer::from(answer)).into_response()
            } else {
                too_many(AuthorizeAnswer::from(answer), retry_after_ms)
            }
        }
        Err(status) => error(status),
    }
}

async fn authorize_batch(
    State(api): State<Api>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json: BatchJson = match serde_json::from_slice(&body) {
        Ok(json) => json,
        Err(e) => return bad_json(e),
    };
    let request = AuthorizeBatchRequest {
        requests: json.requests.into_iter().map(Into::into).collect(),
    };
    match AccessControl::authorize_batch(
        &api.access,
        grpc_request(request, &headers, direct(connection)),
    )
    .await
    {
        Ok(answer) => {
            let responses: Vec<AuthorizeAnswer> = answer
                .into_inner()
                .responses
                .into_iter()
                .map(Into::into)
                .collect();
            Json(serde_json::json!({ "responses": responses })).into_response()
        }
        Err(status) => error(status),
    }
}

/// What Mask and Unmask bodies share: who reads what, and the records.
struct Reading {
    subject: String,
    object: String,
    domain: String,
    attributes: HashMap<String, String>,
    records: Vec<crate::proto::json::Struct>,
    json: serde_json::Value,
}

fn reading(body: &[u8]) -> Result<Reading, tonic::Status> {
    let json: serde_json::Value = serde_json::from_slice(body).map_err(bad_json_status)?;
    let text = |key: &str| {
        json.get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let records = match json.get("records") {
        None => Vec::new(),
        Some(records) => records
            .as_array()
            .and_then(|records| {
                records
                    .iter()
                    .map(crate::mask::struct_from_json)
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                tonic::Status::invalid_argument("`records` must be a list of JSON objects")
            })?,
    };
    let attributes = json
        .get("attributes")
        .and_then(|a| a.as_object())
        .map(|a| {
            a.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Reading {
        subject: text("subject"),
        object: text("object"),
        domain: text("domain"),
        attributes,
        records,
        json,
    })
}

async fn mask(
    State(api): State<Api>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reading = match reading(&body) {
        Ok(reading) => reading,
        Err(status) => return error(status),
    };
    let request = MaskRequest {
        subject: reading.subject,
        object: reading.object,
        domain: reading.domain,
        attributes: reading.attributes,
        records: reading.records,
    };
    match DataMasking::mask(
        &api.masking,
        grpc_request(request, &headers, direct(connection)),
    )
    .await
    {
        Ok(answer) => {
            let answer = answer.into_inner();
            let actions: Vec<serde_json::Value> = answer
                .actions
                .iter()
                .map(|a| {
                    let mut action = serde_json::json!({
                        "recordIndex": a.record_index, "path": a.path, "label": a.label,
                        "treatment": a.treatment, "rule": a.rule, "validity": a.validity,
                    });
                    if !a.quota.is_empty() {
                        action["quota"] = a.quota.clone().into();
                    }
                    action
                })
                .collect();
            let mut body = serde_json::json!({
                "records": answer.records.iter().map(crate::mask::struct_to_json).collect::<Vec<_>>(),
                "actions": actions,
                "decisionId": answer.decision_id,
                "auditSeq": answer.audit_seq.to_string(),
                "auditHash": answer.audit_hash,
                "policyVersion": answer.policy_version,
            });
            if answer.retry_after_ms > 0 {
                body["retryAfterMs"] = answer.retry_after_ms.to_string().into();
            }
            Json(body).into_response()
        }
        Err(status) => error(status),
    }
}

async fn unmask(
    State(api): State<Api>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reading = match reading(&body) {
        Ok(reading) => reading,
        Err(status) => return error(status),
    };
    let values = reading
        .json
        .get("values")
        .and_then(|v| v.as_array())
        .map(|values| {
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let request = UnmaskRequest {
        subject: reading.subject,
        object: reading.object,
        domain: reading.domain,
        attributes: reading.attributes,
        values,
        records: reading.records,
    };
    match DataMasking::unmask(
        &api.masking,
        grpc_request(request, &headers, direct(connection)),
    )
    .await
    {
        Ok(answer) => {
            let answer = answer.into_inner();
            Json(serde_json::json!({
                "values": answer.values,
                "records": answer.records.iter().map(crate::mask::struct_to_json).collect::<Vec<_>>(),
                "decisionId": answer.decision_id,
                "auditSeq": answer.audit_seq.to_string(),
                "auditHash": answer.audit_hash,
            }))
            .into_response()
        }
        Err(status) => error(status),
    }
}

/// `GET /v1/check`: a gateway's subrequest. The original method and URI
/// come in `X-Original-Method`/`X-Original-URI` (nginx) or
/// `X-Forwarded-Method`/`X-Forwarded-Uri` (Traefik); the mapping makes them
/// a Casbin request. 200 allows (with the decision id), 403 denies, 401 is
/// an identity failure, 503 an audit outage: never allowed unaudited.
async fn check(
    State(api): State<Api>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
) -> Response {
    let header = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
            .map(str::to_owned)
    };
    let (Some(method), Some(uri)) = (
        header(&["x-original-method", "x-forwarded-method"]),
        header(&["x-original-uri", "x-forwarded-uri"]),
    ) else {
        return error(tonic::Status::invalid_argument(
            "a check needs the original request: X-Original-Method and X-Original-URI \
             (nginx auth_request), or X-Forwarded-Method and X-Forwarded-Uri",
        ));
    };
    let host = header(&["x-original-host", "x-forwarded-host", "host"]).unwrap_or_default();
    let names_subject = api
        .shared
        .authn
        .gateway_names_subject(connection.client_certificate.as_deref());
    let subject = if names_subject {
        match api
            .mapping
            .subject_header
            .as_deref()
            .and_then(|name| header(&[name]))
        {
            Some(subject) => subject,
            None => {
                return error(tonic::Status::unauthenticated(format!(
                    "no subject: send it in the `{}` header ([http] subject_header)",
                    api.mapping
                        .subject_header
                        .as_deref()
                        .unwrap_or("(not configured)")
                )))
            }
        }
    } else {
        // The caller's own credentials (a token, a certificate) name it.
        String::new()
    };
    let Mapped {
        object,
        action,
        domain,
    } = api.mapping.map(&method, &host, &uri, |name| {
        headers.get(name)?.to_str().ok()
    });
    let request = AuthorizeRequest {
        subject,
        object,
        action,
        domain,
        attributes: HashMap::new(),
    };
    let via = Via {
        vouched_by_gateway: names_subject,
        connection: Some(connection),
    };
    match api
        .access
        .authorize_observed(grpc_request(request, &headers, via))
        .await
    {
        Ok(answer) => {
            let mut response = if answer.allowed {
                StatusCode::OK.into_response()
            } else if !answer.limit.is_empty() {
                let body = serde_json::json!({
                    "allowed": false,
                    "decisionId": answer.decision_id,
                    "reason": RATE_LIMITED_REASON,
                });
                too_many(body, answer.retry_after_ms)
            } else {
                let body = serde_json::json!({
                    "allowed": false,
                    "decisionId": answer.decision_id,
                    "reason": DENIED_REASON,
                });
                (StatusCode::FORBIDDEN, Json(body)).into_response()
            };
            if let Ok(id) = HeaderValue::from_str(&answer.decision_id) {
                response.headers_mut().insert(DECISION_HEADER, id);
            }
            response
        }
        Err(status) => error(status),
    }
}
