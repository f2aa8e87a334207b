//! Golden files of the objects built for a minimal and a full-featured
//! FlyMQCluster (`tests/fixtures/*.yaml` in, `tests/golden/*.yaml` out), and
//! offline schema validation of every golden file.

mod common;

use std::path::{Path, PathBuf};

use flymq_operator::builders::{self, Inputs, Randomness};
use flymq_operator::crd::FlyMQCluster;

struct Fixed;
impl Randomness for Fixed {
    fn alphanumeric(&self, len: usize) -> String {
        "generated".chars().cycle().take(len).collect()
    }
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn doc<T: serde::Serialize>(out: &mut String, obj: &T) {
    out.push_str("---\n");
    out.push_str(&serde_yaml::to_string(obj).expect("object serialises"));
}

/// Renders every desired object of the fixture `name` as one YAML stream.
fn render(name: &str) -> String {
    let input = std::fs::read_to_string(dir().join("fixtures").join(format!("{name}.yaml"))).expect("read fixture");
    let cluster: FlyMQCluster = serde_yaml::from_str(&input).expect("fixture is a FlyMQCluster");
    // The full fixture renders a cluster after its first bootstrap: the
    // identity ConfigMap turns bootstrapping off and carries the id.
    let inputs = Inputs {
        cluster_id: (name == "full").then(|| "4f1c2a9e-golden".to_string()),
        ..Inputs::default()
    };
    let d = builders::build(&cluster, &inputs, &Fixed).expect("fixture builds");
    let mut out = String::new();
    doc(&mut out, &d.config_map);
    doc(&mut out, &d.identity);
    for s in &d.secrets {
        doc(&mut out, s);
    }
    if let Some(c) = &d.certificate {
        doc(&mut out, c);
    }
    doc(&mut out, &d.headless_service);
    doc(&mut out, &d.client_service);
    doc(&mut out, &d.stateful_set);
    doc(&mut out, &d.pdb);
    if let Some(np) = &d.network_policy {
        doc(&mut out, np);
    }
    if let Some(sm) = &d.service_monitor {
        doc(&mut out, sm);
    }
    out
}

#[test]
fn golden_objects_match() {
    let drift: Vec<String> = ["minimal", "full"]
        .iter()
        .filter_map(|name| common::check_golden(&dir().join("golden").join(format!("{name}.yaml")), &render(name)))
        .collect();
    assert!(drift.is_empty(), "{}", drift.join("\n"));
}

#[test]
fn golden_objects_pass_offline_schema_validation() {
    common::validate(&[dir().join("golden")]);
}

#[test]
fn full_fixture_exercises_every_optional_object() {
    let yaml = render("full");
    for kind in [
        "kind: Certificate",
        "kind: ServiceMonitor",
        "FLYMQ_ENCRYPTION_KEY",
        "tolerations:",
        "bootstrap: never",
    ] {
        assert!(yaml.contains(kind), "full golden lacks {kind}");
    }
    let minimal = render("minimal");
    assert!(
        minimal.contains("kind: Secret"),
        "minimal cluster gets a generated admin Secret"
    );
}
