//! Requests to one peer's HTTP API: upload a file, ask it to leave, make it download.

use std::path::Path;

use futures::StreamExt;

use crate::error::{Error, Result};
use crate::net::Net;
use crate::share::Digest;
use crate::wire::download::{self, DownloadRequest, Downloaded, Event};
use crate::wire::upload::Uploaded;

/// The error for an answer that no p2pshare peer gives: the address is something else (the
/// tracker's port, another web server), which is as good as no peer there.
fn not_a_peer(url: &str, what: impl std::fmt::Display) -> Error {
    Error::Unreachable(format!(
        "{url} does not answer as a p2pshare peer ({what}); check the peer address"
    ))
}

/// Whether a response says it carries `mime`.
fn has_type(resp: &reqwest::Response, mime: &str) -> bool {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(mime))
}

fn is_json(resp: &reqwest::Response) -> bool {
    has_type(resp, "application/json")
}

/// A peer's refusal (its JSON `{"error": ...}`), or `not_a_peer` when the answer has another
/// shape.
async fn refusal(url: &str, resp: reqwest::Response) -> Error {
    let status = resp.status();
    if !is_json(&resp) {
        return not_a_peer(url, format!("{status} without a JSON body"));
    }
    match resp.json::<serde_json::Value>().await {
        Ok(body) => match body["error"].as_str() {
            // 507: a download refused by the peer's bounds (its own exit code).
            Some(msg) if status == reqwest::StatusCode::INSUFFICIENT_STORAGE => {
                Error::NoRoom(format!("{url} answered {status}: {msg}"))
            }
            Some(msg) => Error::Refused(format!("{url} answered {status}: {msg}")),
            None => not_a_peer(url, format!("{status} without an error message")),
        },
        Err(_) => not_a_peer(url, format!("{status} with a body that is not JSON")),
    }
}

/// A failed request: for one that never reached a peer, the address, the innermost cause
/// (the one a person can act on: "Connection refused", a TLS certificate refused) and a hint,
/// once each; else the whole chain.
fn send_error(url: &str, e: &reqwest::Error) -> Error {
    let at = e
        .url()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_else(|| url.to_owned());
    if e.is_connect() || e.is_timeout() {
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let cause = if e.is_timeout() && !e.is_connect() {
            "no answer in time".to_owned()
        } else {
            cause.to_string()
        };
        return Error::Unreachable(format!(
            "cannot reach a peer at {at} ({cause}); is the peer running, and is that its address?"
        ));
    }
    Error::Unreachable(format!("{url}: {}", p2p_common::tls::error_chain(e)))
}

/// Uploads `file` to the peer at `addr` as multipart field `file`, under `name` (else its own
/// file name), and checks that the answer is a peer's upload answer for that file.
pub async fn upload(net: &Net, addr: &str, file: &Path, name: Option<&str>) -> Result<Uploaded> {
    let name = match name {
        Some(n) => n.to_owned(),
        None => file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Refused(format!("{} has no usable file name", file.display())))?
            .to_owned(),
    };
    crate::store::check_name(&name).map_err(|e| Error::Refused(format!("bad file name: {e}")))?;
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| Error::Refused(format!("cannot read {}: {e}", file.display())))?;
    let len = f
        .metadata()
        .await
        .map_err(|e| Error::Other(e.into()))?
        .len();
    let body =
        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024));
    let part = reqwest::multipart::Part::stream_with_length(body, len).file_name(name.clone());
    let form = reqwest::multipart::Form::new().part("file", part);
    let url = net.url(addr, "/upload");
    let resp = net
        .http
        .post(&url)
        .multipart(form)
        .send()
        .await
        .map_err(|e| send_error(&url, &e))?;
    let status = resp.status();
    if !matches!(
        status,
        reqwest::StatusCode::OK | reqwest::StatusCode::CREATED
    ) {
        return Err(refusal(&url, resp).await);
    }
    if !is_json(&resp) {
        return Err(not_a_peer(&url, format!("{status} without a JSON body")));
    }
    let answer: Uploaded = resp
        .json()
        .await
        .map_err(|e| not_a_peer(&url, format!("{status} with an unexpected body: {e}")))?;
    answer
        .check(&name, len)
        .map_err(|what| not_a_peer(&url, format!("{status} for {what}")))?;
    Ok(answer)
}

/// Asks the peer at `addr` to leave; only its `202 Accepted` counts as yes.
pub async fn request_leave(net: &Net, addr: &str) -> Result<()> {
    let url = net.url(addr, "/leave");
    let resp = net
        .http
        .post(&url)
        .send()
        .await
        .map_err(|e| send_error(&url, &e))?;
    match resp.status() {
        reqwest::StatusCode::ACCEPTED => Ok(()),
        s if s.is_success() => Err(not_a_peer(&url, format!("{s} instead of 202 Accepted"))),
        _ => Err(refusal(&url, resp).await),
    }
}

/// Makes the peer at `addr` download `name` into its share (`POST /downloads`), handing each
/// event it streams to `on_event`. The final line decides: `done` is the answer, `error` the
/// error of its kind, and a stream that ends without either is "unreachable".
pub(crate) async fn download_via(
    net: &Net,
    addr: &str,
    name: &str,
    sha256: Option<&Digest>,
    mut on_event: impl FnMut(&Event),
) -> Result<Downloaded> {
    let url = net.url(addr, "/downloads");
    let resp = net
        .http
        .post(&url)
        .json(&DownloadRequest {
            name: name.to_owned(),
            sha256: sha256.copied(),
        })
        .send()
        .await
        .map_err(|e| send_error(&url, &e))?;
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        return Err(refusal(&url, resp).await);
    }
    if !has_type(&resp, download::CONTENT_TYPE) {
        return Err(not_a_peer(&url, format!("{status} without an NDJSON body")));
    }
    let mut body = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            let event = match Event::parse_line(line) {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(e) => {
                    return Err(not_a_peer(
                        &url,
                        format!("a line that is not a download event ({e}): {}", lossy(line)),
                    ));
                }
            };
            on_event(&event);
            match event {
                Event::Done {
                    name,
                    sha256,
                    size,
                    status,
                } => {
                    return Ok(Downloaded {
                        name,
                        sha256,
                        size,
                        status,
                    });
                }
                Event::Error { kind, message } => {
                    return Err(Error::from_kind(&kind, format!("{addr}: {message}")));
                }
                _ => {}
            }
        }
        match body.next().await {
            Some(Ok(chunk)) => {
                buf.extend_from_slice(&chunk);
                // One event is a short line; a peer that sends megabytes without a newline is
                // not a peer.
                if buf.len() > download::LINE_LIMIT {
                    return Err(not_a_peer(&url, "an event line over 1 MiB"));
                }
            }
            Some(Err(e)) => {
                return Err(Error::Unreachable(format!(
                    "{url}: the download's progress stream broke: {}",
                    p2p_common::tls::error_chain(&e)
                )));
            }
            None => {
                return Err(Error::Unreachable(format!(
                    "{url}: the progress stream ended before the download finished"
                )));
            }
        }
    }
}

fn lossy(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    s.chars().take(200).collect()
}
