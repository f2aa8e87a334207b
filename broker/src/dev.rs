//! `flymq dev`: a local cluster of N brokers in one process, on loopback
//! addresses 127.0.0.2, 127.0.0.3, ... with the standard ports on each.
//!
//! The brokers authenticate each other with a cluster secret drawn at
//! random for this run (it never leaves the process). With `--secure` they
//! also get a throwaway CA and per-node certificates (rcgen) in
//! `<dir>/tls/`, TLS on every port, mutual TLS between brokers, and auth
//! enabled with a generated admin password in `<dir>/tls/admin-password`.

use std::io::Write;
use std::path::{Path, PathBuf};

use flymq_security::tls::grpc::ClusterSecret;
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use thiserror::Error;

use crate::config::{Config, TlsClientAuth};
use crate::secrets::Secrets;

/// Why the dev cluster could not be prepared.
#[derive(Debug, Error)]
pub enum DevError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot generate the dev certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{0}")]
    Secrets(#[from] crate::secrets::SecretsError),
}

/// Files of a `--secure` dev cluster.
#[derive(Debug, Clone)]
pub struct DevPki {
    pub dir: PathBuf,
    /// The CA clients must trust (`--tls-ca`).
    pub ca_file: PathBuf,
    /// A client certificate and key with common name `admin` (mutual TLS).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// First line: the bootstrap admin's password.
    pub admin_password_file: PathBuf,
}

/// One dev broker: its configuration and secrets.
pub struct DevNode {
    pub config: Config,
    pub secrets: Secrets,
}

/// The loopback address of dev node `i`.
pub fn host(i: u8) -> String {
    format!("127.0.0.{}", u16::from(i) + 2)
}

/// A random cluster secret (64 hex characters).
pub fn random_cluster_secret() -> ClusterSecret {
    let bytes: [u8; 32] = rand::rng().random();
    let text = zeroize::Zeroizing::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    // 64 hex characters always make a valid secret.
    ClusterSecret::new(&text).unwrap_or_else(|_| unreachable!("64 hex characters are a valid cluster secret"))
}

/// The configurations and secrets of `nodes` brokers with their data under
/// `dir`, sharing one random cluster secret; with `secure`, TLS everywhere
/// (certificates written to `dir/tls`).
pub fn prepare(
    base: &Config,
    nodes: u8,
    dir: &Path,
    secure: bool,
    env: &[(String, String)],
) -> Result<(Vec<DevNode>, Option<DevPki>), DevError> {
    let seeds: Vec<String> = (0..nodes).map(|i| format!("{}:9093", host(i))).collect();
    let pki = if secure { Some(write_pki(dir, nodes)?) } else { None };
    let secret = random_cluster_secret();
    let mut out = Vec::new();
    for i in 0..nodes {
        let mut config = Config {
            node_id: u32::from(i),
            data_dir: dir.join(format!("node-{i}")),
            bind_addr: format!("{}:9092", host(i)),
            cluster_addr: format!("{}:9093", host(i)),
            metrics_addr: format!("{}:9094", host(i)),
            health_addr: format!("{}:9095", host(i)),
            admin_addr: format!("{}:9096", host(i)),
            advertise_addr: None,
            advertise_cluster: None,
            seeds: seeds.join(","),
            ..base.clone()
        };
        if let Some(pki) = &pki {
            config.tls_enabled = true;
            config.tls_cert_file = Some(pki.dir.join(format!("node-{i}.crt")));
            config.tls_key_file = Some(pki.dir.join(format!("node-{i}.key")));
            config.tls_ca_file = Some(pki.ca_file.clone());
            config.tls_client_auth = TlsClientAuth::Optional;
            config.auth_enabled = true;
            config.admin_password_file = Some(pki.admin_password_file.clone());
        }
        // The admin password may come from the environment; the generated
        // file is used otherwise.
        let env: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| k != crate::secrets::CLUSTER_SECRET_ENV)
            .cloned()
            .collect();
        if env
            .iter()
            .any(|(k, v)| k == crate::secrets::ADMIN_PASSWORD_ENV && !v.is_empty())
        {
            config.admin_password_file = None;
        }
        let mut secrets = Secrets::load(&config, env)?;
        secrets.cluster_secret = Some(secret.clone());
        out.push(DevNode { config, secrets });
    }
    Ok((out, pki))
}

fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), DevError> {
    let err = |source| DevError::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents).map_err(err)
}

/// Generates (or keeps, when complete from an earlier run) the CA, one
/// certificate per node (names: `127.0.0.x`, `localhost`, `node-<i>`), an
/// `admin` client certificate and the admin password.
pub fn write_pki(dir: &Path, nodes: u8) -> Result<DevPki, DevError> {
    let tls = dir.join("tls");
    let pki = DevPki {
        ca_file: tls.join("ca.crt"),
        client_cert: tls.join("client.crt"),
        client_key: tls.join("client.key"),
        admin_password_file: tls.join("admin-password"),
        dir: tls.clone(),
    };
    let node_files = (0..nodes).flat_map(|i| [tls.join(format!("node-{i}.crt")), tls.join(format!("node-{i}.key"))]);
    let mut wanted = vec![
        pki.ca_file.clone(),
        pki.client_cert.clone(),
        pki.client_key.clone(),
        pki.admin_password_file.clone(),
    ];
    wanted.extend(node_files);
    if wanted.iter().all(|p| p.is_file()) {
        return Ok(pki);
    }
    std::fs::create_dir_all(&tls).map_err(|source| DevError::Write {
        path: tls.clone(),
        source,
    })?;

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name.push(DnType::CommonName, "FlyMQ dev CA");
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    write_file(&pki.ca_file, ca_cert.pem().as_bytes(), false)?;

    let leaf = |cn: &str, names: Vec<String>| -> Result<(String, String), DevError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    for i in 0..nodes {
        let (cert, key) = leaf(
            &format!("node-{i}"),
            vec![host(i), "localhost".into(), format!("node-{i}")],
        )?;
        write_file(&tls.join(format!("node-{i}.crt")), cert.as_bytes(), false)?;
        write_file(&tls.join(format!("node-{i}.key")), key.as_bytes(), true)?;
    }
    let (cert, key) = leaf("admin", vec!["admin".into()])?;
    write_file(&pki.client_cert, cert.as_bytes(), false)?;
    write_file(&pki.client_key, key.as_bytes(), true)?;
    let password: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    write_file(&pki.admin_password_file, format!("{password}\n").as_bytes(), true)?;
    Ok(pki)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn secure_dev_nodes_get_tls_auth_and_one_secret() {
        let dir = tempfile::tempdir().expect("tmp");
        let (nodes, pki) = prepare(&Config::default(), 3, dir.path(), true, &[]).expect("prepare");
        let pki = pki.expect("pki");
        assert_eq!(nodes.len(), 3);
        for (i, node) in nodes.iter().enumerate() {
            let c = &node.config;
            assert!(c.tls_enabled && c.auth_enabled && c.is_cluster());
            assert_eq!(c.bind_addr, format!("127.0.0.{}:9092", i + 2));
            c.validate().expect("valid");
            assert!(node.secrets.cluster_secret.is_some());
            assert!(node.secrets.admin_password.is_some());
            let tls = crate::tls::BrokerTls::from_config(c)
                .expect("certificates load")
                .expect("TLS on");
            assert!(tls.cluster.is_some());
        }
        // The files are kept on the next run (clients keep trusting the CA).
        let ca = std::fs::read(&pki.ca_file).expect("ca");
        write_pki(dir.path(), 3).expect("again");
        assert_eq!(std::fs::read(&pki.ca_file).expect("ca"), ca);
        // Not secure: no TLS, still a secret.
        let (plain, none) = prepare(&Config::default(), 2, dir.path(), false, &[]).expect("prepare");
        assert!(none.is_none() && !plain[0].config.tls_enabled && plain[1].secrets.cluster_secret.is_some());
    }
}
