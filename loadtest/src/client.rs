//! A small Socket.IO client over WebSocket only: Engine.IO v4 open, namespace `/` connect, events
//! with acks, pings answered. It is built on `switchboard-protocol`'s codecs and
//! tokio-tungstenite, and never on server code, so it drives any Socket.IO v4 server.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;
use switchboard_protocol::{Decoded, Decoder, EioPacket, Packet, PacketKind};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The WebSocket this client speaks over.
pub type Ws = WebSocketStream<TcpStream>;

/// How long one handshake step or one ack may take before the connection counts as failed.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `step`, failing with [`ClientError::Timeout`] after [`STEP_TIMEOUT`].
pub async fn within_step<T>(
    step: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .map_err(|_| ClientError::Timeout)?
}

/// Why a connection or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be made (server down, backlog full, ports exhausted).
    #[error("tcp connect to {0} failed: {1} (is the server up? are source ports exhausted?)")]
    Tcp(SocketAddr, std::io::Error),
    /// The WebSocket upgrade or a frame failed.
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server sent something the protocol does not allow here.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server refused the namespace connect.
    #[error("connect_error from the server: {0}")]
    Refused(String),
    /// The connection closed.
    #[error("connection closed by the server")]
    Closed,
    /// A step took longer than [`STEP_TIMEOUT`].
    #[error("timed out waiting for the server")]
    Timeout,
}

/// A server to connect to: `http://HOST:PORT[/path/]` or `ws://...`.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resolved address.
    pub addr: SocketAddr,
    /// `HOST:PORT` as written, for the `Host` header.
    pub authority: String,
    /// The Engine.IO path, `/socket.io/` unless the URL names another.
    pub path: String,
}

impl Target {
    /// Parses a server URL.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = ["http://", "ws://"]
            .iter()
            .find_map(|p| url.strip_prefix(p))
            .ok_or_else(|| format!("`{url}`: the URL must start with http:// or ws://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) if rest.len() > i + 1 => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], "/socket.io/".to_owned()),
            None => (rest, "/socket.io/".to_owned()),
        };
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| format!("`{url}`: cannot resolve `{authority}` ({e}); write HOST:PORT"))?
            .next()
            .ok_or_else(|| format!("`{url}`: `{authority}` resolves to no address"))?;
        Ok(Target {
            addr,
            authority: authority.to_owned(),
            path,
        })
    }
}

/// Opens a TCP connection to `target` (from `source` when given), with Nagle off.
pub async fn tcp_connect(
    target: &Target,
    source: Option<IpAddr>,
) -> Result<TcpStream, ClientError> {
    let tcp = |e| ClientError::Tcp(target.addr, e);
    let socket = if target.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(tcp)?;
    if let Some(ip) = source {
        // Choose the port at connect time, per destination: without this, bind() searches
        // a port unique to the source address, which gets slow past ~20,000 sockets and
        // caps each source at one ephemeral range for all servers together.
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::IpBindAddressNoPort,
            &true,
        )
        .map_err(|e| tcp(std::io::Error::from(e)))?;
        socket.bind(SocketAddr::new(ip, 0)).map_err(tcp)?;
    }
    let stream = socket.connect(target.addr).await.map_err(tcp)?;
    stream.set_nodelay(true).map_err(tcp)?;
    Ok(stream)
}

/// One connected Socket.IO client on namespace `/`.
pub struct Client {
    /// The WebSocket.
    pub ws: Ws,
    /// Reassembles binary packets.
    pub decoder: Decoder,
    next_ack: u64,
}

/// What one WebSocket frame turned into.
pub enum FrameOutcome {
    /// A complete Socket.IO packet.
    Packet(Packet),
    /// Nothing for the caller (a ping answered, a partial binary packet, a pong).
    Nothing,
}

impl Client {
    /// Opens TCP (from `source` when given), upgrades to WebSocket, reads the Engine.IO open
    /// packet and connects namespace `/`; each step within [`STEP_TIMEOUT`].
    pub async fn connect(target: &Target, source: Option<IpAddr>) -> Result<Client, ClientError> {
        within_step(Self::connect_inner(target, source)).await
    }

    async fn connect_inner(target: &Target, source: Option<IpAddr>) -> Result<Client, ClientError> {
        let stream = tcp_connect(target, source).await?;
        let url = format!(
            "ws://{}{}?EIO=4&transport=websocket",
            target.authority, target.path
        );
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
        let mut client = Client {
            ws,
            decoder: Decoder::default(),
            next_ack: 0,
        };
        match client.next_eio().await? {
            EioPacket::Open(_) => {}
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected the Engine.IO open packet, got {other:?}"
                )))
            }
        }
        client.send_text("40".to_owned()).await?;
        loop {
            if let FrameOutcome::Packet(p) = client.next_incoming().await? {
                match p.kind {
                    PacketKind::Connect(_) => return Ok(client),
                    PacketKind::ConnectError(v) => return Err(ClientError::Refused(v.to_string())),
                    _ => continue,
                }
            }
        }
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// A fresh ack id.
    pub fn ack_id(&mut self) -> u64 {
        self.next_ack += 1;
        self.next_ack
    }

    /// Emits `event` with one argument and waits for its ack; packets arriving meanwhile are
    /// dropped (this is for setup steps such as `join`).
    pub async fn emit_with_ack(
        &mut self,
        event: &str,
        arg: Value,
    ) -> Result<Vec<Value>, ClientError> {
        let id = self.ack_id();
        self.send_text(event_frame(event, arg, Some(id))).await?;
        let wait = async {
            loop {
                if let FrameOutcome::Packet(Packet {
                    kind: PacketKind::Ack { data, id: got, .. },
                    ..
                }) = self.next_incoming().await?
                {
                    if got == id {
                        return Ok(data);
                    }
                }
            }
        };
        within_step(wait).await
    }

    async fn next_eio(&mut self) -> Result<EioPacket, ClientError> {
        loop {
            match self.ws.next().await {
                None => return Err(ClientError::Closed),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Text(t))) => {
                    return EioPacket::decode_text(t.as_str())
                        .map_err(|e| ClientError::Protocol(e.to_string()))
                }
                Some(Ok(Message::Binary(b))) => return Ok(EioPacket::Binary(b)),
                Some(Ok(Message::Close(_))) => return Err(ClientError::Closed),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads one frame and decodes it; answers Engine.IO pings itself.
    pub async fn next_incoming(&mut self) -> Result<FrameOutcome, ClientError> {
        let packet = self.next_eio().await?;
        self.handle(packet).await
    }

    /// Decodes one Engine.IO packet read by the caller (see [`Client::next_incoming`]).
    pub async fn handle(&mut self, packet: EioPacket) -> Result<FrameOutcome, ClientError> {
        let decoded = match packet {
            EioPacket::Ping(data) => {
                let mut pong = String::from("3");
                pong.push_str(&data);
                self.send_text(pong).await?;
                return Ok(FrameOutcome::Nothing);
            }
            EioPacket::Close => return Err(ClientError::Closed),
            EioPacket::Message(text) => self.decoder.decode_text(&text),
            EioPacket::Binary(data) => self.decoder.decode_binary(data),
            _ => return Ok(FrameOutcome::Nothing),
        };
        match decoded.map_err(|e| ClientError::Protocol(e.to_string()))? {
            Decoded::Packet(p) => Ok(FrameOutcome::Packet(p)),
            Decoded::NeedAttachments => Ok(FrameOutcome::Nothing),
        }
    }

    /// Decodes a frame read by the caller from [`Client::ws`].
    pub fn decode_frame(message: Message) -> Result<Option<EioPacket>, ClientError> {
        match message {
            Message::Text(t) => EioPacket::decode_text(t.as_str())
                .map(Some)
                .map_err(|e| ClientError::Protocol(e.to_string())),
            Message::Binary(b) => Ok(Some(EioPacket::Binary(b))),
            Message::Close(_) => Err(ClientError::Closed),
            _ => Ok(None),
        }
    }

    /// Closes the WebSocket and waits briefly for the server to close TCP, so that the
    /// TIME_WAIT state stays on the server's side.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }
}

/// The text frame (`4` + Socket.IO packet) of an event with one argument.
pub fn event_frame(event: &str, arg: Value, id: Option<u64>) -> String {
    let packet = Packet {
        nsp: "/".to_owned(),
        kind: PacketKind::Event {
            data: vec![Value::String(event.to_owned()), arg],
            id,
            attachments: Vec::new(),
        },
    };
    let mut out = String::from("4");
    packet.encode_into(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = Target::parse("http://127.0.0.1:3000").expect("valid");
        assert_eq!(t.addr, "127.0.0.1:3000".parse().expect("addr"));
        assert_eq!(t.path, "/socket.io/");
        let t = Target::parse("ws://127.0.0.1:1/io/").expect("valid");
        assert_eq!(t.path, "/io/");
        assert!(Target::parse("127.0.0.1:3000").is_err());
    }

    #[test]
    fn encodes_an_event_with_an_ack_id() {
        let f = event_frame("join", serde_json::json!("r1"), Some(7));
        assert_eq!(f, r#"427["join","r1"]"#);
    }
}
