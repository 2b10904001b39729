//! The Origin rule for `/ws`. Browsers send the page's origin with every upgrade; scripts send
//! none and are let through. A browser upgrade passes when its Origin
//!
//! - is one the operator listed in `ws.allowed_origins` (scheme, host and port all equal; `*`
//!   allows any), which is where the dashboard's public origin goes (behind a proxy, or
//!   reached by a DNS name); or
//! - is the gateway's own address, `http://{Host}`, and that Host is an IP address or
//!   `localhost`.
//!
//! The Host header alone proves nothing: a DNS-rebinding page on `http://evil.example:8000`
//! makes the browser send `Host: evil.example:8000` to the gateway with a matching Origin.
//! Names an attacker cannot register (IP literals, `localhost`) are safe to compare against
//! Host; any other name must be listed. The gateway speaks plain HTTP, so its own origin's
//! scheme is `http`; an `https` page (a TLS proxy in front) must be listed too.

/// Default port of a scheme, for comparing `http://h` with `h:80`.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Splits `host[:port]` (IPv6 in brackets) into lower-case host and optional port.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    if authority.is_empty() || authority.contains(['/', '@', ' ']) {
        return None;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        (format!("[{inner}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p.parse().ok()?)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

/// An origin in the form `scheme://host:port`, lower case, port always explicit; `None` when
/// `origin` is not of the form `scheme://host[:port]` (a path or `null` is not an origin).
pub fn normalize_origin(origin: &str) -> Option<String> {
    let (scheme, authority) = origin.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return None;
    }
    let (host, port) = split_authority(authority.strip_suffix('/').unwrap_or(authority))?;
    let port = port.or_else(|| default_port(&scheme))?;
    Some(format!("{scheme}://{host}:{port}"))
}

/// Whether an upgrade with this `Origin` (if any) may proceed, given the request's `Host`
/// header and the origins of `ws.allowed_origins`.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    if allowed.iter().any(|a| a == "*") {
        return true;
    }
    let Some(origin) = normalize_origin(origin) else {
        return false;
    };
    let own_address = host
        .filter(|host| is_address(host))
        .map(|host| format!("http://{host}"));
    (allowed.iter().map(String::as_str))
        .chain(own_address.as_deref())
        .filter_map(normalize_origin)
        .any(|allowed| allowed == origin)
}

/// Whether the host of `authority` (`host[:port]`) is an IP literal or `localhost`: a name no
/// DNS-rebinding attacker can point at the gateway.
fn is_address(authority: &str) -> bool {
    split_authority(authority).is_some_and(|(host, _)| {
        host == "localhost"
            || host.parse::<std::net::Ipv4Addr>().is_ok()
            || (host.strip_prefix('[').and_then(|h| h.strip_suffix(']')))
                .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_normalize_with_explicit_ports() {
        assert_eq!(
            normalize_origin("http://Example.com").as_deref(),
            Some("http://example.com:80")
        );
        assert_eq!(
            normalize_origin("https://a.b:8443/").as_deref(),
            Some("https://a.b:8443")
        );
        assert_eq!(
            normalize_origin("http://[::1]:8000").as_deref(),
            Some("http://[::1]:8000")
        );
        for bad in [
            "null",
            "example.com",
            "http://",
            "http://a/b",
            "http://a:x",
            "",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn no_origin_is_allowed() {
        assert!(origin_allowed(None, Some("gw:8000"), &[]));
        assert!(origin_allowed(None, None, &[]));
    }

    #[test]
    fn the_gateways_own_address_is_allowed() {
        assert!(origin_allowed(
            Some("http://127.0.0.1:4321"),
            Some("127.0.0.1:4321"),
            &[]
        ));
        assert!(origin_allowed(
            Some("http://LOCALHOST"),
            Some("localhost:80"),
            &[]
        ));
        assert!(origin_allowed(
            Some("http://[::1]:8000"),
            Some("[::1]:8000"),
            &[]
        ));
        assert!(origin_allowed(
            Some("http://10.0.0.5:8000"),
            Some("10.0.0.5:8000"),
            &[]
        ));
    }

    #[test]
    fn a_host_name_is_not_proof_of_the_same_origin() {
        // DNS rebinding: the attacker's name resolves to the gateway, Host and Origin agree.
        assert!(!origin_allowed(
            Some("http://evil.example:8000"),
            Some("evil.example:8000"),
            &[]
        ));
        assert!(!origin_allowed(Some("http://gw"), Some("gw"), &[]));
        assert!(!origin_allowed(
            Some("http://127.0.0.1.evil.example"),
            Some("127.0.0.1.evil.example"),
            &[]
        ));
    }

    #[test]
    fn the_scheme_counts() {
        assert!(!origin_allowed(
            Some("https://127.0.0.1:8000"),
            Some("127.0.0.1:8000"),
            &[]
        ));
        assert!(!origin_allowed(
            Some("https://127.0.0.1"),
            Some("127.0.0.1:443"),
            &[]
        ));
        let listed = vec!["https://dash.example".to_owned()];
        assert!(origin_allowed(
            Some("https://dash.example"),
            Some("gw:8000"),
            &listed
        ));
        assert!(!origin_allowed(
            Some("http://dash.example"),
            Some("dash.example"),
            &listed
        ));
    }

    #[test]
    fn other_origins_are_refused_unless_listed() {
        assert!(!origin_allowed(
            Some("http://evil.example"),
            Some("127.0.0.1:8000"),
            &[]
        ));
        assert!(!origin_allowed(
            Some("http://127.0.0.1:8001"),
            Some("127.0.0.1:8000"),
            &[]
        ));
        assert!(!origin_allowed(Some("null"), Some("127.0.0.1:8000"), &[]));
        assert!(!origin_allowed(Some("http://127.0.0.1:8000"), None, &[]));
        let allowed = vec!["http://wall.example".to_owned()];
        assert!(origin_allowed(
            Some("http://wall.example:80"),
            Some("gw:8000"),
            &allowed
        ));
        assert!(origin_allowed(
            Some("http://evil.example"),
            Some("gw:8000"),
            &["*".to_owned()]
        ));
    }
}
