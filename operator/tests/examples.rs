//! The example custom resources in `deploy/examples/` parse into the Rust
//! types and pass the CRDs' CEL rules, so the documentation cannot drift
//! from the API.

mod common;

use flymq_operator::crd::{Acl, FlyMQCluster, Topic, User};
use kube::core::cel::validate_cel;
use serde_json::Value;

/// Fields of `original` that the typed round trip dropped: serde ignores
/// unknown fields, the API server (structural schema) would prune them.
fn unknown_fields(original: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (original, typed) {
        (Value::Object(o), Value::Object(t)) => {
            for (k, v) in o {
                let p = format!("{path}.{k}");
                match t.get(k) {
                    Some(tv) => unknown_fields(v, tv, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(o), Value::Array(t)) => {
            for (i, (ov, tv)) in o.iter().zip(t).enumerate() {
                unknown_fields(ov, tv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Parses `text` as `T` and fails on any field `T` does not know.
fn strict<T: serde::de::DeserializeOwned + serde::Serialize>(name: &str, text: &str) -> T {
    let original: Value = serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let typed: T = serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut unknown = Vec::new();
    unknown_fields(
        &original,
        &serde_json::to_value(&typed).expect("serialises"),
        "",
        &mut unknown,
    );
    assert!(unknown.is_empty(), "{name}: unknown fields {unknown:?}");
    typed
}

fn example(name: &str) -> String {
    let path = common::repo_root().join("deploy/examples").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn examples_parse_and_pass_cel_rules() {
    let cluster: FlyMQCluster = strict("cluster.yaml", &example("cluster.yaml"));
    assert!(validate_cel(&cluster).is_ok());
    let secure: FlyMQCluster = strict("secure-cluster.yaml", &example("secure-cluster.yaml"));
    assert!(validate_cel(&secure).is_ok());
    assert!(secure.spec.tls.is_some() && secure.spec.encryption.is_some());
    let topic: Topic = strict("topic.yaml", &example("topic.yaml"));
    assert!(validate_cel(&topic).is_ok());
    assert_eq!(topic.spec.partitions, 6);
    let user: User = strict("user.yaml", &example("user.yaml"));
    assert!(validate_cel(&user).is_ok());
    let acl: Acl = strict("acl.yaml", &example("acl.yaml"));
    assert!(validate_cel(&acl).is_ok());
}

#[test]
fn a_misspelt_field_is_caught() {
    let text = "apiVersion: flymq.io/v1alpha1\nkind: Topic\nmetadata: {name: t}\nspec: {clusterRef: {name: c}, partition: 3}\n";
    let result = std::panic::catch_unwind(|| strict::<Topic>("typo", text));
    assert!(result.is_err(), "spec.partition (singular) must be reported");
}

#[test]
fn fixtures_parse_and_pass_cel_rules() {
    for name in ["minimal.yaml", "full.yaml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let text = std::fs::read_to_string(&path).expect("fixture");
        let cluster: FlyMQCluster = strict(name, &text);
        assert!(validate_cel(&cluster).is_ok(), "{name}");
    }
}
