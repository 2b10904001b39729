//! A three-node NATS cluster of child processes, run from the node configs the project ships
//! in `deploy/nats/`, with only their ports, peer host names and JetStream directories
//! rewritten for loopback. Nodes can be SIGKILLed and started again on the same ports and
//! store, so tests can take one away mid-stream.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, Incoming, MqttOptions};
use tempfile::TempDir;

use crate::{ServiceProcess, free_port, require_tool, try_http_get, unique_client_id, wait_until};

/// Nodes in the shipped cluster (`deploy/nats/nats-{1,2,3}.conf`).
pub const NATS_NODES: usize = 3;
/// Shards the shipped mapping partitions readings into (`partition(3,1)`).
pub const NATS_SHARDS: u32 = 3;
/// The install hint of every test that needs `nats-server`.
pub const NATS_INSTALL_HINT: &str =
    "`apt-get install nats-server` (Debian/Ubuntu package, 2.9 or later)";
/// Cluster formation and the first MQTT session (JetStream creates its streams) are slow on a
/// loaded machine; a node that comes back after a SIGKILL refuses MQTT for up to ~35 s.
const NATS_WAIT: Duration = Duration::from_secs(90);
/// Cluster starts tried with fresh ports: another process may take a port between
/// `free_port` and the node's bind.
const START_ATTEMPTS: u32 = 3;

/// The loopback ports of one node.
#[derive(Debug, Clone, Copy)]
pub struct NodePorts {
    /// NATS clients.
    pub client: u16,
    /// HTTP monitoring (`/routez`, `/healthz`).
    pub http: u16,
    /// Cluster routes.
    pub cluster: u16,
    /// MQTT.
    pub mqtt: u16,
}

/// A running (or partly killed) cluster. Dropping it kills every node.
#[derive(Debug)]
pub struct NatsCluster {
    binary: PathBuf,
    dir: TempDir,
    ports: Vec<NodePorts>,
    nodes: Vec<Option<ServiceProcess>>,
}

/// The shipped node configs.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nats")
}

/// Replaces `from` by `to` in `text`, failing when `from` is absent: a shipped config that no
/// longer has the expected line must fail here, not run with a default.
fn rewrite(text: &str, from: &str, to: &str, file: &str) -> String {
    assert!(text.contains(from), "{file} has no `{from}` to rewrite");
    text.replace(from, to)
}

/// Node `index` (0-based)'s shipped config, pointed at loopback ports and `store`.
fn node_config(index: usize, ports: &[NodePorts], store: &Path) -> String {
    let file = format!("nats-{}.conf", index + 1);
    let path = deploy_dir().join(&file);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let own = ports[index];
    for (from, port) in [
        ("0.0.0.0:4222", own.client),
        ("0.0.0.0:8222", own.http),
        ("0.0.0.0:6222", own.cluster),
        ("0.0.0.0:1883", own.mqtt),
    ] {
        text = rewrite(&text, from, &format!("127.0.0.1:{port}"), &file);
    }
    text = rewrite(
        &text,
        "/data/jetstream",
        &store.display().to_string(),
        &file,
    );
    for (peer, peer_ports) in ports.iter().enumerate().filter(|(p, _)| *p != index) {
        text = rewrite(
            &text,
            &format!("nats-{}:6222", peer + 1),
            &format!("127.0.0.1:{}", peer_ports.cluster),
            &file,
        );
    }
    text
}

/// How many other servers a `/routez` answer routes to. Not `num_routes`: from 2.10 a server
/// opens a pool of routes to each peer (three by default), 2.9 one.
fn routed_peers(routez: &serde_json::Value) -> usize {
    routez["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|route| route["remote_id"].as_str())
        .collect::<std::collections::HashSet<_>>()
        .len()
}

impl NatsCluster {
    /// Starts the three shipped nodes on free ports and waits until each routes to the two
    /// others. MQTT may still refuse connections for a while: see [`NatsCluster::wait_mqtt`].
    ///
    /// # Panics
    /// When `nats-server` is missing (with the install command) or the cluster does not form
    /// (with the nodes' logs).
    pub async fn start() -> Self {
        let binary = require_tool("nats-server", NATS_INSTALL_HINT);
        for attempt in 1..=START_ATTEMPTS {
            let mut cluster = Self::configure(binary.clone());
            for index in 0..NATS_NODES {
                cluster.launch(index);
            }
            match cluster.wait_listening().await {
                Ok(()) => {}
                // A port picked as free was taken before the node bound it: new ports.
                Err(e) if attempt < START_ATTEMPTS => {
                    eprintln!("NATS cluster start, attempt {attempt}: {e}; trying other ports");
                    continue;
                }
                Err(e) => panic!("{e}\n{}", cluster.logs()),
            }
            for index in 0..NATS_NODES {
                cluster.wait_routes(index).await;
            }
            return cluster;
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Free ports, a store directory and the three node configs; no node started.
    fn configure(binary: PathBuf) -> Self {
        let ports: Vec<NodePorts> = (0..NATS_NODES)
            .map(|_| NodePorts {
                client: free_port(),
                http: free_port(),
                cluster: free_port(),
                mqtt: free_port(),
            })
            .collect();
        // expect: failing to create temp files means the test machine is broken.
        let dir = tempfile::Builder::new()
            .prefix("scrap-pulse-nats-")
            .tempdir()
            .expect("temp dir for the NATS cluster");
        for index in 0..NATS_NODES {
            let store = dir.path().join(format!("node-{}", index + 1));
            std::fs::write(
                Self::config_path(dir.path(), index),
                node_config(index, &ports, &store),
            )
            .expect("write a NATS node config");
        }
        Self {
            binary,
            dir,
            ports,
            nodes: (0..NATS_NODES).map(|_| None).collect(),
        }
    }

    /// Waits until every node's monitor answers with its own MQTT port (not another process
    /// that holds the port), or fails as soon as a node has exited (a port was taken).
    async fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + NATS_WAIT;
        for index in 0..NATS_NODES {
            let url = format!("http://127.0.0.1:{}/varz", self.ports[index].http);
            let mqtt = u64::from(self.ports[index].mqtt);
            loop {
                let ours = try_http_get(&url).await.is_ok_and(|(status, body)| {
                    status == 200
                        && serde_json::from_str::<serde_json::Value>(&body)
                            .is_ok_and(|v| v["mqtt"]["port"].as_u64() == Some(mqtt))
                });
                if ours {
                    break;
                }
                if !self.nodes[index]
                    .as_mut()
                    .is_some_and(ServiceProcess::is_running)
                {
                    return Err(format!("nats node {} exited", index + 1));
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("{url} did not answer within {NATS_WAIT:?}"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    fn config_path(dir: &Path, index: usize) -> PathBuf {
        dir.join(format!("nats-{}.conf", index + 1))
    }

    fn launch(&mut self, index: usize) {
        let config = Self::config_path(self.dir.path(), index);
        let config = config.display().to_string();
        self.nodes[index] = Some(ServiceProcess::spawn(
            &self.binary,
            ["-c", config.as_str()],
            [("NO_COLOR", "1")],
        ));
    }

    /// Waits until node `index` routes to every other running node.
    async fn wait_routes(&self, index: usize) {
        let want = self.nodes.iter().filter(|n| n.is_some()).count() - 1;
        let url = format!("http://127.0.0.1:{}/routez", self.ports[index].http);
        let formed = wait_until(NATS_WAIT, &format!("{url} shows {want} peers"), || async {
            match try_http_get(&url).await {
                Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                    .is_ok_and(|v| routed_peers(&v) == want),
                _ => false,
            }
        })
        .await;
        if let Err(e) = formed {
            panic!("{e}\n{}", self.logs());
        }
    }

    /// The ports of node `index`.
    pub fn ports(&self, index: usize) -> NodePorts {
        self.ports[index]
    }

    /// The process id of node `index` (None while it is killed), e.g. for its CPU time.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.nodes[index].as_ref().and_then(ServiceProcess::pid)
    }

    /// The MQTT port of node `index`.
    pub fn mqtt_port(&self, index: usize) -> u16 {
        self.ports[index].mqtt
    }

    /// Every node's MQTT address as an `mqtt.host` list starting at node `first` and going
    /// round: `127.0.0.1:<first>,127.0.0.1:<next>,...`. A service given it connects to `first`
    /// and fails over to the others.
    pub fn mqtt_hosts_from(&self, first: usize) -> String {
        (0..NATS_NODES)
            .map(|k| format!("127.0.0.1:{}", self.ports[(first + k) % NATS_NODES].mqtt))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until node `index` accepts an MQTT connection (CONNACK success).
    ///
    /// # Errors
    /// When it does not within `timeout`.
    pub async fn wait_mqtt(&self, index: usize, timeout: Duration) -> Result<(), String> {
        let port = self.ports[index].mqtt;
        wait_until(
            timeout,
            &format!("NATS node {} accepts MQTT", index + 1),
            || mqtt_accepts(port),
        )
        .await
    }

    /// Kills node `index` with SIGKILL (a crash) and waits for it to exit.
    pub async fn kill(&mut self, index: usize) {
        if let Some(mut node) = self.nodes[index].take() {
            node.kill().await;
        }
    }

    /// Starts node `index` again with its config and JetStream store (killing it first if it
    /// runs), and waits until it routes to the other running nodes.
    ///
    /// # Panics
    /// When it does not rejoin (with the logs).
    pub async fn restart(&mut self, index: usize) {
        self.kill(index).await;
        self.launch(index);
        self.wait_routes(index).await;
    }

    /// Every node's output, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let text = n
                    .as_ref()
                    .map_or_else(|| "(not running)".to_owned(), ServiceProcess::logs);
                format!("--- nats node {}\n{text}", i + 1)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One MQTT connection attempt to `127.0.0.1:port`, bounded at a few seconds.
async fn mqtt_accepts(port: u16) -> bool {
    let mut options = MqttOptions::new(unique_client_id("nats-probe"), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut event_loop) = AsyncClient::new(options, 4);
    let accepted = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match event_loop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    return ack.code == ConnectReturnCode::Success;
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    if accepted {
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(200), event_loop.poll()).await;
    } else {
        // A refused attempt: pause so the caller's retries do not hammer a recovering node.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    accepted
}

#[cfg(test)]
mod tests {
    use super::routed_peers;

    #[test]
    fn peers_are_counted_once_however_many_routes_lead_to_them() {
        // 2.9: one route per peer.
        let one_each = serde_json::json!({"num_routes": 2, "routes": [
            {"rid": 1, "remote_id": "NA"}, {"rid": 2, "remote_id": "NB"}]});
        assert_eq!(routed_peers(&one_each), 2);
        // 2.10: a pool of three per peer, and one peer still connecting.
        let pooled = serde_json::json!({"num_routes": 4, "routes": [
            {"rid": 1, "remote_id": "NA"}, {"rid": 2, "remote_id": "NA"},
            {"rid": 3, "remote_id": "NA"}, {"rid": 4, "remote_id": "NB"}]});
        assert_eq!(routed_peers(&pooled), 2);
        let three_of_one = serde_json::json!({"num_routes": 3, "routes": [
            {"remote_id": "NA"}, {"remote_id": "NA"}, {"remote_id": "NA"}]});
        assert_eq!(routed_peers(&three_of_one), 1);
        assert_eq!(routed_peers(&serde_json::json!({"num_routes": 0})), 0);
    }
}
