//! The server the official Engine.IO and Socket.IO protocol test suites expect: an Engine.IO
//! echo at `/engine.io/` and Socket.IO at `/socket.io/` (namespaces `/` and `/custom`), with
//! pingInterval 300 ms, pingTimeout 200 ms, connectTimeout 1000 ms and CORS `*`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchboard::engine::{
    self, CloseReason, CorsConfig, EioSocket, Engine, EngineConfig, Frame, Handler, HttpHandler,
    Incoming, Outgoing, ServeConfig,
};
use switchboard::{Server, ServerConfig};

/// Echoes every Engine.IO message back unchanged.
struct Echo;

impl Handler for Echo {
    type Data = ();

    fn new_data(&self) {}

    fn on_open(&self, _socket: &Arc<EioSocket<()>>) {}

    async fn on_message(&self, socket: &Arc<EioSocket<()>>, message: Incoming) {
        let frame = match message {
            Incoming::Text(text) => Frame::text(format!("4{text}")),
            Incoming::Binary(data) => Frame::Binary(data),
        };
        let _ = socket.send(Outgoing::One(frame));
    }

    fn on_close(&self, _socket: &Arc<EioSocket<()>>, _reason: CloseReason) {}
}

fn engine_config(path: &str) -> EngineConfig {
    EngineConfig {
        path: path.into(),
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        cors: Some(CorsConfig::any()),
        ..EngineConfig::default()
    }
}

#[derive(Clone)]
struct Router {
    echo: Engine<Echo>,
    io: Engine<switchboard::SocketIoHandler>,
}

impl HttpHandler for Router {
    async fn call(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> http::Response<engine::Body> {
        if self.echo.handles(req.uri().path()) {
            self.echo.handle(req).await
        } else {
            self.io.handle(req).await
        }
    }
}

/// Builds the Socket.IO part of the conformance server.
pub fn socket_io() -> Server {
    let config = ServerConfig {
        engine: engine_config("/socket.io/"),
        connect_timeout: Duration::from_millis(1000),
        ..ServerConfig::default()
    };
    let io = match Server::new(config) {
        Ok(io) => io,
        Err(err) => unreachable!("the conformance config is valid: {err}"),
    };
    io.on_connection(|socket| {
        let _ = socket.emit("auth", socket.handshake().auth.clone());
        socket.on("message", |socket, event| {
            let _ = socket.emit("message-back", event.payload);
        });
        socket.on("message-with-ack", |_socket, mut event| {
            let payload = event.payload.clone();
            event.ack(payload);
        });
    });
    io.of("/custom").on_connection(|socket| {
        let _ = socket.emit("auth", socket.handshake().auth.clone());
    });
    io
}

/// Starts the conformance server on `addr` (port 0 allowed) in the background on the current
/// tokio runtime; returns the bound address.
pub async fn start(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let echo_config = engine_config("/engine.io/")
        .validate()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let router = Router {
        echo: Engine::new(echo_config, Echo),
        io: socket_io().engine(),
    };
    let listener = engine::bind(addr, 1024)?;
    let local = listener.local_addr()?;
    tokio::spawn(engine::serve(
        listener,
        router,
        ServeConfig::default(),
        tokio_util::sync::CancellationToken::new(),
    ));
    Ok(local)
}
