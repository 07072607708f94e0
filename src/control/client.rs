//! The control socket's client: one request to the procgate running in an app root.

use super::{socket_path, ControlError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use std::path::Path;

/// Sends `method path` (with a JSON `body`) to the procgate running in `root`; an answer other
/// than 2xx is an error.
pub async fn call(
    root: &Path,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<Response<Incoming>, ControlError> {
    let socket = socket_path(root);
    let shown = socket.display().to_string();
    let stream = tokio::net::UnixStream::connect(&socket).await.map_err(|err| ControlError::NotRunning {
        root: root.display().to_string(),
        socket: shown.clone(),
        reason: err.to_string(),
    })?;
    let io = |err: hyper::Error| ControlError::Io { socket: shown.clone(), reason: err.to_string() };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(io)?;
    tokio::spawn(connection);
    let body = Full::new(Bytes::from(body.unwrap_or_default()));
    let request = Request::builder().method(method).uri(path).header("host", "procgate").body(body);
    let response = sender.send_request(request.expect("a valid request")).await.map_err(io)?;
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let body = read_all(response).await.unwrap_or_default();
        let error =
            serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["error"].as_str().map(str::to_string));
        return Err(ControlError::Refused { status, body: error.unwrap_or(body) });
    }
    Ok(response)
}

/// Runs a client's requests to completion on a small runtime of its own.
pub fn block_on<T>(requests: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(requests)
}

/// The whole body as text.
pub async fn read_all(response: Response<Incoming>) -> Result<String, hyper::Error> {
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Prints the body as it arrives; returns its last line when procgate ends it or goes away.
pub async fn print_stream(response: Response<Incoming>) -> String {
    each_line(response, |line| crate::commands::out!("{line}\n")).await
}

/// Hands each line of the body to `take` as it arrives; returns the last one.
pub async fn each_line(response: Response<Incoming>, mut take: impl FnMut(&str)) -> String {
    let mut body = response.into_body();
    let (mut pending, mut last) = (Vec::new(), String::new());
    while let Some(Ok(frame)) = body.frame().await {
        let Some(data) = frame.data_ref() else { continue };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            last = String::from_utf8_lossy(&line[..end]).into_owned();
            take(&last);
        }
    }
    if !pending.is_empty() {
        last = String::from_utf8_lossy(&pending).into_owned();
        take(&last);
    }
    last
}
