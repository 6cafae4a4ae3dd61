//! The public listener: Socket.IO under `/socket.io/`, and with `--static-dir` the files of that
//! directory at `/` (tower-http's `ServeDir`: percent-decoding, no `..` or absolute paths,
//! content types by extension, `index.html` for directories, HEAD and ranges).

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use std::path::PathBuf;
use switchboard::engine::{Body, Engine, HttpHandler};
use switchboard::SocketIoHandler;
use tower_http::services::ServeDir;

/// Largest file served; static files are read whole into memory.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// Routes public requests to the engine or to the static files.
#[derive(Clone)]
pub struct Public {
    /// The Socket.IO engine.
    pub engine: Engine<SocketIoHandler>,
    /// The `--static-dir` directory, when set.
    pub static_dir: Option<PathBuf>,
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// True when a path segment names a hidden file (`.git`, `.env`), written plainly or
/// percent-encoded: those are never served.
fn hidden(path: &str) -> bool {
    path.split('/')
        .any(|seg| seg.starts_with('.') || seg.to_ascii_lowercase().starts_with("%2e"))
}

impl Public {
    async fn serve_file(
        &self,
        dir: &PathBuf,
        req: Request<hyper::body::Incoming>,
    ) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "static files answer GET and HEAD only\n",
            );
        }
        if hidden(req.uri().path()) {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        }
        let (parts, _) = req.into_parts();
        let req = Request::from_parts(parts, http_body_util::Empty::<Bytes>::new());
        let res = match ServeDir::new(dir).try_call(req).await {
            Ok(res) => res,
            Err(err) => {
                tracing::warn!(error = %err, dir = %dir.display(), "static file read failed");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file\n");
            }
        };
        let too_big = res
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|len| len > MAX_FILE_BYTES);
        if too_big {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file too large for --static-dir (16 MiB at most)\n",
            );
        }
        let (parts, body) = res.into_parts();
        match body.collect().await {
            Ok(collected) => Response::from_parts(parts, Full::new(collected.to_bytes())),
            Err(err) => {
                tracing::warn!(error = %err, "static file read failed");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file\n")
            }
        }
    }
}

impl HttpHandler for Public {
    async fn call(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        match &self.static_dir {
            // Boxed: the file server's state is large, and every request's task (a long-poll
            // included) would otherwise be sized for it.
            Some(dir) if !self.engine.handles(req.uri().path()) => {
                Box::pin(self.serve_file(dir, req)).await
            }
            _ => self.engine.handle(req).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hidden;

    #[test]
    fn hidden_segments_are_refused() {
        assert!(hidden("/.git/config"));
        assert!(hidden("/a/.env"));
        assert!(hidden("/%2egit/config"));
        assert!(hidden("/%2E%2E/etc/passwd"));
        assert!(!hidden("/index.html"));
        assert!(!hidden(
            "/node_modules/socket.io-client/dist/socket.io.min.js"
        ));
    }
}
