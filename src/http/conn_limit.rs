//! A cap on the connections the server holds at once (`server.max_connections`).
//!
//! hyper and axum-server bound time (header and request timeouts) but not the number of open
//! connections, so a client that opens sockets and never finishes them would otherwise use up
//! file descriptors and memory. Past the cap a new connection is closed at accept, before TLS or
//! HTTP, which costs the broker almost nothing; the connections already being served go on.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Wraps an acceptor so that at most `max` accepted connections are open at once.
#[derive(Clone)]
pub struct ConnectionLimit<A> {
    inner: A,
    slots: Arc<Semaphore>,
    on_refused: Arc<dyn Fn() + Send + Sync>,
}

impl<A> ConnectionLimit<A> {
    /// A limit of `max` connections over `inner`; `on_refused` runs for each connection closed.
    pub fn new(inner: A, max: usize, on_refused: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(max)),
            on_refused: Arc::new(on_refused),
        }
    }
}

impl<A, I, S> Accept<I, S> for ConnectionLimit<A>
where
    A: Accept<I, S> + Clone + Send + Sync + 'static,
    A::Future: Send,
    I: Send + 'static,
    S: Send + 'static,
{
    type Stream = Limited<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let permit = self.slots.clone().try_acquire_owned();
        let inner = self.inner.clone();
        let on_refused = self.on_refused.clone();
        Box::pin(async move {
            let Ok(permit) = permit else {
                on_refused();
                // Dropping the stream closes the socket.
                return Err(io::Error::other("connection limit reached"));
            };
            let (stream, service) = inner.accept(stream, service).await?;
            Ok((
                Limited {
                    inner: stream,
                    _permit: permit,
                },
                service,
            ))
        })
    }
}

/// A connection that gives its slot back when it closes.
pub struct Limited<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Limited<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Limited<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
