//! An idle Engine.IO long-polling session, for `idle --transport polling`: the Engine.IO
//! handshake, namespace `/` CONNECT, then one GET always waiting on the server, as a browser
//! client that has nothing to send holds it. Everything runs on one keep-alive HTTP/1.1
//! connection: a GET answered with a ping is followed by a POST of the pong and the next GET.
//! Requests are written by hand (they are fixed strings); responses are parsed with `httparse`
//! and must carry `Content-Length` (Switchboard, socketioxide and Node's engine.io all do).

use crate::client::{tcp_connect, within_step, ClientError, Target};
use std::net::IpAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The Engine.IO v4 polling record separator.
const SEPARATOR: char = '\u{1e}';

/// An open polling session whose namespace `/` is connected.
pub struct PollingSession {
    stream: TcpStream,
    authority: String,
    /// `PATH?EIO=4&transport=polling&sid=SID`.
    url: String,
    /// Bytes read past the last parsed response.
    buf: Vec<u8>,
    /// A GET has been sent and its answer not yet read.
    waiting: bool,
}

/// How holding a session ended.
pub enum Held {
    /// The run ended; the session is still open with a GET waiting.
    Open(PollingSession),
    /// The server closed the session or the connection, or answered with an error.
    Closed,
}

impl PollingSession {
    /// Handshakes and connects namespace `/`, within [`crate::client::STEP_TIMEOUT`].
    pub async fn open(target: &Target, source: Option<IpAddr>) -> Result<Self, ClientError> {
        within_step(Self::open_inner(target, source)).await
    }

    async fn open_inner(target: &Target, source: Option<IpAddr>) -> Result<Self, ClientError> {
        let stream = tcp_connect(target, source).await?;
        let mut s = PollingSession {
            stream,
            authority: target.authority.clone(),
            url: format!("{}?EIO=4&transport=polling", target.path),
            buf: Vec::new(),
            waiting: false,
        };
        let open = s.get().await?;
        let first = open.split(SEPARATOR).next().unwrap_or("");
        let json = first.strip_prefix('0').ok_or_else(|| {
            ClientError::Protocol(format!("expected the Engine.IO open packet, got `{first}`"))
        })?;
        let handshake: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| ClientError::Protocol(format!("open packet is not JSON ({e})")))?;
        let sid = handshake["sid"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol("open packet without a sid".into()))?;
        s.url = format!("{}&sid={sid}", s.url);
        s.post("40").await?;
        loop {
            let body = s.get().await?;
            for record in body.split(SEPARATOR) {
                if record.starts_with("40") {
                    return Ok(s);
                }
                if let Some(why) = record.strip_prefix("44") {
                    return Err(ClientError::Refused(why.to_owned()));
                }
                if record == "2" {
                    s.post("3").await?;
                }
            }
        }
    }

    /// Keeps a GET waiting and answers pings until `stop` resolves.
    pub async fn hold(mut self, stop: impl std::future::Future<Output = ()>) -> Held {
        tokio::pin!(stop);
        loop {
            if !self.waiting && self.send_get().await.is_err() {
                return Held::Closed;
            }
            let body = tokio::select! {
                _ = &mut stop => return Held::Open(self),
                r = self.read_response() => match r {
                    Ok(b) => b,
                    Err(_) => return Held::Closed,
                },
            };
            self.waiting = false;
            for record in body.split(SEPARATOR) {
                match record {
                    "2" if within_step(self.post("3")).await.is_err() => {
                        return Held::Closed;
                    }
                    "1" => return Held::Closed,
                    _ => {}
                }
            }
        }
    }

    async fn get(&mut self) -> Result<String, ClientError> {
        self.send_get().await?;
        let body = self.read_response().await?;
        self.waiting = false;
        Ok(body)
    }

    async fn send_get(&mut self) -> Result<(), ClientError> {
        let head = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: */*\r\n\r\n",
            self.url, self.authority
        );
        self.stream.write_all(head.as_bytes()).await.map_err(io)?;
        self.waiting = true;
        Ok(())
    }

    async fn post(&mut self, body: &str) -> Result<(), ClientError> {
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
            self.url,
            self.authority,
            body.len()
        );
        self.stream.write_all(req.as_bytes()).await.map_err(io)?;
        let answer = self.read_response().await?;
        if answer != "ok" {
            return Err(ClientError::Protocol(format!(
                "POST answered `{answer}`, not `ok`"
            )));
        }
        Ok(())
    }

    /// Reads one response; its body when the status is 200. Cancel-safe: bytes read so far stay
    /// in `buf`.
    async fn read_response(&mut self) -> Result<String, ClientError> {
        loop {
            if let Some((status, body)) = parse_response(&mut self.buf)? {
                if status != 200 {
                    return Err(ClientError::Protocol(format!("HTTP {status}: {body}")));
                }
                return Ok(body);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn io(e: std::io::Error) -> ClientError {
    ClientError::Protocol(format!("polling connection: {e}"))
}

/// Takes one complete response off the front of `buf`: `(status, body)`, or `None` when more
/// bytes are needed.
fn parse_response(buf: &mut Vec<u8>) -> Result<Option<(u16, String)>, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    let head = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ClientError::Protocol(format!("bad HTTP response: {e}"))),
    };
    let status = res.code.unwrap_or(0);
    let mut length = None;
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ClientError::Protocol(
                "chunked polling responses are not supported: the server must send Content-Length"
                    .into(),
            ));
        }
    }
    let length = length
        .ok_or_else(|| ClientError::Protocol("polling response without Content-Length".into()))?;
    if buf.len() < head + length {
        return Ok(None);
    }
    let body = String::from_utf8_lossy(&buf[head..head + length]).into_owned();
    buf.drain(..head + length);
    Ok(Some((status, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses_one_at_a_time() {
        let mut buf =
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n"
                .to_vec();
        assert_eq!(
            parse_response(&mut buf).expect("valid"),
            Some((200, "ok".to_owned()))
        );
        assert_eq!(parse_response(&mut buf).expect("valid"), None);
        buf.push(b'2');
        assert_eq!(
            parse_response(&mut buf).expect("valid"),
            Some((200, "2".to_owned()))
        );
        assert!(buf.is_empty());
        let mut chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        assert!(parse_response(&mut chunked).is_err());
    }
}
