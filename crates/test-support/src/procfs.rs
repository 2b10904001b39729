//! What Linux's `/proc` tells about a running process: its memory ([`Rss`]) and the TCP
//! sockets it listens on ([`listening_addrs`]).
//!
//! Reading the listening socket from the kernel rather than from the service's log means a
//! test learns the port a service bound to `127.0.0.1:0` the same way for every service,
//! whatever its log format or level. Services run in-process use their
//! `Application::local_addr` instead.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// TCP state `LISTEN` in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// Resident memory of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rss {
    /// `VmRSS`: resident now, in bytes.
    pub current: u64,
    /// `VmHWM`: the most it has been resident, in bytes.
    pub peak: u64,
}

impl Rss {
    /// Reads the memory of process `pid`.
    ///
    /// # Errors
    /// When the process is gone or the file lacks the fields.
    pub fn of(pid: u32) -> Result<Self, String> {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
                .ok_or_else(|| format!("{name} missing in {path}"))
        };
        Ok(Self {
            current: field("VmRSS")?,
            peak: field("VmHWM")?,
        })
    }

    /// The memory of the calling process.
    ///
    /// # Errors
    /// As [`Rss::of`].
    pub fn own() -> Result<Self, String> {
        Self::of(std::process::id())
    }

    /// [`Rss::current`] in KiB.
    pub fn current_kib(&self) -> u64 {
        self.current / 1024
    }

    /// [`Rss::peak`] in KiB.
    pub fn peak_kib(&self) -> u64 {
        self.peak / 1024
    }
}

/// The TCP addresses process `pid` listens on (IPv4 and IPv6), in `/proc/net` order.
///
/// # Errors
/// When the process is gone or `/proc` cannot be read.
pub fn listening_addrs(pid: u32) -> Result<Vec<SocketAddr>, String> {
    let fd_dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&fd_dir).map_err(|e| format!("reading {fd_dir}: {e}"))?;
    // A socket descriptor links to `socket:[INODE]`.
    let inodes: HashSet<String> = entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let mut addrs = Vec::new();
    for table in ["tcp", "tcp6"] {
        let path = format!("/proc/{pid}/net/{table}");
        // A kernel without IPv6 has no tcp6 table.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        addrs.extend(
            text.lines()
                .skip(1)
                .filter_map(parse_tcp_line)
                .filter(|(_, state, inode)| *state == TCP_LISTEN && inodes.contains(*inode))
                .map(|(addr, ..)| addr),
        );
    }
    Ok(addrs)
}

/// Whether this network namespace holds a TCP socket from `local` to `remote` that is still
/// open (any state but TIME_WAIT and CLOSE): for a server, whether it still holds the
/// connection of the client at `remote`.
///
/// # Errors
/// When `/proc/net/tcp` cannot be read.
pub fn tcp_connection_open(local: SocketAddr, remote: SocketAddr) -> Result<bool, String> {
    let table = if local.is_ipv4() { "tcp" } else { "tcp6" };
    let path = format!("/proc/net/{table}");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    let address = |field: &str| {
        let (ip, port) = field.split_once(':')?;
        Some(SocketAddr::new(
            parse_ip(ip)?,
            u16::from_str_radix(port, 16).ok()?,
        ))
    };
    Ok(text.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(from), Some(to), Some(state)) = (fields.get(1), fields.get(2), fields.get(3))
        else {
            return false;
        };
        address(from) == Some(local) && address(to) == Some(remote) && !["06", "07"].contains(state)
    }))
}

/// `(local address, state, inode)` of one `/proc/net/tcp{,6}` row.
fn parse_tcp_line(line: &str) -> Option<(SocketAddr, &str, &str)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (ip, port) = fields.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some((
        SocketAddr::new(parse_ip(ip)?, port),
        fields.get(3)?,
        fields.get(9)?,
    ))
}

/// The kernel prints an address as 32-bit words in host byte order, each as 8 hex digits.
fn parse_ip(hex: &str) -> Option<IpAddr> {
    let words: Option<Vec<[u8; 4]>> = (0..hex.len() / 8)
        .map(|i| {
            let word = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
            Some(word.to_ne_bytes())
        })
        .collect();
    let bytes: Vec<u8> = words?.concat();
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_is_read_and_peak_is_at_least_current() {
        let rss = Rss::own().unwrap();
        assert!(rss.current > 0);
        assert!(rss.peak >= rss.current, "{rss:?}");
        assert_eq!(rss.current_kib(), rss.current / 1024);
    }

    #[test]
    fn a_listener_of_this_process_is_found_with_its_port() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        let found = listening_addrs(std::process::id()).unwrap();
        assert!(found.contains(&v4.local_addr().unwrap()), "{found:?}");
        if let Some(v6) = v6 {
            assert!(found.contains(&v6.local_addr().unwrap()), "{found:?}");
        }
        let port = v4.local_addr().unwrap().port();
        drop(v4);
        let found = listening_addrs(std::process::id()).unwrap();
        assert!(
            found.iter().all(|a| a.port() != port),
            "a closed listener is gone: {found:?}"
        );
    }

    #[test]
    fn a_connected_socket_is_not_a_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let found = listening_addrs(std::process::id()).unwrap();
        assert!(!found.contains(&client.local_addr().unwrap()), "{found:?}");
    }

    #[test]
    fn a_missing_process_is_an_error() {
        // Pids are below 2^22 on Linux.
        assert!(Rss::of(u32::MAX).is_err());
        assert!(listening_addrs(u32::MAX).is_err());
    }
}
