//! One malformed object never stops a controller.
//!
//! The controllers watch through [`DeserializeGuard`]: an object that does
//! not decode (a field of the wrong type, written before a CRD change or
//! around its validation) reaches the reconciler as an [`InvalidObject`]
//! instead of breaking the watch of every object of its kind. It is reported
//! on that object: `Ready=False` with reason `InvalidObject` and the decoding
//! error in its status, and one Warning event.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use tracing::warn;

use super::cluster::{Clock, FIELD_MANAGER};
use super::error::Error;
use super::status::READY;
use crate::crd::Condition;

/// Condition reason of an object that cannot be decoded.
pub const INVALID_OBJECT: &str = "InvalidObject";

/// The decoded object, or `None` for a malformed one.
pub fn decoded<K: Clone>(obj: &DeserializeGuard<K>) -> Option<Arc<K>> {
    obj.0.as_ref().ok().map(|k| Arc::new(k.clone()))
}

/// Reports a malformed object on itself (status condition, Warning event)
/// and waits for it to change.
pub async fn report_invalid<K>(client: &Client, invalid: &InvalidObject, clock: &Clock) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
{
    let meta = &invalid.metadata;
    let (Some(ns), Some(name)) = (meta.namespace.clone(), meta.name.clone()) else {
        return Ok(Action::await_change());
    };
    let kind = K::kind(&()).to_string();
    warn!(object = %format!("{kind} {ns}/{name}"), error = %invalid.error, "cannot decode the object; fix it");
    let message = format!(
        "the operator cannot read this {kind}: {}; fix the field (kubectl explain {}) and apply it again",
        invalid.error,
        K::plural(&()).to_lowercase()
    );
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
    // Only when the object does not say so already: a status write is a
    // watch event, and it would bring the object back here.
    let current = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("reading {kind} {ns}/{name}")))?;
    let Some(current) = current else {
        return Ok(Action::await_change());
    };
    let reported = current.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == READY && c["reason"] == INVALID_OBJECT && c["message"] == message.as_str());
    if reported {
        return Ok(Action::await_change());
    }
    let condition = Condition {
        type_: READY.into(),
        status: "False".into(),
        reason: INVALID_OBJECT.into(),
        message: message.clone(),
        observed_generation: meta.generation,
        last_transition_time: Some(clock()),
    };
    let patch = serde_json::json!({"status": {"conditions": [condition]}});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(format!("reporting the malformed {kind} {ns}/{name}")))?;
    let reference = ObjectReference {
        api_version: Some(K::api_version(&()).to_string()),
        kind: Some(kind),
        name: Some(name),
        namespace: Some(ns),
        uid: meta.uid.clone(),
        ..ObjectReference::default()
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Warning,
        reason: INVALID_OBJECT.into(),
        note: Some(message),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &reference).await {
        warn!(error = %e, "cannot publish event");
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::mock::{Reply, client, serve, step};
    use crate::crd::FlyMQCluster;
    use serde_json::json;

    const PATH: &str = "/apis/flymq.io/v1alpha1/namespaces/prod/flymqclusters/demo";

    /// A FlyMQCluster whose `replicas` is a string, as the watch delivers it.
    fn malformed() -> DeserializeGuard<FlyMQCluster> {
        serde_json::from_value(json!({
            "apiVersion": "flymq.io/v1alpha1", "kind": "FlyMQCluster",
            "metadata": {"name": "demo", "namespace": "prod", "uid": "u-1", "generation": 3},
            "spec": {"replicas": "three"}
        }))
        .expect("a guard decodes whatever the object holds")
    }

    #[test]
    fn a_malformed_object_decodes_into_a_guard_and_a_good_one_into_the_object() {
        let bad = malformed();
        assert!(decoded(&bad).is_none());
        let err = bad.0.expect_err("malformed");
        assert_eq!(err.error, "Invalid type string \"three\". Expected i32");
        assert_eq!(err.metadata.name.as_deref(), Some("demo"));
        let good: DeserializeGuard<FlyMQCluster> = serde_json::from_value(json!({
            "apiVersion": "flymq.io/v1alpha1", "kind": "FlyMQCluster",
            "metadata": {"name": "demo", "namespace": "prod"},
            "spec": {"replicas": 3, "storage": {"size": null}}
        }))
        .expect("decodes");
        assert_eq!(decoded(&good).map(|c| c.spec.replicas), Some(3));
    }

    #[tokio::test]
    async fn a_malformed_object_is_reported_on_itself_once() {
        let invalid = malformed().0.expect_err("malformed");
        let stored = json!({"apiVersion": "flymq.io/v1alpha1", "kind": "FlyMQCluster",
            "metadata": {"name": "demo", "namespace": "prod", "uid": "u-1"},
            "spec": {"replicas": "three"}});
        let (c, handle) = client();
        let server = tokio::spawn(serve(
            handle,
            vec![
                step("GET", PATH, Reply::Json(stored.clone())),
                step(
                    "PATCH",
                    "/apis/flymq.io/v1alpha1/namespaces/prod/flymqclusters/demo/status",
                    Reply::WithStatus(stored.clone()),
                ),
                step("POST", "/apis/events.k8s.io/v1/namespaces/prod/events", Reply::Echo),
            ],
        ));
        let clock: Clock = Arc::new(|| "2026-01-01T00:00:00Z".to_string());
        let action = report_invalid::<FlyMQCluster>(&c, &invalid, &clock)
            .await
            .expect("reported");
        assert_eq!(action, Action::await_change());
        let seen = server.await.expect("server");
        let cond = &seen[1].body["status"]["conditions"][0];
        assert_eq!(
            (&cond["type"], &cond["reason"]),
            (&json!("Ready"), &json!("InvalidObject"))
        );
        let message = cond["message"].as_str().unwrap_or_default();
        assert_eq!(
            message,
            "the operator cannot read this FlyMQCluster: Invalid type string \"three\". Expected i32; fix the field \
             (kubectl explain flymqclusters) and apply it again"
        );
        assert_eq!(seen[2].body["reason"], json!("InvalidObject"));
        assert_eq!(seen[2].body["regarding"]["uid"], json!("u-1"));

        // Already reported: only the read.
        let mut again = stored;
        again["status"] = seen[1].body["status"].clone();
        let (c, handle) = client();
        let server = tokio::spawn(serve(handle, vec![step("GET", PATH, Reply::Json(again))]));
        report_invalid::<FlyMQCluster>(&c, &invalid, &clock)
            .await
            .expect("reported");
        assert_eq!(server.await.expect("server").len(), 1);
    }
}
