//! TLS with rustls (the aws-lc-rs provider: post-quantum key exchange): on the peer links, mutual (every node shows a
//! certificate signed by the cluster's CA and checks the other's), and on client ports (the
//! store's Redis port). [`dev_certs`] makes a development CA and node certificates (rcgen), for
//! `chorus certs`.
//!
//! A dialer checks the acceptor's certificate against the host it dialed (the host part of the
//! peer's advertised `host:port`, a name or an IP address), as a browser does: a node's
//! certificate names every address peers reach it by. The acceptor checks that the dialer's
//! certificate chains to the CA; which node it is, the HMAC handshake that follows inside the
//! encrypted stream says and proves (`transport::handshake`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use thiserror::Error;
pub use tokio_rustls::TlsAcceptor;
use tokio_rustls::TlsConnector;

/// A TLS setting that cannot be used; says which file is at fault.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the {what} {path}: {source}")]
    Read {
        /// What the file was to hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind wanted.
    #[error("the {what} {path} is not usable: {why}")]
    Pem {
        /// What the file was to hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// rustls refused the certificates or key (a key that does not match its certificate, a CA
    /// that cannot verify clients).
    #[error("TLS settings refused: {0}")]
    Rustls(String),
    /// A certificate could not be made (`chorus certs`).
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    /// A file could not be written (`chorus certs`).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where a node's TLS material is: its certificate chain, its private key and the CA that signs
/// the certificates of the cluster's nodes (and clients, on a client port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate (PEM; the chain, leaf first).
    pub cert: PathBuf,
    /// This node's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificate(s) peers' certificates must chain to (PEM).
    pub ca: PathBuf,
}

/// Mutual TLS for the peer links, ready to dial and accept with.
#[derive(Clone)]
pub struct PeerTls {
    pub(crate) connector: TlsConnector,
    pub(crate) acceptor: TlsAcceptor,
    /// Where it was loaded from, for `Debug` and logs.
    source: String,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerTls({})", self.source)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_path_buf(), source })
}

fn certs(what: &'static str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |why: String| TlsError::Pem { what, path: path.to_path_buf(), why };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("{e}")))?;
    if certs.is_empty() {
        return Err(bad("it holds no PEM certificate (BEGIN CERTIFICATE)".into()));
    }
    Ok(certs)
}

fn key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        what: "private key",
        path: path.to_path_buf(),
        why: format!("{e} (a PEM private key is expected: PKCS#8, PKCS#1 or SEC1)"),
    })
}

fn roots(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs("CA certificate", path, pem)? {
        roots.add(c).map_err(|e| TlsError::Pem {
            what: "CA certificate",
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn rustls_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Rustls(e.to_string())
}

impl PeerTls {
    /// Loads the files.
    pub fn load(files: &TlsFiles) -> Result<PeerTls, TlsError> {
        let cert = read("certificate", &files.cert)?;
        let key = read("private key", &files.key)?;
        let ca = read("CA certificate", &files.ca)?;
        let mut tls = PeerTls::from_pem_at(&cert, &key, &ca, files)?;
        tls.source = format!("cert {}, CA {}", files.cert.display(), files.ca.display());
        Ok(tls)
    }

    /// From PEM text in memory (tests, benchmarks, demos).
    pub fn from_pem(cert: &[u8], key: &[u8], ca: &[u8]) -> Result<PeerTls, TlsError> {
        let files = TlsFiles { cert: "<cert>".into(), key: "<key>".into(), ca: "<ca>".into() };
        PeerTls::from_pem_at(cert, key, ca, &files)
    }

    fn from_pem_at(cert: &[u8], key_pem: &[u8], ca: &[u8], files: &TlsFiles) -> Result<PeerTls, TlsError> {
        let chain = certs("certificate", &files.cert, cert)?;
        let key = key(&files.key, key_pem)?;
        let roots = Arc::new(roots(&files.ca, ca)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(rustls_err)?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| {
                TlsError::Rustls(format!(
                    "{e} (does the key {} belong to the certificate?)",
                    files.key.display()
                ))
            })?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(rustls_err)?;
        Ok(PeerTls {
            connector: TlsConnector::from(Arc::new(client)),
            acceptor: TlsAcceptor::from(Arc::new(server)),
            source: "in memory".into(),
        })
    }
}

/// A TLS acceptor for a client port: this node's certificate and key; with `client_ca`, clients
/// must show a certificate signed by it (as Redis's `tls-auth-clients yes`).
pub fn client_acceptor(
    cert: &Path,
    key_path: &Path,
    client_ca: Option<&Path>,
) -> Result<TlsAcceptor, TlsError> {
    let chain = certs("certificate", cert, &read("certificate", cert)?)?;
    let key = key(key_path, &read("private key", key_path)?)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err)?;
    let builder = match client_ca {
        Some(ca) => {
            let roots = Arc::new(roots(ca, &read("CA certificate", ca)?)?);
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots, provider()).build().map_err(rustls_err)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let server = builder.with_single_cert(chain, key).map_err(|e| {
        TlsError::Rustls(format!("{e} (does the key {} belong to the certificate?)", key_path.display()))
    })?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The name a dialer checks the acceptor's certificate against: the host of `host:port` (an IP
/// address, `[v6]`, or a DNS name).
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let (host, _) = crate::config::host_port(addr)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} cannot be checked against a certificate: {e}"))
}

/// Says what a failed TLS handshake most likely means, for the log line.
pub(crate) fn explain(e: &std::io::Error) -> String {
    let text = e.to_string();
    let has = |w: &str| text.to_ascii_lowercase().contains(&w.to_ascii_lowercase());
    let hint = if has("CorruptMessage") || has("InvalidContentType") || has("corrupt message") {
        " (the peer does not speak TLS: does it run with plaintext = true?)"
    } else if has("UnknownIssuer") || has("BadSignature") {
        " (the certificate is not signed by this node's CA: are both nodes' tls_ca the same?)"
    } else if has("NotValidForName") || has("not valid for name") {
        " (the peer's certificate does not name the address it was dialed at: add it with `chorus certs --host`)"
    } else if has("expired") || has("not valid yet") || has("NotValidYet") {
        " (a certificate is outside its validity: renew it, or check the clock)"
    } else if has("CertificateRequired") || has("NoCertificatesPresented") {
        " (the peer presented no certificate)"
    } else {
        ""
    };
    format!("TLS: {text}{hint}")
}

/// Development certificates: a CA (made once, kept) and certificates it signs.
pub mod dev_certs {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
        Issuer, KeyPair, KeyUsagePurpose, SanType,
    };

    /// The CA's files in a directory: `ca.pem` and `ca-key.pem`.
    pub const CA_CERT: &str = "ca.pem";
    /// See [`CA_CERT`].
    pub const CA_KEY: &str = "ca-key.pem";

    /// How long made certificates are valid: the CA ten years, the others 825 days (the most a
    /// browser accepts; also a reminder that these are for development).
    const CA_DAYS: i64 = 3650;
    const LEAF_DAYS: i64 = 825;

    fn gen_err(e: impl std::fmt::Display) -> TlsError {
        TlsError::Generate(e.to_string())
    }

    fn write(path: &Path, text: &str, private: bool) -> Result<(), TlsError> {
        let io = |source| TlsError::Write { path: path.to_path_buf(), source };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let _ = private;
        use std::io::Write;
        let mut f = opts.open(path).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)
    }

    fn validity(p: &mut CertificateParams, days: i64) {
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(days);
    }

    /// What [`ensure_ca`] did.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum CaOutcome {
        /// A new CA was made.
        Made,
        /// The CA already in the directory is used.
        Kept,
    }

    /// A new CA: its issuer, its certificate and its key as PEM.
    pub fn new_ca(name: &str) -> Result<(Issuer<'static, KeyPair>, String, String), TlsError> {
        let key = KeyPair::generate().map_err(gen_err)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{name} development CA"));
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut p, CA_DAYS);
        let cert = p.self_signed(&key).map_err(gen_err)?;
        let key_pem = key.serialize_pem();
        Ok((Issuer::new(p, key), cert.pem(), key_pem))
    }

    /// The CA in `dir` (made if the directory has none): its issuer, for [`make_leaf`].
    pub fn ensure_ca(dir: &Path, name: &str) -> Result<(Issuer<'static, KeyPair>, CaOutcome), TlsError> {
        let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write { path: dir.to_path_buf(), source })?;
        if cert_path.exists() || key_path.exists() {
            let cert = String::from_utf8_lossy(&read("CA certificate", &cert_path)?).into_owned();
            let key_pem = String::from_utf8_lossy(&read("CA private key", &key_path)?).into_owned();
            let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Pem {
                what: "CA private key",
                path: key_path.clone(),
                why: e.to_string(),
            })?;
            let issuer = Issuer::from_ca_cert_pem(&cert, key).map_err(|e| TlsError::Pem {
                what: "CA certificate",
                path: cert_path.clone(),
                why: e.to_string(),
            })?;
            return Ok((issuer, CaOutcome::Kept));
        }
        let (issuer, cert, key) = new_ca(name)?;
        write(&cert_path, &cert, false)?;
        write(&key_path, &key, true)?;
        Ok((issuer, CaOutcome::Made))
    }

    /// A certificate for `name` signed by `ca`, good for both ends of a TLS connection, naming
    /// `name`, `hosts` (DNS names or IP addresses), `localhost`, `127.0.0.1` and `::1`: the
    /// certificate and its key as PEM.
    pub fn new_leaf(
        ca: &Issuer<'_, KeyPair>,
        name: &str,
        hosts: &[String],
    ) -> Result<(String, String), TlsError> {
        let mut names: Vec<String> = vec![name.to_string()];
        for h in hosts.iter().map(String::as_str).chain(["localhost", "127.0.0.1", "::1"]) {
            if !names.iter().any(|n| n == h) {
                names.push(h.to_string());
            }
        }
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        for n in &names {
            let san = match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.clone().try_into().map_err(|e| {
                    TlsError::Generate(format!("{n:?} is neither an IP address nor a DNS name: {e}"))
                })?),
            };
            p.subject_alt_names.push(san);
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut p, LEAF_DAYS);
        let key = KeyPair::generate().map_err(gen_err)?;
        let cert = p.signed_by(&key, ca).map_err(gen_err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Writes [`new_leaf`]'s certificate and key to `dir/NAME.pem` and `dir/NAME-key.pem` (the
    /// key readable by its owner only); returns the two paths.
    pub fn make_leaf(
        dir: &Path,
        ca: &Issuer<'_, KeyPair>,
        name: &str,
        hosts: &[String],
    ) -> Result<(PathBuf, PathBuf), TlsError> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(TlsError::Generate(format!("{name:?} cannot name a file")));
        }
        let (cert, key) = new_leaf(ca, name, hosts)?;
        let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem")));
        write(&cert_path, &cert, false)?;
        write(&key_path, &key, true)?;
        Ok((cert_path, key_path))
    }
}
