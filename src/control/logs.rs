//! `GET /logs`: the kept lines, oldest first (the log files' older ones, then the in-memory
//! history), filtered by type or instance, as text or JSON lines; with `follow`, then each new
//! line as it comes, until the client goes or procgate stops. A follower too slow for the feed
//! is told how many lines it missed. Reading the files runs off the control thread.

use super::body::{Body, LineStream, LINES_BUFFER};
use super::LogQuery;
use crate::logs::files;
use crate::logs::history::History;
use crate::logs::record::Record;
use bytes::Bytes;
use chrono::{DurationRound, Local};
use http_body_util::BodyExt;
use hyper::Response;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};

/// Where the lines are kept.
#[derive(Clone)]
pub struct LogSource {
    pub history: Arc<History>,
    /// `--log-dir`, when set.
    pub dir: Option<PathBuf>,
}

pub async fn answer(query: LogQuery, source: &LogSource, stopping: watch::Receiver<bool>) -> Response<Body> {
    let since =
        query.since.map(|age| Local::now() - chrono::TimeDelta::from_std(age).unwrap_or(chrono::TimeDelta::MAX));
    let from = query.from.as_deref().and_then(|from| chrono::DateTime::parse_from_rfc3339(from).ok());
    let since = since.max(from.map(|from| from.with_timezone(&Local)));
    let (recent, live) = source.history.read(since, query.follow);
    // The files hold the kept lines too, to the millisecond: they give what came before.
    let first_kept = recent.first().map(|r| r.time).or(source.history.oldest());
    let before = first_kept.map(|time| time.duration_trunc(chrono::TimeDelta::milliseconds(1)).unwrap_or(time));
    let older = match (&source.dir, before) {
        (Some(dir), before) => {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || files::read(&dir, since, before)).await.unwrap_or_default()
        }
        (None, _) => Vec::new(),
    };
    let (lines, body) = mpsc::channel(LINES_BUFFER);
    tokio::task::spawn_local(async move {
        for record in older.iter().chain(&recent) {
            if !send(&lines, record, &query).await {
                return;
            }
        }
        if let Some(live) = live {
            follow(live, &lines, &query, stopping).await;
        }
    });
    Response::new(LineStream(body).boxed_unsync())
}

/// Sends each new line until the client goes, procgate stops, or the feed ends.
async fn follow(
    mut live: broadcast::Receiver<Record>,
    lines: &mpsc::Sender<Bytes>,
    query: &LogQuery,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        let record = tokio::select! {
            record = live.recv() => record,
            _ = stopping.wait_for(|stopping| *stopping) => return,
            () = lines.closed() => return,
        };
        let sent = match record {
            Ok(record) => send(lines, &record, query).await,
            Err(RecvError::Lagged(missed)) => {
                let note = Record::system(format!("logs: this follower fell behind; {missed} lines skipped"));
                deliver(lines, &note, query.json).await
            }
            Err(RecvError::Closed) => false,
        };
        if !sent {
            return;
        }
    }
}

/// Sends `record` if the query takes it; false once the client has gone.
async fn send(lines: &mpsc::Sender<Bytes>, record: &Record, query: &LogQuery) -> bool {
    !record.matches(&query.only) || deliver(lines, record, query.json).await
}

async fn deliver(lines: &mpsc::Sender<Bytes>, record: &Record, json: bool) -> bool {
    let line = match json {
        true => record.json() + "\n",
        false => record.file_line(),
    };
    lines.send(Bytes::from(line)).await.is_ok()
}
