//! The operator's certificate authority (`spec.tls: {}`): one CA per
//! FlyMQCluster, the broker and operator certificates it signs, and the
//! checks every certificate passes before brokers are given it, whether
//! issued here or read from a Secret someone else wrote (`spec.tls.secretName`,
//! cert-manager).
//!
//! Keys are ECDSA P-256. Certificates are valid for [`CERT_VALIDITY`] and
//! renewed [`RENEW_BEFORE`] their end; the CA lasts [`CA_VALIDITY`].

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

/// Lifetime of an operator CA.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Lifetime of a broker or operator certificate.
pub const CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// A certificate with less than this left is renewed.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Certificates start this long before they are issued (clock skew).
const BACKDATE: Duration = Duration::from_secs(3600);

/// A PEM certificate (chain) and its PEM private key. `Debug` never shows
/// the key, and the key is wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyedCert {
    /// PEM certificate, end entity first.
    pub cert: String,
    /// PEM private key.
    pub key: Zeroizing<String>,
}

impl fmt::Debug for KeyedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCert")
            .field("cert", &format!("{} bytes of PEM", self.cert.len()))
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Why a certificate cannot be issued (a bug or an exhausted system RNG:
/// the inputs are the operator's own).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot issue a certificate: {0}")]
pub struct IssueError(String);

impl From<rcgen::Error> for IssueError {
    fn from(e: rcgen::Error) -> Self {
        IssueError(e.to_string())
    }
}

fn validity(params: &mut CertificateParams, now: SystemTime, lifetime: Duration) {
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + lifetime).into();
}

/// A new self-signed CA named `common_name`.
pub fn new_ca(common_name: &str, now: SystemTime) -> Result<KeyedCert, IssueError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, now, CA_VALIDITY);
    let cert = params.self_signed(&key)?;
    Ok(KeyedCert {
        cert: cert.pem(),
        key: Zeroizing::new(key.serialize_pem()),
    })
}

/// A certificate for `dns_names`, signed by `ca`, usable both as a server
/// and as a client certificate (brokers dial each other with mutual TLS).
pub fn issue(
    ca: &KeyedCert,
    common_name: &str,
    dns_names: &[String],
    now: SystemTime,
) -> Result<KeyedCert, IssueError> {
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let mut params = CertificateParams::new(dns_names.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, now, CERT_VALIDITY);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(KeyedCert {
        cert: cert.pem(),
        key: Zeroizing::new(key.serialize_pem()),
    })
}

/// What the checks learnt about a usable certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertInfo {
    /// End of validity.
    pub not_after: SystemTime,
}

impl CertInfo {
    /// Time left before the certificate should be renewed (zero if due).
    pub fn renew_in(&self, now: SystemTime) -> Duration {
        self.not_after
            .duration_since(now)
            .unwrap_or_default()
            .saturating_sub(RENEW_BEFORE)
    }

    /// Whether it is due for renewal.
    pub fn due(&self, now: SystemTime) -> bool {
        self.renew_in(now).is_zero()
    }
}

/// DER of the first CERTIFICATE block of `pem`.
fn first_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    let certs = flymq_security::tls::parse_certificates("certificate", std::path::Path::new("-"), pem)
        .map_err(|_| "is not a PEM certificate".to_string())?;
    Ok(certs[0].as_ref().to_vec())
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| format!("cannot be parsed as X.509 ({e})"))
}

fn not_after(cert: &X509Certificate<'_>) -> SystemTime {
    let secs = cert.validity().not_after.timestamp();
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

fn check_validity(cert: &X509Certificate<'_>, now: SystemTime) -> Result<(), String> {
    let unix = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    let unix = i64::try_from(unix).unwrap_or(i64::MAX);
    let v = cert.validity();
    if unix < v.not_before.timestamp() {
        return Err(format!("is not valid before {}", v.not_before));
    }
    if unix > v.not_after.timestamp() {
        return Err(format!("expired on {}", v.not_after));
    }
    Ok(())
}

/// Whether the PEM private key `key_pem` belongs to `cert` (compares the
/// public keys; errors never show key material).
fn check_key(cert: &X509Certificate<'_>, key_pem: &[u8]) -> Result<(), String> {
    let key = flymq_security::tls::parse_private_key(std::path::Path::new("-"), key_pem)
        .map_err(|_| "private key is not a PEM private key".to_string())?;
    let signing = flymq_security::tls::crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|_| "private key is of an unsupported type".to_string())?;
    let public = signing
        .public_key()
        .ok_or_else(|| "private key's public half cannot be derived".to_string())?;
    if public.as_ref() != cert.public_key().raw {
        return Err("private key does not belong to the certificate".into());
    }
    Ok(())
}

/// Checks a CA: a parseable CA certificate, currently valid, whose key is
/// the one given.
pub fn check_ca(ca: &KeyedCert, now: SystemTime) -> Result<CertInfo, String> {
    let der = first_der(ca.cert.as_bytes()).map_err(|e| format!("CA certificate {e}"))?;
    let cert = parse(&der).map_err(|e| format!("CA certificate {e}"))?;
    if !cert.is_ca() {
        return Err("CA certificate is not a CA (no basicConstraints CA:TRUE)".into());
    }
    check_validity(&cert, now).map_err(|e| format!("CA certificate {e}"))?;
    check_key(&cert, ca.key.as_bytes())?;
    Ok(CertInfo {
        not_after: not_after(&cert),
    })
}

/// Checks a broker certificate: parseable, signed by one of the
/// certificates in `ca_pem`, currently valid, and `key_pem` is its key.
pub fn check_cert(cert_pem: &[u8], key_pem: &[u8], ca_pem: &[u8], now: SystemTime) -> Result<CertInfo, String> {
    let der = first_der(cert_pem).map_err(|e| format!("certificate {e}"))?;
    let cert = parse(&der).map_err(|e| format!("certificate {e}"))?;
    let cas = flymq_security::tls::parse_certificates("CA certificate", std::path::Path::new("-"), ca_pem)
        .map_err(|_| "CA bundle is not a PEM certificate".to_string())?;
    let signed = cas.iter().any(|ca_der| {
        X509Certificate::from_der(ca_der.as_ref())
            .ok()
            .is_some_and(|(_, ca)| cert.verify_signature(Some(ca.public_key())).is_ok())
    });
    if !signed {
        return Err("certificate is not signed by the CA in ca.crt".into());
    }
    check_validity(&cert, now).map_err(|e| format!("certificate {e}"))?;
    check_key(&cert, key_pem)?;
    Ok(CertInfo {
        not_after: not_after(&cert),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        SystemTime::now()
    }

    fn names() -> Vec<String> {
        vec!["demo-0.demo-headless.ns.svc".into(), "demo.ns.svc".into()]
    }

    #[test]
    fn a_certificate_issued_by_the_ca_passes_every_check() {
        let ca = new_ca("flymq ns/demo CA", now()).expect("ca");
        let info = check_ca(&ca, now()).expect("valid CA");
        assert!(info.not_after > now() + CA_VALIDITY - Duration::from_secs(86_400));
        let leaf = issue(&ca, "flymq broker demo-0", &names(), now()).expect("leaf");
        let info = check_cert(leaf.cert.as_bytes(), leaf.key.as_bytes(), ca.cert.as_bytes(), now()).expect("valid");
        assert!(!info.due(now()), "a fresh certificate is not due");
        assert!(info.due(now() + CERT_VALIDITY - RENEW_BEFORE + Duration::from_secs(60)));
        let x = first_der(leaf.cert.as_bytes()).expect("der");
        let parsed = parse(&x).expect("parses");
        let sans: Vec<String> = parsed
            .subject_alternative_name()
            .expect("san")
            .expect("present")
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            sans,
            vec!["DNSName(demo-0.demo-headless.ns.svc)", "DNSName(demo.ns.svc)"]
        );
    }

    #[test]
    fn wrong_ca_wrong_key_garbage_and_expiry_are_named() {
        let ca = new_ca("a", now()).expect("ca");
        let other = new_ca("b", now()).expect("ca");
        let leaf = issue(&ca, "x", &names(), now()).expect("leaf");
        let stranger = issue(&other, "x", &names(), now()).expect("leaf");
        let check =
            |cert: &str, key: &str, ca: &str, at| check_cert(cert.as_bytes(), key.as_bytes(), ca.as_bytes(), at);
        assert_eq!(
            check(&leaf.cert, &leaf.key, &other.cert, now()),
            Err("certificate is not signed by the CA in ca.crt".into())
        );
        assert_eq!(
            check(&leaf.cert, &stranger.key, &ca.cert, now()),
            Err("private key does not belong to the certificate".into())
        );
        assert_eq!(
            check("garbage", &leaf.key, &ca.cert, now()),
            Err("certificate is not a PEM certificate".into())
        );
        assert_eq!(
            check(&leaf.cert, "garbage", &ca.cert, now()),
            Err("private key is not a PEM private key".into())
        );
        let later = now() + CERT_VALIDITY + Duration::from_secs(7200);
        let expired = check(&leaf.cert, &leaf.key, &ca.cert, later).expect_err("expired");
        assert!(expired.starts_with("certificate expired on"), "{expired}");
        // A leaf is not a CA.
        let err = check_ca(&leaf, now()).expect_err("not a CA");
        assert!(err.contains("is not a CA"), "{err}");
        let mixed = KeyedCert {
            cert: ca.cert.clone(),
            key: other.key.clone(),
        };
        assert_eq!(
            check_ca(&mixed, now()),
            Err("private key does not belong to the certificate".into())
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let ca = new_ca("a", now()).expect("ca");
        let shown = format!("{ca:?}");
        assert!(
            !shown.contains("PRIVATE KEY") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
