//! The stdio front end: one agent over stdin/stdout, with message limits.
//!
//! rmcp's own stdio transport drops oversized or unparsable lines with only a
//! log line, so the agent never learns what happened. This guard sits between
//! the pipes and rmcp: it enforces `limits.max_message_bytes` while reading
//! (memory never grows past the limit), answers oversized and unparsable lines
//! with a specific JSON-RPC error, and passes well-formed lines on. All output
//! goes through one writer task, so responses are never interleaved.

use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;

/// Outcome of reading one bounded line.
pub(crate) enum Line {
    Complete(Vec<u8>),
    Oversized(usize),
    Eof,
}

/// Read up to a newline without ever buffering more than `max` bytes.
pub(crate) async fn read_bounded<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut seen = 0usize;
    let mut oversized = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if oversized { Line::Oversized(seen) } else if line.is_empty() { Line::Eof } else { Line::Complete(line) });
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], i + 1),
            None => (buf, buf.len()),
        };
        seen = seen.saturating_add(chunk.len());
        if !oversized {
            if seen > max {
                oversized = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let found_newline = done > chunk.len();
        reader.consume(done);
        if found_newline {
            return Ok(if oversized { Line::Oversized(seen) } else { Line::Complete(line) });
        }
    }
}

fn error_line(code: i64, message: String, reason: &str) -> Vec<u8> {
    let v = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message, "data": { "code": reason } },
    });
    let mut out = v.to_string().into_bytes();
    out.push(b'\n');
    out
}

/// Check one incoming line; `Err` holds the error response to send instead.
pub(crate) fn screen(line: &[u8]) -> Result<(), Vec<u8>> {
    match serde_json::from_slice::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(serde_json::Value::Array(_)) => Err(error_line(
            -32600,
            "JSON-RPC batches are not supported by MCP; send one message per line".into(),
            "batch_not_supported",
        )),
        Ok(_) => Err(error_line(-32600, "a JSON-RPC message must be a JSON object".into(), "invalid_request")),
        Err(e) => Err(error_line(
            -32700,
            format!("parse error: the message is not valid JSON ({e}); send one JSON-RPC object per line"),
            "parse_error",
        )),
    }
}

/// Spawn the guard tasks between `input`/`output` and the returned pipe ends,
/// which are handed to rmcp as its transport. The tasks end when `input`
/// reaches EOF or rmcp closes its side.
pub fn guard<R, W>(input: R, output: W, max_message_bytes: usize) -> (tokio::io::DuplexStream, tokio::io::DuplexStream)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (rmcp_in, mut to_rmcp) = tokio::io::duplex(64 * 1024);
    let (from_rmcp, rmcp_out) = tokio::io::duplex(64 * 1024);
    let (errors_tx, mut errors_rx) = mpsc::channel::<Vec<u8>>(16);

    tokio::spawn(async move {
        let mut reader = BufReader::new(input);
        loop {
            match read_bounded(&mut reader, max_message_bytes).await {
                Ok(Line::Complete(line)) => {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match screen(&line) {
                        Ok(()) => {
                            let mut framed = line;
                            framed.push(b'\n');
                            if to_rmcp.write_all(&framed).await.is_err() {
                                return;
                            }
                        }
                        Err(response) => {
                            tracing::warn!("refused an unparsable message on stdin");
                            if errors_tx.send(response).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                Ok(Line::Oversized(len)) => {
                    tracing::warn!(len, max = max_message_bytes, "refused an oversized message on stdin");
                    let msg = format!(
                        "message of {len} bytes exceeds this gateway's limit of {max_message_bytes} bytes (limits.max_message_bytes); send smaller arguments"
                    );
                    if errors_tx.send(error_line(-32600, msg, "message_too_large")).await.is_err() {
                        return;
                    }
                }
                Ok(Line::Eof) | Err(_) => return,
            }
        }
    });

    tokio::spawn(async move {
        let mut output = output;
        let mut lines = BufReader::new(from_rmcp);
        let mut buf = Vec::new();
        loop {
            tokio::select! {
                r = lines.read_until(b'\n', &mut buf) => {
                    match r {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            if output.write_all(&buf).await.is_err() || output.flush().await.is_err() { return; }
                            buf.clear();
                        }
                    }
                }
                Some(err) = errors_rx.recv() => {
                    if output.write_all(&err).await.is_err() || output.flush().await.is_err() { return; }
                }
            }
        }
    });

    (rmcp_in, rmcp_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    #[tokio::test]
    async fn bounded_reader_never_keeps_more_than_max() {
        let data = format!("{}\n{{\"ok\":1}}\n", "x".repeat(10_000));
        let mut r = BufReader::with_capacity(64, data.as_bytes());
        assert!(matches!(read_bounded(&mut r, 100).await.unwrap(), Line::Oversized(10_000)));
        assert!(matches!(read_bounded(&mut r, 100).await.unwrap(), Line::Complete(l) if l == b"{\"ok\":1}"));
        assert!(matches!(read_bounded(&mut r, 100).await.unwrap(), Line::Eof));
    }

    #[tokio::test]
    async fn guard_answers_bad_lines_and_passes_good_ones() {
        let (mut client_w, server_r) = tokio::io::duplex(4096);
        let (server_w, mut client_r) = tokio::io::duplex(4096);
        let (mut rmcp_in, _rmcp_out) = guard(server_r, server_w, 64);
        client_w.write_all(b"{not json\n").await.unwrap();
        client_w.write_all(format!("{{\"a\":\"{}\"}}\n", "y".repeat(100)).as_bytes()).await.unwrap();
        client_w.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":1}\n").await.unwrap();
        drop(client_w);

        let mut passed = String::new();
        rmcp_in.read_to_string(&mut passed).await.unwrap();
        assert_eq!(passed, "{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":1}\n");

        let mut out = vec![0u8; 4096];
        let mut got = String::new();
        while !got.contains("message_too_large") {
            let n = client_r.read(&mut out).await.unwrap();
            got.push_str(std::str::from_utf8(&out[..n]).unwrap());
        }
        assert!(got.contains("\"code\":-32700") && got.contains("parse error"), "{got}");
        assert!(got.contains("exceeds this gateway's limit of 64 bytes"), "{got}");
    }
}
