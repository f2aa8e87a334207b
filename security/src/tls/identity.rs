//! The identity a client certificate stands for.
//!
//! A verified client certificate maps to a FlyMQ user name: the subject's
//! common name (CN) when present, else the first DNS subject alternative
//! name. The broker then treats the connection (or gRPC call) as that user,
//! which must exist and be enabled like any other.

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::TlsError;

/// Names found in a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertIdentity {
    /// The subject's first common name.
    pub common_name: Option<String>,
    /// DNS names of the subject alternative name extension, in order.
    pub dns_names: Vec<String>,
}

impl CertIdentity {
    /// Parses the names of a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, TlsError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| TlsError::Config(format!("client certificate cannot be parsed: {e}")))?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let dns_names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Self { common_name, dns_names })
    }

    /// The identity of the first (end-entity) certificate of a peer chain,
    /// `None` when the peer sent none or it cannot be parsed.
    pub fn of_peer(chain: Option<&[CertificateDer<'_>]>) -> Option<Self> {
        chain?.first().and_then(|c| Self::from_der(c.as_ref()).ok())
    }

    /// The user name: the CN, else the first DNS SAN.
    pub fn username(&self) -> Option<&str> {
        self.common_name
            .as_deref()
            .filter(|cn| !cn.is_empty())
            .or_else(|| self.dns_names.first().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair};

    use super::*;

    #[test]
    fn common_name_first_then_dns_name() {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["svc.flymq.local".into(), "other".into()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, "alice");
        let cert = params.self_signed(&key).expect("cert");
        let id = CertIdentity::from_der(cert.der()).expect("parse");
        assert_eq!(id.common_name.as_deref(), Some("alice"));
        assert_eq!(id.dns_names, ["svc.flymq.local", "other"]);
        assert_eq!(id.username(), Some("alice"));

        let mut params = CertificateParams::new(vec!["broker-0.flymq".into()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        let cert = params.self_signed(&key).expect("cert");
        let id = CertIdentity::from_der(cert.der()).expect("parse");
        assert_eq!(id.username(), Some("broker-0.flymq"));
        assert_eq!(CertIdentity::of_peer(Some(&[cert.der().clone()])), Some(id));
        assert_eq!(CertIdentity::of_peer(None), None);
        assert!(CertIdentity::from_der(b"garbage").is_err());
    }
}
