//! The bodies of the control socket's answers, and the line streams of `restart`, `deploy`,
//! `stop` and `logs`: lines sent on a bounded channel, so a client that does not read holds
//! back its sender rather than memory.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Frame;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Lines a streamed answer may hold for a client that does not read; past it, the sender waits.
pub const LINES_BUFFER: usize = 256;

/// A response body made of the lines sent on a channel; it ends when the senders are gone.
pub struct LineStream(pub mpsc::Receiver<Bytes>);

impl hyper::body::Body for LineStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|line| line.map(|bytes| Ok(Frame::data(bytes))))
    }
}
