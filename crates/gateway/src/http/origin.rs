//! The Origin rule for `/ws`: browsers may only open the WebSocket from the gateway's own
//! host or from an origin the operator listed; scripts (no Origin header) are let through.

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
/// header and the configured extra origins (`*` allows any).
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
    // Same host: the Host the browser sent the request to, with the Origin's scheme.
    let scheme = origin.split_once("://").map_or("", |(scheme, _)| scheme);
    let same_host = host.map(|host| format!("{scheme}://{host}"));
    (allowed.iter().map(String::as_str))
        .chain(same_host.as_deref())
        .filter_map(normalize_origin)
        .any(|allowed| allowed == origin)
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
    fn same_host_is_allowed() {
        assert!(origin_allowed(Some("http://gw:8000"), Some("gw:8000"), &[]));
        assert!(origin_allowed(Some("http://GW"), Some("gw"), &[]));
        assert!(origin_allowed(Some("https://gw"), Some("gw:443"), &[]));
        assert!(origin_allowed(
            Some("http://127.0.0.1:4321"),
            Some("127.0.0.1:4321"),
            &[]
        ));
    }

    #[test]
    fn other_hosts_are_refused_unless_listed() {
        assert!(!origin_allowed(
            Some("http://evil.example"),
            Some("gw:8000"),
            &[]
        ));
        assert!(!origin_allowed(
            Some("http://gw:8001"),
            Some("gw:8000"),
            &[]
        ));
        assert!(!origin_allowed(Some("null"), Some("gw:8000"), &[]));
        assert!(!origin_allowed(Some("http://gw:8000"), None, &[]));
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
