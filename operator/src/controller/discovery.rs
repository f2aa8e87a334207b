//! Optional APIs the operator can use when the cluster serves them: the
//! Prometheus Operator's `ServiceMonitor` and cert-manager's `Certificate`.
//!
//! Most clusters have neither. Whether they are served is discovered from the
//! API server (at start and on a timer, [`REFRESH`]), never assumed: a
//! reconcile reads the last answer and makes no request for a kind that is
//! not served. An API server answers a request for a resource type it does
//! not serve with HTTP 404 and the plain-text body `404 page not found`, not
//! with a `Status` of reason `NotFound`; [`unserved`] recognises that answer.

use std::sync::RwLock;
use std::time::Duration;

use kube::Client;
use kube::api::ApiResource;
use tracing::{info, warn};

use crate::builders;

/// How often the optional APIs are discovered again.
pub const REFRESH: Duration = Duration::from_secs(60);

/// Which optional APIs the API server serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// `monitoring.coreos.com/v1` `servicemonitors`.
    pub service_monitor: bool,
    /// `cert-manager.io/v1` `certificates`.
    pub certificate: bool,
}

/// The last discovery answer, shared by every reconcile.
#[derive(Debug, Default)]
pub struct OptionalApis {
    served: RwLock<Served>,
}

impl OptionalApis {
    /// Starts with `served` (tests; the operator starts with nothing served
    /// until the first discovery answers).
    pub fn new(served: Served) -> Self {
        OptionalApis {
            served: RwLock::new(served),
        }
    }

    /// What the last discovery found.
    pub fn get(&self) -> Served {
        *self.served.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, served: Served) {
        *self.served.write().unwrap_or_else(std::sync::PoisonError::into_inner) = served;
    }

    /// Discovers again; on an API error the previous answer stays and the
    /// error is returned.
    pub async fn refresh(&self, client: &Client) -> Result<Served, kube::Error> {
        let served = discover(client).await?;
        let before = self.get();
        if served != before {
            info!(
                service_monitor = served.service_monitor,
                certificate = served.certificate,
                "optional APIs discovered"
            );
        }
        self.set(served);
        Ok(served)
    }

    /// Refreshes every [`REFRESH`] until the future is dropped.
    pub async fn refresh_forever(&self, client: Client) {
        loop {
            if let Err(e) = self.refresh(&client).await {
                warn!(error = %e, "cannot discover the optional APIs (ServiceMonitor, Certificate); keeping the last answer");
            }
            tokio::time::sleep(REFRESH).await;
        }
    }
}

/// True when `e` is the API server's answer for a resource type (or group
/// version) it does not serve: 404 without a `NotFound` Status.
pub fn unserved(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 && s.reason != "NotFound")
}

/// True when the API server serves `resource` (its group version lists it).
async fn serves(client: &Client, resource: &ApiResource) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(&resource.api_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == resource.plural)),
        // Whatever the body, a 404 for a group version means it is not served.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Asks the API server which optional APIs it serves.
pub async fn discover(client: &Client) -> Result<Served, kube::Error> {
    Ok(Served {
        service_monitor: serves(client, &builders::monitoring::service_monitor_resource()).await?,
        certificate: serves(client, &builders::tls::certificate_resource()).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::mock::{Reply, client, serve, step};
    use serde_json::json;

    /// Exactly what kube-apiserver v1.32 sends for a group version it does
    /// not serve: 404, `Content-Type: text/plain; charset=utf-8`, this body.
    fn page_not_found() -> Reply {
        Reply::Text(404, "404 page not found\n")
    }

    #[tokio::test]
    async fn unserved_group_versions_are_absent_not_errors() {
        let (client, handle) = client();
        let server = tokio::spawn(serve(
            handle,
            vec![
                step("GET", "/apis/monitoring.coreos.com/v1", page_not_found()),
                step("GET", "/apis/cert-manager.io/v1", page_not_found()),
            ],
        ));
        let apis = OptionalApis::new(Served {
            service_monitor: true,
            certificate: true,
        });
        let served = apis.refresh(&client).await.expect("a 404 is an answer");
        assert_eq!(served, Served::default());
        assert_eq!(apis.get(), Served::default());
        assert_eq!(server.await.expect("server").len(), 2);
    }

    #[tokio::test]
    async fn served_kinds_are_found_in_their_group_version() {
        let (client, handle) = client();
        let list = |group_version: &str, plural: &str| {
            Reply::Json(json!({
                "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": [{"name": plural, "singularName": "", "namespaced": true, "kind": "X",
                               "verbs": ["get", "list", "create", "patch", "delete"]}]
            }))
        };
        let server = tokio::spawn(serve(
            handle,
            vec![
                step(
                    "GET",
                    "/apis/monitoring.coreos.com/v1",
                    list("monitoring.coreos.com/v1", "servicemonitors"),
                ),
                step("GET", "/apis/cert-manager.io/v1", list("cert-manager.io/v1", "issuers")),
            ],
        ));
        let served = discover(&client).await.expect("discovers");
        assert_eq!(
            served,
            Served {
                service_monitor: true,
                certificate: false
            },
            "cert-manager.io/v1 without certificates does not serve Certificates"
        );
        server.await.expect("server");
    }

    #[tokio::test]
    async fn a_failing_discovery_keeps_the_last_answer() {
        let (client, handle) = client();
        let server = tokio::spawn(serve(
            handle,
            vec![step(
                "GET",
                "/apis/monitoring.coreos.com/v1",
                Reply::Text(503, "service unavailable"),
            )],
        ));
        let apis = OptionalApis::new(Served {
            service_monitor: true,
            certificate: false,
        });
        assert!(apis.refresh(&client).await.is_err());
        assert!(apis.get().service_monitor);
        server.await.expect("server");
    }

    #[test]
    fn only_a_404_without_a_not_found_status_means_unserved() {
        let plain = kube::Error::Api(
            kube::core::Status::failure("404 page not found", "Failed to parse error data")
                .with_code(404)
                .boxed(),
        );
        assert!(unserved(&plain));
        let missing_object = kube::Error::Api(
            kube::core::Status::failure("servicemonitors \"demo\" not found", "NotFound")
                .with_code(404)
                .boxed(),
        );
        assert!(!unserved(&missing_object));
    }
}
