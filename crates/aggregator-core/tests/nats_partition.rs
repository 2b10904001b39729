//! Pins [`shard_of`] against a real nats-server: the broker's `{{partition(3,1)}}` mapping must
//! put every machine on the shard the core computes, or a partitioning broker and the shards
//! would disagree about who owns a machine.
//!
//! Starts its own nats-server (Debian package `nats-server`) on a random port with a mapping
//! `machines.*.scrap` → `shard.{{partition(3,1)}}.machines.{{wildcard(1)}}.scrap`, publishes one
//! message per machine and reads where each lands, speaking the NATS text protocol over a
//! plain TCP socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aggregator_core::partition::shard_of;

const SHARDS: u32 = 3;
const DEADLINE: Duration = Duration::from_secs(30);

/// A nats-server child process, killed and its config removed on drop.
struct NatsServer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nats_server_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/bin".into()])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server not found on PATH or in /usr/sbin: install it with \
                 `sudo apt-get install nats-server` (Debian/Ubuntu package) to run this test"
            )
        })
}

fn start_nats() -> NatsServer {
    let unique = format!(
        "scrap-pulse-nats-partition-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let dir = std::env::temp_dir().join(unique);
    std::fs::create_dir_all(&dir).expect("create temp dir for the nats config");
    let config = dir.join("nats.conf");
    std::fs::write(
        &config,
        format!(
            "host: 127.0.0.1\nport: -1\nmappings = {{ \"machines.*.scrap\": \
             \"shard.{{{{partition({SHARDS},1)}}}}.machines.{{{{wildcard(1)}}}}.scrap\" }}\n"
        ),
    )
    .expect("write nats config");
    let mut child = Command::new(nats_server_binary())
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nats-server");
    // nats-server logs to stderr; `port: -1` picks a free port, which the log names.
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut server = NatsServer {
        child,
        dir,
        port: 0,
    };
    let start = Instant::now();
    let mut log = Vec::new();
    while server.port == 0 {
        let left = DEADLINE.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some((_, addr)) = line.split_once("Listening for client connections on ") {
                    server.port = addr
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or_else(|| panic!("no port in {line:?}"));
                }
                log.push(line);
            }
            Err(_) => panic!(
                "nats-server did not report its client port within {DEADLINE:?}; log:\n{}",
                log.join("\n")
            ),
        }
    }
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    server
}

/// A minimal NATS text-protocol client: enough to subscribe, publish and read `MSG`s.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to nats-server");
        stream
            .set_read_timeout(Some(DEADLINE))
            .expect("set read timeout");
        let writer = stream.try_clone().expect("clone stream");
        let mut client = Client {
            reader: BufReader::new(stream),
            writer,
        };
        let info = client.line();
        assert!(info.starts_with("INFO "), "expected INFO, got {info:?}");
        client.send("CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":true}\r\n");
        client
    }

    fn send(&mut self, text: &str) {
        self.writer
            .write_all(text.as_bytes())
            .expect("write to nats-server");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .expect("read from nats-server (timed out?)");
        assert!(n > 0, "nats-server closed the connection");
        line.trim_end().to_owned()
    }

    /// Waits for the PONG of a PING: every command sent before it has been processed.
    fn flush(&mut self) {
        self.send("PING\r\n");
        loop {
            let line = self.line();
            match line.as_str() {
                "PONG" => return,
                "PING" => self.send("PONG\r\n"),
                l if l.starts_with("-ERR") => panic!("nats-server error: {l}"),
                l if l.starts_with("MSG ") => panic!("message before subscription flush: {l}"),
                _ => {}
            }
        }
    }

    /// Next `MSG` subject, answering server PINGs on the way; skips the payload.
    fn next_subject(&mut self) -> String {
        loop {
            let line = self.line();
            if line == "PING" {
                self.send("PONG\r\n");
                continue;
            }
            if line.starts_with("-ERR") {
                panic!("nats-server error: {line}");
            }
            let Some(rest) = line.strip_prefix("MSG ") else {
                continue;
            };
            // MSG <subject> <sid> [reply-to] <#bytes>
            let parts: Vec<&str> = rest.split(' ').collect();
            let size: usize = parts
                .last()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("bad MSG line {line:?}"));
            let mut payload = vec![0; size + 2];
            self.reader
                .read_exact(&mut payload)
                .expect("read MSG payload");
            return parts[0].to_owned();
        }
    }
}

#[test]
fn nats_partition_mapping_agrees_with_shard_of() {
    let server = start_nats();
    let mut client = Client::connect(server.port);
    client.send("SUB shard.*.machines.*.scrap 1\r\n");
    client.flush();

    // Plain ids, the simulator's style, numbers, and bytes beyond ASCII (NATS tokens may hold
    // UTF-8): over 30 machines, so all three shards are hit several times.
    let mut machines: Vec<String> = (1..=20).map(|n| format!("M{n}")).collect();
    machines
        .extend(["A1", "B1", "C1", "Presse-7", "line_4-robot", "0", "42", "x"].map(String::from));
    machines.extend(["Maschine-Ä1", "Fräse-ß", "機械3", "Q"].map(String::from));
    machines.push("long-".repeat(40));
    assert!(machines.len() >= 30);

    for m in &machines {
        client.send(&format!("PUB machines.{m}.scrap 2\r\n{{}}\r\n"));
    }

    let mut seen = std::collections::BTreeMap::new();
    let start = Instant::now();
    while seen.len() < machines.len() {
        assert!(
            start.elapsed() < DEADLINE,
            "only {} of {} machines arrived: {seen:?}",
            seen.len(),
            machines.len()
        );
        let subject = client.next_subject();
        let levels: Vec<&str> = subject.split('.').collect();
        assert!(
            levels.len() == 5 && levels[0] == "shard" && levels[2] == "machines",
            "unexpected subject {subject:?}"
        );
        let shard: u32 = levels[1].parse().expect("numeric shard");
        let previous = seen.insert(levels[3].to_owned(), shard);
        assert_eq!(previous, None, "{subject} delivered twice");
    }
    let mut per_shard = [0; SHARDS as usize];
    for m in &machines {
        let broker = seen[m.as_str()];
        assert_eq!(
            broker,
            shard_of(m, SHARDS),
            "machine {m:?}: nats-server chose shard {broker}, shard_of says {}",
            shard_of(m, SHARDS)
        );
        per_shard[broker as usize] += 1;
    }
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "every shard should get machines: {per_shard:?}"
    );
}
