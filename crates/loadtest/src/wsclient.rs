//! A WebSocket client of the gateway's `/ws`, as scripts connect (no Origin header).

use anyhow::Context;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// An open `/ws` connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to the gateway at `base` (`http://127.0.0.1:PORT`).
///
/// # Errors
/// When the upgrade fails.
pub async fn connect(base: &str) -> anyhow::Result<Ws> {
    let url = format!("{}/ws", base.replacen("http://", "ws://", 1));
    // tungstenite zeroes its whole read buffer (default 128 KiB) on every read: with
    // thousands of clients on the gateway's machine that alone took a sixth of the CPU.
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(&url, Some(config), false)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok(ws)
}
