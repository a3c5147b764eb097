//! The transport under hostile or unusual peers: admin services kept off
//! the data plane, the `:authority` socket clients send, stalled
//! handshakes, the connection cap, undecodable requests.

use crate::common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{repo_path, request, Launch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use vigil::proto::{policy_admin_client::PolicyAdminClient, ReloadPoliciesRequest};

fn admin_records(audit_dir: &std::path::Path) -> Vec<serde_json::Value> {
    common::audit_lines(audit_dir)
        .into_iter()
        .map(|(_, line)| serde_json::from_str::<serde_json::Value>(&line).unwrap())
        .filter(|r| r["kind"] == "admin")
        .collect()
}

/// Trusted mode takes any local caller's word, so admin calls are served
/// only on the admin socket, to the configured uids; each outcome is
/// audited with the peer the kernel reports.
#[tokio::test]
async fn admin_services_are_off_the_data_plane_in_trusted_mode() {
    let vigil = Launch::new(repo_path("policies")).with_admin().start();
    let mut on_data = PolicyAdminClient::new(vigil.channel().await);
    let status = on_data
        .reload_policies(ReloadPoliciesRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("--admin-listen"),
        "{}",
        status.message()
    );

    let mut on_admin = PolicyAdminClient::new(vigil.admin_channel().await);
    on_admin
        .reload_policies(ReloadPoliciesRequest {})
        .await
        .unwrap();

    let records = admin_records(&vigil.audit_dir);
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_eq!(records[0]["allowed"], false);
    assert!(records[0]["detail"]["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(records[1]["allowed"], true);
    let peer = records[1]["detail"]["peer"].as_str().unwrap();
    assert!(peer.starts_with("uid ") && peer.contains(" pid "), "{peer}");

    // Another uid is refused even on the admin socket.
    let vigil = Launch::new(repo_path("policies"))
        .with_admin()
        .args(["--admin-uids", "4242424"])
        .start();
    let mut on_admin = PolicyAdminClient::new(vigil.admin_channel().await);
    let status = on_admin
        .reload_policies(ReloadPoliciesRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("not an admin uid"),
        "{}",
        status.message()
    );
}

#[test]
fn a_trusted_admin_listener_must_be_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let policies = repo_path("policies");
    let output = common::vigil_command(
        &[
            "serve",
            "--policies",
            policies.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("must be a unix: socket"), "{stderr}");
}

/// One HTTP/2 frame: length, type, flags, stream, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK header block of literal fields (no indexing, no Huffman), as
/// a client may send them.
fn literal_headers(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend(name.as_bytes());
        block.push(value.len() as u8);
        block.extend(value.as_bytes());
    }
    block
}

/// A health check over the Unix socket with the `:authority` grpcio and
/// grpcurl send there (the socket path, percent-encoded or not): answered
/// SERVING, not reset with PROTOCOL_ERROR.
#[tokio::test]
async fn unix_sockets_accept_the_authority_grpc_clients_send() {
    let vigil = Launch::new(repo_path("policies")).with_unix().start();
    let socket = vigil.unix.clone().unwrap();
    let raw = socket.display().to_string();
    let encoded = raw.trim_start_matches('/').replace('/', "%2F");
    for authority in [raw.as_str(), encoded.as_str(), "localhost"] {
        let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(frame(0x4, 0, 0, &[]));
        let headers = literal_headers(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/grpc.health.v1.Health/Check"),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]);
        out.extend(frame(0x1, 0x4, 1, &headers));
        // An empty HealthCheckRequest: no compression, length 0.
        out.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]));
        stream.write_all(&out).await.unwrap();

        let mut received = Vec::new();
        let answered = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "{authority}: connection closed without an answer");
                received.extend_from_slice(&buf[..n]);
                // Walk the frames received so far.
                let mut at = 0;
                while received.len() >= at + 9 {
                    let len =
                        u32::from_be_bytes([0, received[at], received[at + 1], received[at + 2]])
                            as usize;
                    if received.len() < at + 9 + len {
                        break;
                    }
                    let kind = received[at + 3];
                    let payload = &received[at + 9..at + 9 + len];
                    assert_ne!(kind, 0x3, "{authority}: stream reset (RST_STREAM)");
                    assert_ne!(kind, 0x7, "{authority}: connection refused (GOAWAY)");
                    // DATA holding HealthCheckResponse { status: SERVING }.
                    if kind == 0x0 && payload == [0, 0, 0, 0, 2, 0x08, 0x01] {
                        return;
                    }
                    at += 9 + len;
                }
            }
        })
        .await;
        assert!(answered.is_ok(), "{authority}: no answer in time");
    }
}

/// A connection that never completes the HTTP/2 handshake is closed.
#[tokio::test]
async fn a_stalled_handshake_is_closed() {
    let vigil = Launch::new(repo_path("policies"))
        .args(["--handshake-timeout", "1s"])
        .start();
    let mut stream = tokio::net::TcpStream::connect(vigil.tcp.as_ref().unwrap())
        .await
        .unwrap();
    stream.write_all(b"PRI * HTTP/2.0").await.unwrap();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stalled connection was kept open");
}

/// Keepalive pings find vanished peers, but they must not keep an idle
/// connection open forever: a peer that only answers PINGs is closed at the
/// idle timeout, after vigil has pinged it.
#[tokio::test]
async fn a_connection_that_only_answers_pings_is_closed_when_idle() {
    let vigil = Launch::new(repo_path("policies"))
        .args(["--keepalive-interval", "300ms", "--idle-timeout", "2s"])
        .start();
    let mut stream = tokio::net::TcpStream::connect(vigil.tcp.as_ref().unwrap())
        .await
        .unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    stream
        .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let mut pings = 0;
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let mut header = [0u8; 9];
            if stream.read_exact(&mut header).await.is_err() {
                return;
            }
            let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; length];
            if stream.read_exact(&mut payload).await.is_err() {
                return;
            }
            let (kind, flags) = (header[3], header[4]);
            let reply: Option<Vec<u8>> = match (kind, flags & 1) {
                // SETTINGS: acknowledge.
                (4, 0) => Some(vec![0, 0, 0, 4, 1, 0, 0, 0, 0]),
                // PING: acknowledge with its payload.
                (6, 0) => {
                    pings += 1;
                    let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                    ack.extend_from_slice(&payload);
                    Some(ack)
                }
                _ => None,
            };
            if let Some(reply) = reply {
                if stream.write_all(&reply).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "a connection answering only pings stayed open"
    );
    assert!(pings >= 2, "vigil sent {pings} keepalive ping(s)");
}

/// Past --max-connections vigil stops accepting: a new client waits until
/// a held connection goes, then is served.
#[tokio::test]
async fn connections_are_capped() {
    let vigil = Launch::new(repo_path("policies"))
        .args(["--max-connections", "2"])
        .start();
    let address = vigil.tcp.clone().unwrap();
    // A connection vigil accepted gets its HTTP/2 SETTINGS: reading them
    // is the event that says both permits are taken.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let mut settings = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut settings))
            .await
            .expect("vigil accepted the connection")
            .unwrap();
        assert_eq!(settings[3], 4, "a SETTINGS frame");
        held.push(stream);
    }
    let released = Arc::new(AtomicBool::new(false));
    let call = {
        let released = released.clone();
        let mut client = vigil.client().await;
        tokio::spawn(async move {
            let answer = client
                .authorize(request("alice", "crm.customers", "read"))
                .await;
            (released.load(Ordering::SeqCst), answer)
        })
    };
    // Whether the answer came before or after the release is what is
    // checked, so this pause only gives a server ignoring the cap the time
    // to show it; it cannot fail a correct one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    released.store(true, Ordering::SeqCst);
    drop(held);
    let (after_release, answer) = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert!(after_release, "a third connection was served past the cap");
    let answer = answer.unwrap();
    assert!(answer.into_inner().allowed);
}

/// Raw request bodies, for requests no generated client would send.
#[derive(Default, Clone)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Malformed protobuf and non-UTF-8 strings are the caller's mistake:
/// INVALID_ARGUMENT, not INTERNAL.
#[tokio::test]
async fn undecodable_requests_are_invalid_argument() {
    let vigil = Launch::new(repo_path("policies")).start();
    let mut grpc = tonic::client::Grpc::new(vigil.channel().await);
    for body in [
        vec![0xff, 0xff, 0xff],
        // field 1 (subject), a string of one byte that is not UTF-8
        vec![0x0a, 0x01, 0xff],
    ] {
        grpc.ready().await.unwrap();
        let status = grpc
            .unary::<Vec<u8>, Vec<u8>, _>(
                tonic::Request::new(body.clone()),
                http::uri::PathAndQuery::from_static("/vigil.v1.AccessControl/Authorize"),
                RawCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{body:?}: {}",
            status.message()
        );
        assert!(
            status.message().contains("cannot be decoded"),
            "{}",
            status.message()
        );
    }
}

/// Slow HTTP clients (headers dripped a byte at a time) are cut at the
/// handshake timeout, and however many hold the metrics port, the gRPC
/// data plane keeps its own connection places.
#[tokio::test]
async fn slow_http_clients_starve_no_one() {
    let vigil = Launch::new(repo_path("policies"))
        .args([
            "--max-connections",
            "4",
            "--handshake-timeout",
            "1s",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .start();
    let metrics = vigil.metrics.clone().unwrap();
    // More slow clients than every place there is.
    let mut slow = Vec::new();
    for _ in 0..24 {
        let mut stream = tokio::net::TcpStream::connect(&metrics).await.unwrap();
        // Past the 33 bytes a connection owes to count as started.
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: vigil\r\nX-Slow: aaaaaaaa")
            .await
            .unwrap();
        slow.push(stream);
    }
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        vigil
            .client()
            .await
            .authorize(request("alice", "crm.customers", "read")),
    )
    .await
    .expect("the data plane is served beside slow metrics clients")
    .unwrap();
    assert!(answer.into_inner().allowed);

    // One dripping a byte every 200 ms is closed at the 1 s header
    // deadline, not kept alive by its drip.
    let mut stream = slow.pop().unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        let mut byte = [0u8; 1];
        loop {
            if stream.write_all(b"x").await.is_err() {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    })
    .await;
    // Without a header deadline each byte would renew the 300 s idle one.
    assert!(
        closed.is_ok(),
        "a dripping client was kept past the header deadline"
    );
}
