//! A lean load generator: gRPC unary calls as pre-encoded frames over the
//! `h2` crate, without tonic's client stack (about a third of its CPU per
//! call).
//!
//! On one core the tonic generator tops out near the server's floor: at
//! 1,024 streams it was 94–99% busy while the floor's server was not, so
//! "saturated" figures measured with it measured the generator. This one
//! leaves the server the slower side, as h2load does, so the saturated
//! section compares the server's own capacities.

use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use http::{HeaderMap, Method, Request, Uri};
use tokio::net::{TcpStream, UnixStream};

/// The `:authority` of every call: vigil serves any.
const AUTHORITY: &str = "vigil";

/// One HTTP/2 connection; cloning opens another stream on it.
#[derive(Clone)]
pub struct Connection {
    send: SendRequest<Bytes>,
}

impl Connection {
    pub async fn tcp(address: &str) -> Connection {
        let stream = TcpStream::connect(address).await.expect("connect tcp");
        stream.set_nodelay(true).expect("nodelay");
        Connection::handshake(stream).await
    }

    pub async fn unix(path: &Path) -> Connection {
        Connection::handshake(UnixStream::connect(path).await.expect("connect unix")).await
    }

    async fn handshake<T>(io: T) -> Connection
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 24)
            .handshake(io)
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Connection { send }
    }

    /// One unary call: `Ok` when the server answered grpc-status 0.
    pub async fn unary(&mut self, path: &str, frame: Bytes) -> Result<(), String> {
        let uri = Uri::builder()
            .scheme("http")
            .authority(AUTHORITY)
            .path_and_query(path)
            .build()
            .map_err(|e| e.to_string())?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| e.to_string())?;
        let mut send = self.send.clone().ready().await.map_err(|e| e.to_string())?;
        let (response, mut stream) = send
            .send_request(request, false)
            .map_err(|e| e.to_string())?;
        stream.send_data(frame, true).map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        // A trailers-only answer (an error) carries its status in the headers.
        let in_headers = grpc_status(response.headers());
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body.trailers().await.map_err(|e| e.to_string())?;
        match trailers.as_ref().map(grpc_status).unwrap_or(in_headers) {
            Some(0) => Ok(()),
            status => Err(format!("grpc-status {status:?}")),
        }
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// A message in gRPC's length-prefixed framing (uncompressed).
pub fn frame(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).expect("message under 4 GiB"));
    message
        .encode(&mut buf)
        .expect("buffer sized for the message");
    buf.freeze()
}
