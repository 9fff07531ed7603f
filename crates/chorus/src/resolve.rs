//! Host names to addresses, at each dial and at start (containers and pods change addresses
//! across restarts, so a name is never resolved once for good).
//!
//! The system's resolver (getaddrinfo) first; when it fails for a name, a resolver of our own
//! (hickory: /etc/hosts, then the name servers of /etc/resolv.conf, no cache). A statically
//! linked binary's getaddrinfo cannot load glibc's NSS modules, so in the image built `FROM
//! scratch` (scripts/build-image.sh) only the second one works: it is what makes `node-2:7101`
//! or `chorus-1.chorus.default.svc:7101` usable there.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use hickory_resolver::TokioResolver;

fn own_resolver() -> Result<&'static TokioResolver, String> {
    static RESOLVER: OnceLock<Result<TokioResolver, String>> = OnceLock::new();
    RESOLVER
        .get_or_init(|| {
            let mut b =
                TokioResolver::builder_tokio().map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))?;
            // Every dial asks again: a pod's new address must be seen at the next dial.
            b.options_mut().cache_size = 0;
            b.build().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The addresses of `host:port` (an IP address, `[v6]`, or a name).
pub async fn lookup(addr: &str) -> io::Result<Vec<SocketAddr>> {
    let (host, port) =
        crate::config::host_port(addr).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let system = match tokio::net::lookup_host(addr).await {
        Ok(found) => {
            let v: Vec<SocketAddr> = found.collect();
            if !v.is_empty() {
                return Ok(v);
            }
            "no address".to_string()
        }
        Err(e) => e.to_string(),
    };
    let resolver = own_resolver().map_err(|e| {
        io::Error::other(format!("cannot resolve {host}: the system's resolver said {system}; {e}"))
    })?;
    match resolver.lookup_ip(bare).await {
        Ok(ips) => {
            let v: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(ip, port)).collect();
            if v.is_empty() {
                Err(io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")))
            } else {
                Ok(v)
            }
        }
        Err(e) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("cannot resolve {host}: the system's resolver said {system}; DNS said {e}"),
        )),
    }
}

/// Connects to the first address of `addr` that answers.
pub async fn connect(addr: &str) -> io::Result<tokio::net::TcpStream> {
    first(addr, tokio::net::TcpStream::connect).await
}

/// Binds a listener to the first address of `addr` that takes it.
pub async fn bind(addr: &str) -> io::Result<tokio::net::TcpListener> {
    first(addr, tokio::net::TcpListener::bind).await
}

/// `f` on each address of `addr` in turn, until one succeeds; else the last error.
async fn first<T, F, Fut>(addr: &str, mut f: F) -> io::Result<T>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = io::Result<T>>,
{
    let mut last = None;
    for a in lookup(addr).await? {
        match f(a).await {
            Ok(x) => return Ok(x),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{addr} has no address"))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn addresses_names_and_failures() {
        assert_eq!(lookup("127.0.0.1:7001").await.unwrap(), vec!["127.0.0.1:7001".parse().unwrap()]);
        assert_eq!(lookup("[::1]:7001").await.unwrap(), vec!["[::1]:7001".parse().unwrap()]);
        // /etc/hosts names localhost on every machine this runs on.
        assert!(lookup("localhost:7001")
            .await
            .unwrap()
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 7001));
        // A name that cannot exist (RFC 6761 reserves .invalid): the error names it and both
        // resolvers' answers.
        let e = lookup("no-such-host.invalid:7001").await.unwrap_err().to_string();
        assert!(e.contains("no-such-host.invalid") && e.contains("system"), "{e}");
        assert!(lookup("not an address").await.is_err());
        let l = bind("localhost:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(connect(&format!("localhost:{port}")).await.is_ok());
    }
}
