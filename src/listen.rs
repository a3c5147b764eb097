//! Where vigil listens: `HOST:PORT` or `unix:/path`, parsed from
//! configuration and bound before serving. Binding is separate from
//! serving so a test (or a supervisor) can bind port 0 and learn the port.

use std::{
    fmt,
    net::{SocketAddr, ToSocketAddrs},
    path::PathBuf,
};

use tokio::net::{TcpListener, UnixListener};

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

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {message}")]
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

    /// The address as bound.
    pub fn local_addr(&self) -> ListenAddr {
        match self {
            Listener::Tcp(_, addr) => ListenAddr::Tcp(*addr),
            Listener::Unix(_, path) => ListenAddr::Unix(path.clone()),
        }
    }
}
