//! Connection I/O under h2: answers leave in waves, not one syscall each.
//!
//! h2 copies a DATA frame into its write buffer only when the payload is
//! under 256 bytes; a larger one (a Mask answer for one record is ~1.4 KB)
//! is flushed at once, in its own `writev`. Under load a connection's
//! answers arrive in waves (a durable batch settles hundreds of calls at
//! once), so every large answer paid a syscall of its own, and on loopback
//! the receiver's TCP processing with it: 12–17% of a Mask call.
//!
//! [`CoalescedWrites`] keeps what h2 writes in its own buffer and writes it
//! at the start of the connection's next poll, which it schedules itself:
//! everything the connection task sends in one poll, and whatever the
//! handlers that ran in between queued for it, leaves in one `write`. A
//! connection quiet for 50 µs (one stream, light load) writes at once:
//! there is no wave to wait for, only latency to add.
//!
//! The cost is the `AsyncWrite` contract's letter: `poll_flush` answers
//! "done" while bytes still wait for the poll it has already scheduled.
//! h2 relies on flush only to know its own buffer is free. Every path of an
//! h2 connection's poll reaches `poll_read` (open), `poll_shutdown`
//! (closing) or, when the socket pushes back, a `poll_flush` that really
//! drains and returns `Pending` until the socket is writable.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Buffered bytes beyond which a write waits for the socket: h2's own
/// buffer is 16 KiB and a DATA frame at most 16 KiB more, so one wave of a
/// busy connection fits, and h2 still feels the socket's back-pressure.
const MAX_BUFFERED: usize = 64 * 1024;

/// A connection that wrote nothing for this long is not in a wave: its
/// answer goes at once rather than a poll later (one stream's calls are
/// 100+ µs apart; a wave's answers microseconds).
const QUIET: Duration = Duration::from_micros(50);

/// What a quiet connection keeps of its buffer: a busy minute must not pin
/// 64 KiB on each of many idle connections.
const RETAINED_WHEN_QUIET: usize = 16 * 1024;

/// A server connection whose writes are gathered until its next poll.
#[derive(Debug)]
pub struct CoalescedWrites<T> {
    io: T,
    out: Vec<u8>,
    /// How much of `out` the socket has taken.
    sent: usize,
    /// A poll of the connection is scheduled to write `out`.
    wake_scheduled: bool,
    /// The socket refused bytes: its writability will wake the task, and
    /// flushes must really drain until it takes them.
    blocked: bool,
    /// When the socket last took bytes.
    last_drain: Instant,
}

impl<T> CoalescedWrites<T> {
    pub fn new(io: T) -> CoalescedWrites<T> {
        CoalescedWrites {
            io,
            out: Vec::new(),
            sent: 0,
            wake_scheduled: false,
            blocked: false,
            last_drain: Instant::now(),
        }
    }
}

impl<T: AsyncWrite + Unpin> CoalescedWrites<T> {
    /// Writes everything buffered; `Pending` leaves the rest (and the
    /// task registered for the socket's writability).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.sent..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.blocked = true;
                    return Poll::Pending;
                }
            }
        }
        self.out.clear();
        self.sent = 0;
        self.blocked = false;
        self.last_drain = Instant::now();
        Poll::Ready(Ok(()))
    }

    /// Takes `len` bytes from `bufs` into the buffer, making room first.
    fn poll_gather(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
        len: usize,
    ) -> Poll<io::Result<usize>> {
        if self.out.len() + len > MAX_BUFFERED {
            std::task::ready!(self.poll_drain(cx))?;
            if len > MAX_BUFFERED {
                return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
            }
        }
        for buf in bufs {
            self.out.extend_from_slice(buf);
        }
        Poll::Ready(Ok(len))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for CoalescedWrites<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // The start of a connection poll: what the last one wrote goes now.
        let this = &mut *self;
        this.wake_scheduled = false;
        if !this.out.is_empty() {
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CoalescedWrites<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_gather(cx, &[IoSlice::new(buf)], buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.poll_gather(cx, bufs, len)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.out.is_empty() {
            return Pin::new(&mut this.io).poll_flush(cx);
        }
        if this.blocked {
            std::task::ready!(this.poll_drain(cx))?;
            return Pin::new(&mut this.io).poll_flush(cx);
        }
        if !this.wake_scheduled && this.last_drain.elapsed() >= QUIET {
            std::task::ready!(this.poll_drain(cx))?;
            this.out.shrink_to(RETAINED_WHEN_QUIET);
            return Pin::new(&mut this.io).poll_flush(cx);
        }
        if !this.wake_scheduled {
            this.wake_scheduled = true;
            cx.waker().wake_by_ref();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl<T: Connected> Connected for CoalescedWrites<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}
