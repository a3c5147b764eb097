//! Where vigil listens: `HOST:PORT` or `unix:/path`, parsed from
//! configuration and bound before serving. Binding is separate from
//! serving so a test (or a supervisor) can bind port 0 and learn the port.

use std::{
    fmt,
    future::Future,
    io,
    net::{SocketAddr, ToSocketAddrs},
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
    time::Duration,
};

use tokio::task::JoinSet;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::PollSemaphore;
use tonic::transport::server::Connected;

use crate::tls::{CertificateNames, ServerTls, Surface};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    pub fn parse(s: &str) -> Result<ListenAddr, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(format!("listen address {s:?} has an empty socket path"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        let mut addrs = s.to_socket_addrs().map_err(|e| {
            format!("listen address {s:?} is neither HOST:PORT nor unix:/path ({e})")
        })?;
        addrs
            .next()
            .map(ListenAddr::Tcp)
            .ok_or_else(|| format!("listen address {s:?} resolves to nothing"))
    }

    /// Local transports are the only ones where trusting the caller's
    /// word for its subject is acceptable by default.
    pub fn is_local(&self) -> bool {
        match self {
            ListenAddr::Tcp(addr) => addr.ip().is_loopback(),
            ListenAddr::Unix(_) => true,
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// What a listener serves: the data plane (Authorize, Mask, Unmask,
/// health, reflection) or the admin plane (also PolicyAdmin and Audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    Data,
    Admin,
    /// Prometheus metrics and HTTP probes (plain HTTP/1.1, no gRPC).
    Metrics,
    /// The HTTP/JSON API (plain HTTP/1.1).
    Http,
}

impl Plane {
    pub fn name(self) -> &'static str {
        match self {
            Plane::Data => "data",
            Plane::Admin => "admin",
            Plane::Metrics => "metrics",
            Plane::Http => "http",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (--listen, --admin-listen, --metrics-listen, --http-listen): {message}")]
pub struct BindError {
    pub addr: String,
    pub message: String,
}

/// A bound listener and the address it really has (the port a `:0`
/// request was given).
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener, SocketAddr),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `addr`. A Unix socket file nobody answers on is left over
    /// from a crash and is replaced; one somebody answers on is refused.
    pub async fn bind(addr: &ListenAddr) -> Result<Listener, BindError> {
        let fail = |message: String| BindError {
            addr: addr.to_string(),
            message,
        };
        match addr {
            ListenAddr::Tcp(socket) => {
                let listener = TcpListener::bind(socket)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let local = listener.local_addr().map_err(|e| fail(e.to_string()))?;
                Ok(Listener::Tcp(listener, local))
            }
            ListenAddr::Unix(path) => {
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    use std::os::unix::fs::FileTypeExt;
                    // Only a socket nobody answers on (left by a crash) is
                    // replaced; any other file is the operator's.
                    if !meta.file_type().is_socket() {
                        return Err(fail(
                            "a file that is not a socket is in the way; vigil removes only stale sockets, so move it or choose another path".into(),
                        ));
                    }
                    if tokio::net::UnixStream::connect(path).await.is_ok() {
                        return Err(fail("another process is serving on this socket".into()));
                    }
                    std::fs::remove_file(path)
                        .map_err(|e| fail(format!("cannot remove the stale socket file: {e}")))?;
                }
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
                }
                let listener = UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
                Ok(Listener::Unix(listener, path.clone()))
            }
        }
    }

    /// Binds every address, in order.
    pub async fn bind_all(addrs: &[ListenAddr]) -> Result<Vec<Listener>, BindError> {
        let mut bound = Vec::with_capacity(addrs.len());
        for addr in addrs {
            bound.push(Listener::bind(addr).await?);
        }
        Ok(bound)
    }

    /// Binds the data-plane addresses, then the admin ones.
    pub async fn bind_planes(
        data: &[ListenAddr],
        admin: &[ListenAddr],
        metrics: &[ListenAddr],
        http: &[ListenAddr],
    ) -> Result<Vec<(Plane, Listener)>, BindError> {
        let mut bound = Vec::with_capacity(data.len() + admin.len() + metrics.len() + http.len());
        for (plane, addrs) in [
            (Plane::Data, data),
            (Plane::Admin, admin),
            (Plane::Metrics, metrics),
            (Plane::Http, http),
        ] {
            for addr in addrs {
                bound.push((plane, Listener::bind(addr).await?));
            }
        }
        Ok(bound)
    }

    /// The address as bound.
    pub fn local_addr(&self) -> ListenAddr {
        match self {
            Listener::Tcp(_, addr) => ListenAddr::Tcp(*addr),
            Listener::Unix(_, path) => ListenAddr::Unix(path.clone()),
        }
    }
}

/// How many connections vigil keeps, and how long one may stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections across every listener; past it vigil stops
    /// accepting until one closes (new clients wait in the backlog).
    pub max_connections: usize,
    /// HTTP/2 streams one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// A connection must complete the HTTP/2 preface within this.
    pub handshake_timeout: Duration,
    /// A connection the peer sends nothing on for this long is closed.
    pub idle_timeout: Duration,
    /// A quiet connection is PINGed after this; zero turns pings off. The
    /// idle timeout alone cannot tell a slow peer from a vanished one
    /// while a stream is open.
    pub keepalive_interval: Duration,
}

impl ConnectionLimits {
    /// How long an HTTP/2 PING may go unanswered before the connection is
    /// closed.
    pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

    /// The PING interval, if pings are on.
    pub fn keepalive(&self) -> Option<Duration> {
        (!self.keepalive_interval.is_zero()).then_some(self.keepalive_interval)
    }

    /// Defaults sized to the process: leave descriptors for the audit log,
    /// policy files and the keyring below the soft `RLIMIT_NOFILE`
    /// (1024 under systemd by default).
    pub fn defaults() -> ConnectionLimits {
        let open_files = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| {
                limits
                    .lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3)?.parse::<usize>().ok())
            })
            .unwrap_or(1024);
        ConnectionLimits {
            max_connections: open_files.saturating_sub(128).clamp(64, 10_000),
            // hyper's own default, which tonic replaces with none.
            max_concurrent_streams: 200,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(60),
        }
    }
}

/// A listener's accepted connections, within [`ConnectionLimits`]: a permit
/// per connection, and on descriptor exhaustion (EMFILE, ENFILE) a growing
/// pause instead of a busy loop. On a TLS listener each handshake runs in
/// its own task under the handshake timeout, so a slow or silent client
/// holds up nobody else's.
pub struct Incoming {
    listener: Listener,
    protocol: Protocol,
    permits: PollSemaphore,
    permit: Option<OwnedSemaphorePermit>,
    backoff: Option<Pin<Box<Sleep>>>,
    pause: Duration,
    limits: ConnectionLimits,
    tls: Option<(Arc<ServerTls>, Surface)>,
    handshakes: JoinSet<Option<Admitted<Box<dyn ConnectionInfo>>>>,
}

impl Listener {
    /// Accepts connections under `limits`, sharing `permits` (one per open
    /// connection) with the other listeners. With `tls`, TCP connections
    /// are TLS (Unix sockets never are: the kernel already vouches for
    /// the peer).
    pub fn incoming(
        self,
        protocol: Protocol,
        permits: Arc<Semaphore>,
        limits: ConnectionLimits,
        tls: Option<(Arc<ServerTls>, Surface)>,
    ) -> Incoming {
        Incoming {
            protocol,
            tls: tls.filter(|_| matches!(self, Listener::Tcp(..))),
            listener: self,
            permits: PollSemaphore::new(permits),
            permit: None,
            backoff: None,
            pause: Duration::ZERO,
            limits,
            handshakes: JoinSet::new(),
        }
    }
}

/// What a listener speaks, for the deadlines its connections keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC: the HTTP/2 preface within the handshake timeout.
    Http2,
    /// HTTP/1.1 (the JSON API, metrics, probes): besides, each request's
    /// headers within the handshake timeout of their first byte, so a
    /// client dripping a byte at a time cannot hold a connection.
    Http1,
}

/// Completes a TLS handshake within the handshake timeout. The permit is
/// held throughout, so handshakes in flight count as connections.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    limits: ConnectionLimits,
    protocol: Protocol,
) -> Option<Admitted<Box<dyn ConnectionInfo>>> {
    let peer = stream.peer_addr().ok();
    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(Admitted::new(Box::new(stream), permit, limits, protocol)),
        Ok(Err(e)) => {
            tracing::debug!(peer = ?peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(peer = ?peer, "TLS handshake not completed in time");
            None
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Admitted<Box<dyn ConnectionInfo>>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            while let Poll::Ready(Some(done)) = this.handshakes.poll_join_next(cx) {
                if let Ok(Some(connection)) = done {
                    return Poll::Ready(Some(Ok(connection)));
                }
            }
            if let Some(backoff) = this.backoff.as_mut() {
                ready!(backoff.as_mut().poll(cx));
                this.backoff = None;
            }
            if this.permit.is_none() {
                match ready!(this.permits.poll_acquire(cx)) {
                    Some(permit) => this.permit = Some(permit),
                    None => return Poll::Ready(None),
                }
            }
            let accepted: io::Result<Box<dyn ConnectionInfo>> = match &this.listener {
                Listener::Tcp(listener, _) => match ready!(listener.poll_accept(cx)) {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        if let Some((tls, surface)) = &this.tls {
                            let acceptor = TlsAcceptor::from(tls.config(*surface));
                            let permit = this.permit.take().expect("acquired above");
                            this.pause = Duration::ZERO;
                            this.handshakes.spawn(handshake(
                                acceptor,
                                stream,
                                permit,
                                this.limits,
                                this.protocol,
                            ));
                            continue;
                        }
                        Ok(Box::new(stream))
                    }
                    Err(e) => Err(e),
                },
                Listener::Unix(listener, _) => {
                    ready!(listener.poll_accept(cx)).map(|(stream, _)| Box::new(stream) as _)
                }
            };
            match accepted {
                Ok(io) => {
                    this.pause = Duration::ZERO;
                    let permit = this.permit.take().expect("acquired above");
                    return Poll::Ready(Some(Ok(Admitted::new(
                        io,
                        permit,
                        this.limits,
                        this.protocol,
                    ))));
                }
                Err(e) if out_of_descriptors(&e) => {
                    this.pause =
                        (this.pause * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    tracing::warn!(error = %e, pause = ?this.pause, "out of file descriptors: not accepting for a moment (raise RLIMIT_NOFILE or lower --max-connections)");
                    this.backoff = Some(Box::pin(tokio::time::sleep(this.pause)));
                }
                // A connection that failed before it was accepted (reset,
                // aborted) is the peer's problem, not the listener's.
                Err(e) => tracing::debug!(error = %e, "accept failed"),
            }
        }
    }
}

fn out_of_descriptors(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// A stream, and what tonic may learn of its peer.
pub trait ConnectionInfo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn peer(&self) -> Peer;

    /// The names of the client certificate the TLS handshake verified.
    fn client_certificate(&self) -> Option<CertificateNames> {
        None
    }
}

impl ConnectionInfo for TlsStream<TcpStream> {
    fn peer(&self) -> Peer {
        self.get_ref().0.peer()
    }

    fn client_certificate(&self) -> Option<CertificateNames> {
        let leaf = self.get_ref().1.peer_certificates()?.first()?;
        CertificateNames::from_der(leaf)
    }
}

/// What a handler learns of the connection a call came on: the peer as
/// the kernel says, and the verified client certificate's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub peer: Peer,
    pub client_certificate: Option<Arc<CertificateNames>>,
}

impl ConnectionInfo for TcpStream {
    fn peer(&self) -> Peer {
        Peer::Tcp(self.peer_addr().ok())
    }
}

impl ConnectionInfo for UnixStream {
    fn peer(&self) -> Peer {
        Peer::Unix(self.peer_cred().ok().map(|cred| PeerCred {
            uid: cred.uid(),
            pid: cred.pid(),
        }))
    }
}

/// Who is on the other end of a connection, as the kernel says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(Option<SocketAddr>),
    Unix(Option<PeerCred>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub pid: Option<i32>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(Some(addr)) => write!(f, "{addr}"),
            Peer::Tcp(None) => f.write_str("tcp peer"),
            Peer::Unix(Some(PeerCred {
                uid,
                pid: Some(pid),
            })) => write!(f, "uid {uid} pid {pid}"),
            Peer::Unix(Some(PeerCred { uid, pid: None })) => write!(f, "uid {uid}"),
            Peer::Unix(None) => f.write_str("unix peer"),
        }
    }
}

/// An accepted connection: holds its permit, and fails its reads once the
/// peer has stalled the handshake or gone idle too long.
pub struct Admitted<T> {
    io: T,
    connection: Connection,
    _permit: OwnedSemaphorePermit,
    /// Bytes the peer still owes of the HTTP/2 preface and first frame
    /// header before the handshake counts as done.
    handshake_owed: usize,
    deadline: Pin<Box<Sleep>>,
    limits: ConnectionLimits,
    /// HTTP/1.1 only: where the current request's header block stands.
    headers: Option<HeaderRead>,
}

/// An HTTP/1.1 request's header block as it arrives: a request starts
/// with its first byte (after an answer was written, or on a new
/// connection) and its headers end at the first blank line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderRead {
    /// Between requests: the next byte starts one.
    Awaiting,
    /// Inside a header block; the last bytes seen, to find `\r\n\r\n`
    /// across reads.
    Reading { tail: u32 },
    /// Headers in, the body or the answer under way.
    Done,
}

impl HeaderRead {
    /// Reads `bytes`; returns whether a header block started in them.
    fn read(&mut self, bytes: &[u8]) -> bool {
        let mut started = false;
        for &byte in bytes {
            match self {
                HeaderRead::Done => return started,
                HeaderRead::Awaiting => {
                    started = true;
                    *self = HeaderRead::Reading { tail: byte as u32 };
                }
                HeaderRead::Reading { tail } => {
                    *tail = (*tail << 8) | byte as u32;
                    if *tail == u32::from_be_bytes(*b"\r\n\r\n") {
                        *self = HeaderRead::Done;
                    }
                }
            }
        }
        started
    }
}

/// The client preface (24 bytes) and its SETTINGS frame header (9).
const HANDSHAKE_BYTES: usize = 24 + 9;

/// Whether `bytes` are whole HTTP/2 PING frames and nothing else (a PING is
/// a 9-byte header of length 8, type 6, stream 0, then 8 bytes).
fn only_pings(bytes: &[u8]) -> bool {
    const PING_FRAME: usize = 9 + 8;
    !bytes.is_empty()
        && bytes.len().is_multiple_of(PING_FRAME)
        && bytes
            .chunks(PING_FRAME)
            .all(|frame| frame[..4] == [0, 0, 8, 6] && frame[5..9] == [0, 0, 0, 0])
}

impl Admitted<Box<dyn ConnectionInfo>> {
    fn new(
        io: Box<dyn ConnectionInfo>,
        permit: OwnedSemaphorePermit,
        limits: ConnectionLimits,
        protocol: Protocol,
    ) -> Self {
        Admitted {
            connection: Connection {
                peer: io.peer(),
                client_certificate: io.client_certificate().map(Arc::new),
            },
            io,
            _permit: permit,
            handshake_owed: HANDSHAKE_BYTES,
            deadline: Box::pin(tokio::time::sleep(limits.handshake_timeout)),
            limits,
            headers: (protocol == Protocol::Http1).then_some(HeaderRead::Awaiting),
        }
    }
}

impl<T> Admitted<T> {
    pub fn peer(&self) -> Peer {
        self.connection.peer
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Admitted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                let read = buf.filled().len() - before;
                // Keepalive PINGs (and their ACKs) prove the peer is there,
                // not that it uses the connection: they must not hold an
                // idle one open past the idle timeout.
                let activity = this.handshake_owed > 0 || !only_pings(&buf.filled()[before..]);
                if let Some(headers) = this.headers.as_mut() {
                    if headers.read(&buf.filled()[before..]) {
                        // A request's headers have the handshake timeout
                        // from their first byte, however they trickle in.
                        this.deadline
                            .as_mut()
                            .reset(tokio::time::Instant::now() + this.limits.handshake_timeout);
                    }
                    if matches!(headers, HeaderRead::Reading { .. }) {
                        // Still inside a header block: no read extends it.
                        return Poll::Ready(result);
                    }
                }
                if read > 0 && activity {
                    this.handshake_owed = this.handshake_owed.saturating_sub(read);
                    let wait = if this.handshake_owed > 0 {
                        this.limits.handshake_timeout
                    } else {
                        this.limits.idle_timeout
                    };
                    // Re-armed only once the current deadline is far off by
                    // a second: a busy connection does not pay a timer
                    // update per read.
                    let next = tokio::time::Instant::now() + wait;
                    if next > this.deadline.deadline() + Duration::from_secs(1) {
                        this.deadline.as_mut().reset(next);
                    }
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    let what = if matches!(this.headers, Some(HeaderRead::Reading { .. })) {
                        "did not send its request headers"
                    } else if this.handshake_owed > 0 {
                        "did not complete the HTTP/2 handshake"
                    } else {
                        "was idle"
                    };
                    tracing::debug!(peer = %this.connection.peer, "closing a connection that {what} in time");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connection {what} in time"),
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Admitted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // An answer going out: the next bytes read start another request.
        if let Some(headers) = self.headers.as_mut() {
            *headers = HeaderRead::Awaiting;
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(headers) = self.headers.as_mut() {
            *headers = HeaderRead::Awaiting;
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<T> Connected for Admitted<T> {
    type ConnectInfo = Connection;

    fn connect_info(&self) -> Connection {
        self.connection.clone()
    }
}

/// The HTTP listeners (axum) accept through the same limits and TLS.
impl axum::serve::Listener for Incoming {
    type Io = Admitted<Box<dyn ConnectionInfo>>;
    type Addr = Connection;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.next().await {
                Some(Ok(io)) => {
                    let connection = io.connection().clone();
                    return (io, connection);
                }
                Some(Err(e)) => tracing::debug!(error = %e, "accept failed"),
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Connection> {
        let peer = match &self.listener {
            Listener::Tcp(_, addr) => Peer::Tcp(Some(*addr)),
            Listener::Unix(..) => Peer::Unix(None),
        };
        Ok(Connection {
            peer,
            client_certificate: None,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Incoming>>
    for Connection
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Incoming>) -> Connection {
        stream.remote_addr().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::only_pings;

    #[test]
    fn pings_and_their_acks_are_not_activity() {
        let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let ack = [0, 0, 8, 6, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        assert!(only_pings(&ping));
        assert!(only_pings(&[ack, ping].concat()));
        // A HEADERS frame, a ping with a cut tail, a ping on a stream.
        assert!(!only_pings(&[
            0, 0, 8, 1, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0
        ]));
        assert!(!only_pings(&ping[..16]));
        assert!(!only_pings(&[
            0, 0, 8, 6, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8
        ]));
        assert!(!only_pings(&[]));
    }
}
