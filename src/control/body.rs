//! The bodies of the control socket's requests and answers (JSON both ways), and the line
//! streams of `restart`, `deploy`, `stop` and `logs`: lines sent on a bounded channel, so a
//! client that does not read holds back its sender rather than memory.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
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

pub(super) async fn read_json<T: serde::de::DeserializeOwned>(request: Request<Incoming>) -> Result<T, String> {
    let body = request.into_body().collect().await.map_err(|err| err.to_string())?.to_bytes();
    let body = if body.is_empty() { Bytes::from_static(b"{}") } else { body };
    serde_json::from_slice(&body).map_err(|err| format!("bad request body: {err}"))
}

pub(super) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

pub(super) fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}
