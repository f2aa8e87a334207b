//! The example custom resources in `deploy/examples/` parse into the Rust
//! types and pass the CRDs' CEL rules, so the documentation cannot drift
//! from the API.

mod common;

use flymq_operator::crd::{Acl, FlyMQCluster, Topic, User};
use kube::core::cel::validate_cel;

fn example(name: &str) -> String {
    let path = common::repo_root().join("deploy/examples").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn examples_parse_and_pass_cel_rules() {
    let cluster: FlyMQCluster = serde_yaml::from_str(&example("cluster.yaml")).expect("cluster.yaml");
    assert!(validate_cel(&cluster).is_ok());
    let topic: Topic = serde_yaml::from_str(&example("topic.yaml")).expect("topic.yaml");
    assert!(validate_cel(&topic).is_ok());
    assert_eq!(topic.spec.partitions, 6);
    let user: User = serde_yaml::from_str(&example("user.yaml")).expect("user.yaml");
    assert!(validate_cel(&user).is_ok());
    let acl: Acl = serde_yaml::from_str(&example("acl.yaml")).expect("acl.yaml");
    assert!(validate_cel(&acl).is_ok());
}

#[test]
fn fixtures_parse_and_pass_cel_rules() {
    for name in ["minimal.yaml", "full.yaml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let text = std::fs::read_to_string(&path).expect("fixture");
        let cluster: FlyMQCluster = serde_yaml::from_str(&text).expect("fixture parses");
        assert!(validate_cel(&cluster).is_ok(), "{name}");
    }
}
