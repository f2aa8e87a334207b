//! `spec.tls`: which certificates the brokers get in this pass.
//!
//! The brokers only ever mount `<cluster>-broker-tls`, which the operator
//! writes after every certificate in it passed [`crate::pki`]'s checks. So a
//! source Secret edited to garbage (or a certificate from the wrong CA)
//! stops the pass with a condition, and the brokers keep running on the
//! last good certificates: nothing is applied half-way.
//!
//! Three sources:
//! - the operator's CA (`spec.tls: {}`): `<cluster>-ca` is created once;
//!   each broker gets its own certificate (its headless name and the
//!   Service names), the operator a client certificate; each is reissued
//!   when missing, unusable, signed by another CA or due for renewal.
//! - `spec.tls.secretName`: a `kubernetes.io/tls` Secret with `tls.crt`,
//!   `tls.key` and `ca.crt`, shared by every broker.
//! - `spec.tls.certManager`: the same, from the Secret cert-manager writes
//!   for the operator's Certificate; until it exists the pass waits.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;

use super::status::Problem;
use crate::builders::{self, BuildError, tls};
use crate::crd::FlyMQCluster;
use crate::pki::{self, KeyedCert};

/// Condition reason: the certificate source Secret is missing.
pub const SECRET_MISSING: &str = "TlsSecretMissing";
/// Condition reason: a certificate Secret holds something unusable.
pub const SECRET_INVALID: &str = "TlsSecretInvalid";
/// Condition reason (Progressing): cert-manager has not issued yet.
pub const WAITING: &str = "WaitingForCertificate";

/// The Secrets the pass reads.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `<cluster>-ca` (operator CA only).
    pub ca: Option<Secret>,
    /// `<cluster>-broker-tls` as the brokers have it now.
    pub brokers: Option<Secret>,
    /// `spec.tls.secretName` or cert-manager's `<cluster>-tls`.
    pub source: Option<Secret>,
}

/// What this pass does about TLS.
#[derive(Debug)]
pub enum Plan {
    /// Apply these Secrets; look again within `recheck`.
    Apply { secrets: Vec<Secret>, recheck: Duration },
    /// cert-manager has not written the Secret yet: apply the rest of the
    /// TLS objects (the Certificate), not the brokers.
    Wait(Problem),
    /// Nothing may be applied.
    Refuse(Problem),
}

fn data<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|b| b.0.as_slice())
        .filter(|b| !b.is_empty())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn keyed(secret: &Secret, cert_key: &str, key_key: &str) -> Option<KeyedCert> {
    Some(KeyedCert {
        cert: text(data(secret, cert_key)?),
        key: zeroize::Zeroizing::new(text(data(secret, key_key)?)),
    })
}

fn build(e: BuildError) -> Problem {
    Problem {
        reason: "InvalidSpec",
        message: e.to_string(),
    }
}

fn issue_failed(e: pki::IssueError) -> Problem {
    Problem {
        reason: "CertificateIssueFailed",
        message: e.to_string(),
    }
}

/// The plan for `cluster` with `entries` brokers (`<cluster>-0` ..), at `now`.
pub fn plan(cluster: &FlyMQCluster, observed: &Observed, brokers: i32, now: SystemTime) -> Plan {
    if cluster.spec.tls.is_none() {
        return Plan::Apply {
            secrets: Vec::new(),
            recheck: Duration::MAX,
        };
    }
    let result = match tls::source_secret_name(cluster) {
        None => own_ca(cluster, observed, brokers, now),
        Some(source) => from_source(cluster, observed, &source, brokers, now),
    };
    match result {
        Ok(plan) => plan,
        Err(problem) => Plan::Refuse(problem),
    }
}

fn pods(name: &str, brokers: i32) -> impl Iterator<Item = String> + '_ {
    (0..brokers.max(1)).map(move |i| format!("{name}-{i}"))
}

/// `spec.tls: {}`: the operator's CA.
fn own_ca(cluster: &FlyMQCluster, observed: &Observed, brokers: i32, now: SystemTime) -> Result<Plan, Problem> {
    let (ns, name) = builders::ns_name(cluster).map_err(build)?;
    let ca_name = tls::ca_secret_name(&name);
    let (ca, new_ca) = match &observed.ca {
        None => {
            let ca = pki::new_ca(&format!("FlyMQ {ns}/{name} CA"), now).map_err(issue_failed)?;
            (ca, true)
        }
        Some(secret) => {
            let ca = keyed(secret, tls::CA_CERT_KEY, tls::CA_KEY_KEY).ok_or_else(|| Problem {
                reason: SECRET_INVALID,
                message: format!(
                    "Secret {ns}/{ca_name} has no '{}' and '{}'; nothing was applied and the brokers keep their \
                     certificates: delete the Secret to have the operator create a new CA (clients must then \
                     trust the new {})",
                    tls::CA_CERT_KEY,
                    tls::CA_KEY_KEY,
                    tls::bundle_secret_name(&name)
                ),
            })?;
            pki::check_ca(&ca, now).map_err(|reason| Problem {
                reason: SECRET_INVALID,
                message: format!(
                    "Secret {ns}/{ca_name} does not hold a usable CA: {reason}; nothing was applied and the brokers \
                     keep their certificates: delete the Secret to have the operator create a new CA (clients \
                     must then trust the new {})",
                    tls::bundle_secret_name(&name)
                ),
            })?;
            (ca, false)
        }
    };
    let mut entries = Vec::new();
    let mut recheck = Duration::MAX;
    let wanted = pods(&name, brokers)
        .map(|pod| {
            let dns = tls::pod_dns_names(&ns, &name, &pod);
            (pod, dns)
        })
        // The operator's certificate is a client certificate only: no name.
        .chain(std::iter::once((tls::OPERATOR_ENTRY.to_string(), Vec::new())));
    for (entry, dns) in wanted {
        let (crt, key) = tls::entry_keys(&entry);
        let current = observed.brokers.as_ref().and_then(|s| keyed(s, &crt, &key));
        let reusable = current.and_then(|c| {
            let info = pki::check_cert(c.cert.as_bytes(), c.key.as_bytes(), ca.cert.as_bytes(), now).ok()?;
            (!info.due(now)).then_some((c, info))
        });
        let (cert, info) = match reusable {
            Some(found) => found,
            None => {
                // The common name is never a valid FlyMQ user name (it has
                // spaces), so a broker certificate cannot log in as a user.
                let cert = pki::issue(&ca, &format!("flymq {entry}"), &dns, now).map_err(issue_failed)?;
                let info = pki::check_cert(cert.cert.as_bytes(), cert.key.as_bytes(), ca.cert.as_bytes(), now)
                    .map_err(|reason| Problem {
                        reason: "CertificateIssueFailed",
                        message: format!("a certificate just issued for {entry} fails its check: {reason}"),
                    })?;
                (cert, info)
            }
        };
        recheck = recheck.min(info.renew_in(now));
        entries.push((entry, cert));
    }
    let mut secrets = Vec::new();
    if new_ca {
        secrets.push(tls::ca_secret(cluster, &ca).map_err(build)?);
    }
    secrets.push(tls::broker_secret(cluster, &ca.cert, &entries).map_err(build)?);
    secrets.push(tls::bundle_secret(cluster, &ca.cert).map_err(build)?);
    Ok(Plan::Apply { secrets, recheck })
}

/// `spec.tls.secretName` / `certManager`: one certificate for every broker.
fn from_source(
    cluster: &FlyMQCluster,
    observed: &Observed,
    source: &str,
    brokers: i32,
    now: SystemTime,
) -> Result<Plan, Problem> {
    let (ns, name) = builders::ns_name(cluster).map_err(build)?;
    let by_cert_manager = cluster.spec.tls.as_ref().is_some_and(|t| t.cert_manager.is_some());
    let Some(secret) = &observed.source else {
        if by_cert_manager {
            return Ok(Plan::Wait(Problem {
                reason: WAITING,
                message: format!(
                    "waiting for cert-manager to issue Certificate {ns}/{source} into Secret {ns}/{source}; the \
                     brokers start once it exists"
                ),
            }));
        }
        return Err(Problem {
            reason: SECRET_MISSING,
            message: format!(
                "spec.tls.secretName names Secret {ns}/{source}, which does not exist; nothing was applied: create \
                 it (kubernetes.io/tls with tls.crt, tls.key and ca.crt)"
            ),
        });
    };
    let invalid = |reason: String| Problem {
        reason: SECRET_INVALID,
        message: format!(
            "Secret {ns}/{source} {reason}; nothing was applied and the brokers keep their current certificates: \
             fix the Secret (tls.crt, tls.key and ca.crt, the certificate signed by ca.crt)"
        ),
    };
    let field = |key: &str| data(secret, key).ok_or_else(|| invalid(format!("has no '{key}' (or it is empty)")));
    let (cert, key, ca) = (field("tls.crt")?, field("tls.key")?, field(tls::CA_CERT_KEY)?);
    let info = pki::check_cert(cert, key, ca, now).map_err(|reason| invalid(format!("is unusable: {reason}")))?;
    let shared = KeyedCert {
        cert: text(cert),
        key: zeroize::Zeroizing::new(text(key)),
    };
    let entries: Vec<(String, KeyedCert)> = pods(&name, brokers)
        .chain(std::iter::once(tls::OPERATOR_ENTRY.to_string()))
        .map(|entry| (entry, shared.clone()))
        .collect();
    let ca = text(ca);
    let secrets = vec![
        tls::broker_secret(cluster, &ca, &entries).map_err(build)?,
        tls::bundle_secret(cluster, &ca).map_err(build)?,
    ];
    // Renewal is the source's job (its change triggers a pass); look again
    // at least when it should have happened.
    Ok(Plan::Apply {
        secrets,
        recheck: info.renew_in(now).max(Duration::from_secs(3600)),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use serde_json::json;

    use super::*;
    use crate::builders::test_support::cluster;

    fn secret_of(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    fn applied(plan: Plan) -> (Vec<Secret>, Duration) {
        match plan {
            Plan::Apply { secrets, recheck } => (secrets, recheck),
            other => panic!("expected secrets, got {other:?}"),
        }
    }

    fn named<'a>(secrets: &'a [Secret], name: &str) -> &'a Secret {
        secrets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name} not planned"))
    }

    fn value(secret: &Secret, key: &str) -> String {
        text(data(secret, key).unwrap_or_else(|| panic!("no {key}")))
    }

    #[test]
    fn own_ca_issues_one_certificate_per_broker_and_reuses_them() {
        let c = cluster(json!({"tls": {}}));
        let now = SystemTime::now();
        let (secrets, recheck) = applied(plan(&c, &Observed::default(), 3, now));
        assert!(recheck > Duration::from_secs(59 * 24 * 3600), "{recheck:?}");
        let ca = named(&secrets, "demo-ca");
        let brokers = named(&secrets, "demo-broker-tls");
        let bundle = named(&secrets, "demo-ca-bundle");
        let ca_pem = value(ca, "ca.crt");
        assert_eq!(value(bundle, "ca.crt"), ca_pem);
        assert_eq!(
            bundle.data.as_ref().map(BTreeMap::len),
            Some(1),
            "the bundle holds no key"
        );
        for entry in ["demo-0", "demo-1", "demo-2", "operator"] {
            let cert = value(brokers, &format!("{entry}.crt"));
            let key = value(brokers, &format!("{entry}.key"));
            pki::check_cert(cert.as_bytes(), key.as_bytes(), ca_pem.as_bytes(), now).expect("valid");
        }
        assert!(data(brokers, "demo-3.crt").is_none());

        // Next pass with those Secrets stored: nothing is reissued, and the
        // CA Secret is not rewritten.
        let observed = Observed {
            ca: Some(ca.clone()),
            brokers: Some(brokers.clone()),
            source: None,
        };
        let (again, _) = applied(plan(&c, &observed, 4, now));
        assert!(again.iter().all(|s| s.metadata.name.as_deref() != Some("demo-ca")));
        let brokers2 = named(&again, "demo-broker-tls");
        assert_eq!(value(brokers2, "demo-1.crt"), value(brokers, "demo-1.crt"));
        assert!(
            data(brokers2, "demo-3.crt").is_some(),
            "a new broker gets a certificate"
        );

        // Close to expiry: reissued.
        let later = now + pki::CERT_VALIDITY - pki::RENEW_BEFORE + Duration::from_secs(3600);
        let (renewed, _) = applied(plan(&c, &observed, 3, later));
        assert_ne!(
            value(named(&renewed, "demo-broker-tls"), "demo-1.crt"),
            value(brokers, "demo-1.crt")
        );

        // A broker certificate edited to garbage is simply reissued.
        let mut edited = brokers.clone();
        edited
            .data
            .as_mut()
            .expect("data")
            .insert("demo-0.crt".into(), ByteString(b"garbage".to_vec()));
        let observed = Observed {
            brokers: Some(edited),
            ..observed
        };
        let (fixed, _) = applied(plan(&c, &observed, 3, now));
        let cert = value(named(&fixed, "demo-broker-tls"), "demo-0.crt");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    }

    #[test]
    fn a_ca_secret_edited_to_garbage_is_refused_and_names_no_secret() {
        let c = cluster(json!({"tls": {}}));
        let observed = Observed {
            ca: Some(secret_of(&[
                ("ca.crt", "garbage"),
                ("ca.key", "-----BEGIN PRIVATE KEY-----hush"),
            ])),
            ..Observed::default()
        };
        match plan(&c, &observed, 3, SystemTime::now()) {
            Plan::Refuse(p) => {
                assert_eq!(p.reason, SECRET_INVALID);
                assert!(
                    p.message.starts_with(
                        "Secret prod/demo-ca does not hold a usable CA: CA certificate is not a PEM certificate; \
                         nothing was applied"
                    ),
                    "{}",
                    p.message
                );
                assert!(!p.message.contains("hush"));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_source_secret_is_checked_before_it_is_copied() {
        let now = SystemTime::now();
        let ca = pki::new_ca("user CA", now).expect("ca");
        let leaf = pki::issue(&ca, "brokers", &["demo.prod.svc".into()], now).expect("leaf");
        let c = cluster(json!({"tls": {"secretName": "mine"}}));
        let good = secret_of(&[("tls.crt", &leaf.cert), ("tls.key", &leaf.key), ("ca.crt", &ca.cert)]);
        let (secrets, _) = applied(plan(
            &c,
            &Observed {
                source: Some(good),
                ..Observed::default()
            },
            2,
            now,
        ));
        let brokers = named(&secrets, "demo-broker-tls");
        assert_eq!(value(brokers, "demo-1.crt"), leaf.cert);
        assert_eq!(value(brokers, "operator.key"), *leaf.key);
        assert_eq!(value(named(&secrets, "demo-ca-bundle"), "ca.crt"), ca.cert);

        let refused = |source: Option<Secret>| match plan(
            &c,
            &Observed {
                source,
                ..Observed::default()
            },
            2,
            now,
        ) {
            Plan::Refuse(p) => p,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let p = refused(None);
        assert_eq!(p.reason, SECRET_MISSING);
        let p = refused(Some(secret_of(&[
            ("tls.crt", "garbage"),
            ("tls.key", &leaf.key),
            ("ca.crt", &ca.cert),
        ])));
        assert_eq!(p.reason, SECRET_INVALID);
        assert!(
            p.message.starts_with(
                "Secret prod/mine is unusable: certificate is not a PEM certificate; nothing was applied and the \
                 brokers keep their current certificates"
            ),
            "{}",
            p.message
        );
        let other = pki::new_ca("other", now).expect("ca");
        let p = refused(Some(secret_of(&[
            ("tls.crt", &leaf.cert),
            ("tls.key", &leaf.key),
            ("ca.crt", &other.cert),
        ])));
        assert!(p.message.contains("not signed by the CA in ca.crt"), "{}", p.message);
        let p = refused(Some(secret_of(&[("tls.crt", &leaf.cert), ("tls.key", &leaf.key)])));
        assert!(p.message.contains("has no 'ca.crt'"), "{}", p.message);
        assert!(!p.message.contains("PRIVATE KEY"));
    }

    #[test]
    fn cert_manager_not_issued_yet_waits() {
        let c = cluster(json!({"tls": {"certManager": {"issuerRef": {"name": "ca"}}}}));
        match plan(&c, &Observed::default(), 3, SystemTime::now()) {
            Plan::Wait(p) => assert_eq!(p.reason, WAITING),
            other => panic!("expected a wait, got {other:?}"),
        }
    }
}
