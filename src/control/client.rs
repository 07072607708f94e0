//! The control socket's client: one request to the procgate running in an app root.

use super::{socket_path, ControlError};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use std::path::Path;

/// Sends `method path` to the procgate running in `root`; an answer other than 2xx is an error.
pub async fn call(root: &Path, method: Method, path: &str) -> Result<Response<Incoming>, ControlError> {
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
    let request = Request::builder().method(method).uri(path).header("host", "procgate").body(Empty::<Bytes>::new());
    let response = sender.send_request(request.expect("a valid request")).await.map_err(io)?;
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let body = read_all(response).await.unwrap_or_default();
        return Err(ControlError::Refused { status, body });
    }
    Ok(response)
}

/// The whole body as text.
pub async fn read_all(response: Response<Incoming>) -> Result<String, hyper::Error> {
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Prints the body as it arrives; returns when procgate ends it or goes away.
pub async fn print_stream(response: Response<Incoming>) {
    use std::io::Write;
    let mut body = response.into_body();
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            let _ = std::io::stdout().write_all(data);
        }
    }
}
