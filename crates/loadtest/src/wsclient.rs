//! A WebSocket client of the gateway's `/ws`, as scripts connect (no Origin header).

use anyhow::Context;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// An open `/ws` connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to the gateway at `base` (`http://127.0.0.1:PORT`).
///
/// # Errors
/// When the upgrade fails.
pub async fn connect(base: &str) -> anyhow::Result<Ws> {
    let url = format!("{}/ws", base.replacen("http://", "ws://", 1));
    let (ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok(ws)
}
