//! The HTTP/JSON API (`--http-listen`): the gRPC calls over plain HTTP for
//! callers without generated stubs, and `GET /v1/check` for gateways that
//! ask by subrequest (nginx `auth_request`, Traefik `forwardAuth`).
//!
//! Each endpoint decodes its JSON into the core's request and calls the
//! same use case the gRPC service calls (identity, limits, audit, errors):
//! an HTTP decision is an Authorize in every respect but its framing.
//! Refusals are rendered from the core's one table (`app::respond`), with
//! the HTTP status google.api's HTTP mapping gives their gRPC code.

use std::{collections::HashMap, sync::Arc};

use crate::{
    app::{
        retry_after_seconds, AccessCall, AppError, Authorized, AuthorizedParts, Caller, CheckCall,
        Core, Door, MaskCall, Original, Response as Refusal, UnmaskCall, Verdict, DECISION_HEADER,
    },
    listen::Connection,
};
use axum::{
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::{Deserialize, Serialize};

#[derive(Clone)]
struct Api {
    core: Arc<Core>,
}

pub fn router(core: Arc<Core>) -> Router {
    let api = Api { core: core.clone() };
    Router::new()
        .route("/v1/authorize", post(authorize))
        .route("/v1/authorize:batch", post(authorize_batch))
        .route("/v1/mask", post(mask))
        .route("/v1/unmask", post(unmask))
        .route("/v1/check", get(check).post(check))
        .with_state(api)
        .merge(super::metrics_router(core))
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

impl From<AuthorizeJson> for AccessCall {
    fn from(json: AuthorizeJson) -> Self {
        AccessCall {
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

impl From<Authorized> for AuthorizeAnswer {
    fn from(answer: Authorized) -> Self {
        let AuthorizedParts {
            allowed,
            decision_id,
            reason,
            policy_version,
            limit,
            retry_after_ms,
            receipt,
        } = answer.into_parts();
        AuthorizeAnswer {
            allowed,
            decision_id,
            reason,
            policy_version,
            audit_seq: receipt.seq().to_string(),
            audit_hash: receipt.hash_hex(),
            retry_after_ms: match retry_after_ms {
                0 => String::new(),
                ms => ms.to_string(),
            },
            limit,
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

/// A refusal from the core's table: google.rpc.Status as JSON, with its
/// HTTP status and, for a limit, `Retry-After`.
fn error(error: AppError) -> Response {
    let Refusal {
        code,
        http,
        message,
        retry_after_ms,
    } = Refusal::from(error);
    let body = serde_json::json!({
        "code": code as i32,
        "status": code.name(),
        "message": message,
    });
    let status = StatusCode::from_u16(http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(body)).into_response();
    with_retry_after(&mut response, retry_after_ms);
    response
}

fn bad_json_error(e: serde_json::Error) -> AppError {
    AppError::BadField(format!("the body is not the JSON this endpoint takes: {e}"))
}

fn bad_json(e: serde_json::Error) -> Response {
    error(bad_json_error(e))
}

/// A JSON call's body, admitted only as a same-origin API call: the
/// content type `application/json` (a browser cannot send it across origins
/// without a CORS preflight, which vigil never answers), no foreign
/// `Origin` unless `[http] origins` lists it, a `Host` that is an address,
/// `localhost` or one of `[http] hosts` (a DNS-rebound page sends its own
/// name), and at most `max_message_bytes` (413 past it), as gRPC allows.
struct JsonBody(Bytes);

impl axum::extract::FromRequest<Api> for JsonBody {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, api: &Api) -> Result<Self, Response> {
        let headers = request.headers();
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let json = text(header::CONTENT_TYPE).is_some_and(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return Err(error(AppError::NotJson));
        }
        let mapping = &api.core.mapping;
        if let Some(origin) = headers.get(header::ORIGIN) {
            let allowed = origin
                .to_str()
                .is_ok_and(|origin| mapping.origins.iter().any(|o| o == origin));
            if !allowed {
                return Err(error(AppError::ForeignOrigin(
                    String::from_utf8_lossy(origin.as_bytes())
                        .chars()
                        .take(80)
                        .collect(),
                )));
            }
        }
        let host = text(header::HOST).unwrap_or_default();
        if !mapping.serves_host(host) {
            return Err(error(AppError::ForeignHost(
                host.chars().take(80).collect(),
            )));
        }
        let limit = api.core.limits.max_message_bytes;
        match axum::body::to_bytes(request.into_body(), limit).await {
            Ok(body) => Ok(JsonBody(body)),
            Err(_) => Err(error(AppError::TooLarge { limit })),
        }
    }
}

/// The caller of an HTTP call: its own headers and connection.
fn caller<'a>(connection: &'a Connection, headers: &'a HeaderMap) -> Caller<'a> {
    Caller::new(Some(connection), |name| headers.get(name)?.to_str().ok())
}

async fn authorize(
    State(api): State<Api>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    let json: AuthorizeJson = match serde_json::from_slice(&body) {
        Ok(json) => json,
        Err(e) => return bad_json(e),
    };
    match api
        .core
        .authorize(&caller(&connection, &headers), json.into())
        .await
    {
        Ok(answer) => {
            let retry_after_ms = answer.retry_after_ms();
            if answer.limit().is_none() {
                Json(AuthorizeAnswer::from(answer)).into_response()
            } else {
                too_many(AuthorizeAnswer::from(answer), retry_after_ms)
            }
        }
        Err(refusal) => error(refusal),
    }
}

async fn authorize_batch(
    State(api): State<Api>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    let json: BatchJson = match serde_json::from_slice(&body) {
        Ok(json) => json,
        Err(e) => return bad_json(e),
    };
    let requests = json.requests.into_iter().map(Into::into).collect();
    match api
        .core
        .authorize_batch(&caller(&connection, &headers), requests)
        .await
    {
        Ok(answers) => {
            let responses: Vec<AuthorizeAnswer> = answers.into_iter().map(Into::into).collect();
            Json(serde_json::json!({ "responses": responses })).into_response()
        }
        Err(refusal) => error(refusal),
    }
}

/// What Mask and Unmask bodies share: who reads what, the records (read
/// by `proto::text`: keys in order, repeated keys kept, integers never
/// rounded, nesting bounded) and Unmask's single values.
struct Reading {
    subject: String,
    object: String,
    domain: String,
    attributes: HashMap<String, String>,
    records: Vec<crate::proto::json::Struct>,
    values: Vec<String>,
}

fn reading(body: &[u8], max_depth: usize) -> Result<Reading, AppError> {
    use serde::de::DeserializeSeed;
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Body<'a> {
        subject: String,
        object: String,
        domain: String,
        attributes: HashMap<String, String>,
        #[serde(borrow)]
        records: Option<&'a serde_json::value::RawValue>,
        values: Vec<String>,
    }
    let body: Body<'_> = serde_json::from_slice(body).map_err(bad_json_error)?;
    let records = match body.records {
        None => Vec::new(),
        Some(raw) => {
            let mut reader = serde_json::Deserializer::from_str(raw.get());
            crate::proto::text::RecordsSeed {
                max_depth: max_depth + 1,
            }
            .deserialize(&mut reader)
            .map_err(|e| AppError::BadField(format!("`records`: {e}")))?
        }
    };
    Ok(Reading {
        subject: body.subject,
        object: body.object,
        domain: body.domain,
        attributes: body.attributes,
        records,
        values: body.values,
    })
}

/// A Mask answer in proto3's JSON mapping, records written as sent.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MaskAnswer<'a> {
    records: &'a [crate::proto::json::Struct],
    actions: Vec<ActionAnswer<'a>>,
    decision_id: &'a str,
    audit_seq: String,
    audit_hash: String,
    policy_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ActionAnswer<'a> {
    record_index: usize,
    path: &'a str,
    label: &'a str,
    treatment: &'a str,
    rule: &'a str,
    validity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    quota: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UnmaskAnswer<'a> {
    values: &'a [String],
    records: &'a [crate::proto::json::Struct],
    decision_id: &'a str,
    audit_seq: String,
    audit_hash: String,
}

async fn mask(
    State(api): State<Api>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    let reading = match reading(&body, api.core.limits.max_depth) {
        Ok(reading) => reading,
        Err(refusal) => return error(refusal),
    };
    let call = MaskCall {
        subject: reading.subject,
        object: reading.object,
        domain: reading.domain,
        attributes: reading.attributes,
        records: reading.records,
    };
    match api.core.mask(&caller(&connection, &headers), call).await {
        Ok(answer) => {
            let receipt = *answer.receipt();
            Json(MaskAnswer {
                records: &answer.records,
                actions: answer
                    .actions
                    .iter()
                    .map(|a| ActionAnswer {
                        record_index: a.record_index,
                        path: &a.path,
                        label: &a.label,
                        treatment: &a.treatment,
                        rule: &a.rule,
                        validity: a.validity(),
                        quota: a.quota.as_deref(),
                    })
                    .collect(),
                decision_id: &answer.decision_id,
                audit_seq: receipt.seq().to_string(),
                audit_hash: receipt.hash_hex(),
                policy_version: &answer.policy_version,
                retry_after_ms: (answer.retry_after_ms > 0)
                    .then(|| answer.retry_after_ms.to_string()),
            })
            .into_response()
        }
        Err(refusal) => error(refusal),
    }
}

async fn unmask(
    State(api): State<Api>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    let reading = match reading(&body, api.core.limits.max_depth) {
        Ok(reading) => reading,
        Err(refusal) => return error(refusal),
    };
    let call = UnmaskCall {
        subject: reading.subject,
        object: reading.object,
        domain: reading.domain,
        attributes: reading.attributes,
        values: reading.values,
        records: reading.records,
    };
    match api.core.unmask(&caller(&connection, &headers), call).await {
        Ok(answer) => {
            let receipt = *answer.receipt();
            Json(UnmaskAnswer {
                values: &answer.values,
                records: &answer.records,
                decision_id: &answer.decision_id,
                audit_seq: receipt.seq().to_string(),
                audit_hash: receipt.hash_hex(),
            })
            .into_response()
        }
        Err(refusal) => error(refusal),
    }
}

/// `GET /v1/check`: a gateway's subrequest. The original method, URI and
/// host come in the headers the configured gateway sets (`[http] gateway`:
/// nginx's `X-Original-*`, Traefik's `X-Forwarded-*`); the core's gateway
/// check reads, maps, decides and audits them. 200 allows (with the
/// decision id), 403 denies, 429 is a rate limit, 400 a request that
/// cannot be mapped unambiguously, 401 an identity failure, 503 an audit
/// outage: never allowed unaudited.
async fn check(
    State(api): State<Api>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    headers: HeaderMap,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let call = CheckCall {
        door: Door::Http,
        original: Original::FromHeaders,
        headers: &header,
        peer_principal: None,
        object: None,
        action: None,
        domain: None,
    };
    match api.core.check(&caller(&connection, &headers), call).await {
        Ok(checked) => {
            let mut response = match (checked.verdict(), checked.denial_reason()) {
                (Verdict::Allowed, _) | (_, None) => StatusCode::OK.into_response(),
                (verdict, Some(reason)) => {
                    let body = serde_json::json!({
                        "allowed": false,
                        "decisionId": checked.decision_id(),
                        "reason": reason,
                    });
                    if verdict == Verdict::Limited {
                        too_many(body, checked.retry_after_ms())
                    } else {
                        (StatusCode::FORBIDDEN, Json(body)).into_response()
                    }
                }
            };
            if let Ok(id) = HeaderValue::from_str(checked.decision_id()) {
                response.headers_mut().insert(DECISION_HEADER, id);
            }
            response
        }
        Err(refusal) => error(refusal),
    }
}
