//! Where the core's refusals become gRPC statuses: `From<AppError> for
//! Status` renders the core's one refusal table (`app::respond`), and the
//! tonic plumbing that runs before any handler (an undecodable or
//! oversize request) is rewritten here to the same contract.

use tonic::Status;

use crate::app::{AppError, Response};

impl From<AppError> for Status {
    fn from(error: AppError) -> Status {
        let Response {
            code,
            message,
            retry_after_ms,
            ..
        } = Response::from(error);
        let mut status = Status::new(tonic::Code::from_i32(code as i32), message);
        if retry_after_ms > 0 {
            status
                .metadata_mut()
                .insert(RETRY_AFTER_MS, retry_after_ms.into());
        }
        status
    }
}

/// Metadata of a RESOURCE_EXHAUSTED from a limit: milliseconds until it
/// allows again (HTTP answers carry it as `Retry-After`).
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// tonic reports an oversize request as OUT_OF_RANGE; vigil's contract is
/// RESOURCE_EXHAUSTED with the limit named. tonic decides this status while
/// decoding, before any handler runs, so it is rewritten in the response
/// headers rather than built here.
pub fn oversize_as_resource_exhausted(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers_mut();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"11");
    let too_large = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| {
            m.contains("message%20length%20too%20large") || m.contains("message length too large")
        });
    if out_of_range && too_large {
        let message = headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let decoded = percent_decode(message);
        let friendly = format!(
            "request too large ({decoded}); raise max_message_bytes or send smaller requests"
        );
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        if let Ok(value) = http::HeaderValue::from_str(&percent_encode(&friendly)) {
            headers.insert("grpc-message", value);
        }
    }
    response
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The answer to a method a hand-written service does not have, as
/// tonic's generated servers give it.
pub fn unimplemented_method() -> http::Response<tonic::body::Body> {
    Status::unimplemented("no such method").into_http()
}
