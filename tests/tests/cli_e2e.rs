//! `flymq-cli` run as a process against the real broker (in process,
//! RocksDB in a temporary directory, loopback port 0).
//!
//! The CLI binary is not built by this crate: it is looked up next to the
//! test executable (`<target>/<profile>/flymq-cli`), like the broker binary
//! in [`flymq_tests::flymq_binary`]; `cargo test --workspace` builds it
//! (flymq-client has integration tests of its own), otherwise run
//! `cargo build -p flymq-client --bins` with the same profile first, or set
//! `FLYMQ_CLI_BIN`.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use flymq_broker::testing::TestBroker;

/// Path of the `flymq-cli` binary: `$FLYMQ_CLI_BIN` when set, else next to
/// the running test executable (`<target>/<profile>/flymq-cli`).
fn cli_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("FLYMQ_CLI_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "FLYMQ_CLI_BIN={} does not exist", bin.display());
        return bin;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Integration tests run from <target>/<profile>/deps/.
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.pop();
    }
    let bin = dir.join(format!("flymq-cli{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the flymq-cli binary is missing at {}: run `cargo build -p flymq-client --bins` first \
         (same profile and CARGO_TARGET_DIR as the tests), or set FLYMQ_CLI_BIN",
        bin.display()
    );
    bin
}

fn cli(addr: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(cli_binary())
        .arg("--bootstrap")
        .arg(addr)
        .args(args)
        .env_remove("FLYMQ_BOOTSTRAP")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flymq-cli");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("flymq-cli output")
}

fn ok(addr: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = cli(addr, args, stdin);
    assert!(
        out.status.success(),
        "flymq-cli {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_commands_against_a_real_broker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(dir.path()).await.expect("start broker");
    let addr = broker.client_addr().to_string();
    let admin = broker.admin_addr().to_string();

    let run = tokio::task::spawn_blocking(move || {
        let a = addr.as_str();
        assert!(ok(a, &["topic", "create", "orders", "-p", "2"], None).contains("created topic 'orders'"));
        assert_eq!(ok(a, &["topic", "list"], None).trim(), "orders");
        let info = json_lines(&ok(a, &["topic", "info", "orders", "-o", "json"], None));
        assert_eq!(info.len(), 2);

        // `topic alter` goes through the admin API.
        let altered = json_lines(&ok(
            a,
            &[
                "--admin",
                &admin,
                "topic",
                "alter",
                "orders",
                "-p",
                "3",
                "--retention",
                "7d",
                "-o",
                "json",
            ],
            None,
        ));
        assert_eq!(altered[0]["partitions"], 3);
        assert_eq!(altered[0]["retention_ms"], 7 * 24 * 3_600_000u64);
        let shrink = cli(a, &["--admin", &admin, "topic", "alter", "orders", "-p", "1"], None);
        assert!(!shrink.status.success());
        let stderr = String::from_utf8_lossy(&shrink.stderr);
        assert!(stderr.contains("has 3 partitions"), "{stderr}");
        let nothing = cli(a, &["--admin", &admin, "topic", "alter", "orders"], None);
        assert!(!nothing.status.success(), "alter without a change must fail");
        let info = json_lines(&ok(a, &["topic", "info", "orders", "-o", "json"], None));
        assert_eq!(info.len(), 3);

        let one = json_lines(&ok(a, &["produce", "orders", "hello", "-p", "1", "-o", "json"], None));
        assert_eq!(one[0]["partition"], 1);
        assert_eq!(one[0]["offset"], 0);

        let many = json_lines(&ok(
            a,
            &["produce", "orders", "--partition", "0", "-o", "json"],
            Some("a\nb\nc\n"),
        ));
        let offsets: Vec<u64> = many.iter().map(|v| v["offset"].as_u64().expect("offset")).collect();
        assert_eq!(offsets, vec![0, 1, 2]);

        assert_eq!(ok(a, &["consume", "orders", "-p", "0"], None), "a\nb\nc\n");

        // Per-message TTL and delay (keyless: the broker picks the partition).
        ok(a, &["topic", "create", "timed", "-p", "1"], None);
        let ttl = json_lines(&ok(
            a,
            &["produce", "timed", "fleeting", "--ttl", "1h", "-o", "json"],
            None,
        ));
        assert_eq!(ttl[0]["partition"], 0);
        let delayed = ok(a, &["produce", "timed", "--delay", "300ms"], Some("x\ny\n"));
        assert_eq!(delayed.lines().count(), 2, "{delayed}");
        assert!(delayed.contains("scheduled, delivered in 300ms"), "{delayed}");
        let both = cli(a, &["produce", "timed", "m", "--ttl", "1s", "--delay", "1s"], None);
        assert!(!both.status.success(), "--ttl and --delay together must be refused");
        let keyed = cli(a, &["produce", "timed", "m", "--ttl", "1s", "-k", "k"], None);
        assert!(!keyed.status.success(), "a TTL message is keyless");
        std::thread::sleep(std::time::Duration::from_millis(900));
        assert_eq!(ok(a, &["consume", "timed", "-p", "0"], None), "fleeting\nx\ny\n");
        let records = json_lines(&ok(
            a,
            &["consume", "orders", "-p", "0", "--offset", "1", "-n", "1", "-o", "json"],
            None,
        ));
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["value"], "b");
        assert_eq!(records[0]["key"], serde_json::Value::Null);

        let sub = ok(
            a,
            &["subscribe", "orders", "--group", "g1", "--from", "earliest", "-n", "4"],
            None,
        );
        let mut lines: Vec<&str> = sub.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, vec!["a", "b", "c", "hello"]);
        let lag = json_lines(&ok(a, &["groups", "lag", "orders", "g1", "-o", "json"], None));
        assert!(lag.iter().all(|p| p["lag"] == 0), "{lag:?}");
        assert!(ok(a, &["groups", "list"], None).contains("g1"));

        let bench = json_lines(&ok(
            a,
            &[
                "bench", "produce", "-n", "2000", "--batch", "50", "-c", "2", "-q", "-o", "json", "-t", "b",
            ],
            None,
        ));
        assert_eq!(bench[0]["messages"], 2000);
        assert_eq!(bench[0]["errors"], 0);
        assert!(bench[0]["latency"]["count"].as_u64().expect("count") >= 40);
        let consume = json_lines(&ok(a, &["bench", "consume", "-q", "-o", "json", "-t", "b"], None));
        assert_eq!(consume[0]["messages"], 2000);
        let latency = json_lines(&ok(
            a,
            &["bench", "latency", "-n", "100", "-q", "-o", "json", "-t", "b"],
            None,
        ));
        assert_eq!(latency[0]["latency"]["count"], 100);

        let empty = cli(a, &["bench", "consume", "-q", "-t", "nothing-here"], None);
        assert!(!empty.status.success());
        let missing = cli(a, &["topic", "info", "no-such-topic"], None);
        assert!(!missing.status.success());
        let stderr = String::from_utf8_lossy(&missing.stderr);
        assert!(
            stderr.starts_with("error: ") && stderr.contains("does not exist"),
            "{stderr}"
        );
    });
    run.await.expect("cli run");
    broker.shutdown().await;
}

fn failed(addr: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = cli(addr, args, stdin);
    assert!(!out.status.success(), "flymq-cli {args:?} should fail");
    String::from_utf8(out.stderr).expect("utf-8 stderr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_commands_and_validated_produce() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(dir.path()).await.expect("start broker");
    let addr = broker.client_addr().to_string();
    let files = tempfile::tempdir().expect("temp dir");
    let v1 = files.path().join("orders-v1.json");
    std::fs::write(
        &v1,
        r#"{"type": "object", "properties": {"id": {"type": "integer"}, "item": {"type": "string"}}, "required": ["id"]}"#,
    )
    .expect("write schema");
    let incompatible = files.path().join("incompatible.json");
    std::fs::write(
        &incompatible,
        r#"{"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}"#,
    )
    .expect("write schema");
    let message_file = files.path().join("message.json");
    std::fs::write(&message_file, r#"{"id": 3}"#).expect("write message");

    let run = tokio::task::spawn_blocking(move || {
        let a = addr.as_str();
        let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_owned();
        let (v1, incompatible, message_file) = (path(&v1), path(&incompatible), path(&message_file));

        assert_eq!(
            ok(
                a,
                &["schema", "register", "orders", "--type", "json", "--file", &v1],
                None
            )
            .trim(),
            "registered schema 'orders' version 1 (json)"
        );
        let avro = r#"{"type": "record", "name": "R", "fields": [{"name": "c", "type": "double"}]}"#;
        let from_stdin = json_lines(&ok(
            a,
            &["schema", "register", "readings", "-t", "avro", "-f", "-", "-o", "json"],
            Some(avro),
        ));
        assert_eq!(from_stdin[0]["schema"], "readings");
        assert_eq!(from_stdin[0]["type"], "avro");
        assert_eq!(from_stdin[0]["version"], 1);

        // Bad input: unknown type, missing file, empty definition, an
        // incompatible version, each with a non-zero exit and the reason.
        let unknown = cli(a, &["schema", "register", "x", "--type", "xml", "--file", &v1], None);
        assert_eq!(unknown.status.code(), Some(2), "a usage error");
        let stderr = String::from_utf8_lossy(&unknown.stderr);
        assert!(
            stderr.contains("unknown schema type 'xml': use json, avro or protobuf"),
            "{stderr}"
        );
        let stderr = failed(
            a,
            &["schema", "register", "x", "-t", "json", "-f", "/no/such/file.json"],
            None,
        );
        assert!(
            stderr.starts_with("error: cannot read the schema definition file /no/such/file.json"),
            "{stderr}"
        );
        let stderr = failed(a, &["schema", "register", "x", "-t", "json", "-f", "-"], Some(""));
        assert!(stderr.contains("the schema definition in stdin is empty"), "{stderr}");
        let stderr = failed(
            a,
            &["schema", "register", "orders", "-t", "json", "-f", &incompatible],
            None,
        );
        assert!(stderr.contains("not backward compatible with version 1"), "{stderr}");

        assert_eq!(
            ok(a, &["schema", "list"], None),
            "SCHEMA    TYPE  VERSION\norders    json  1\nreadings  avro  1\n"
        );
        let listed = json_lines(&ok(a, &["schema", "list", "orders", "-o", "json"], None));
        assert_eq!(
            listed,
            [serde_json::json!({"schema": "orders", "type": "json", "version": 1})]
        );
        assert_eq!(
            ok(a, &["schema", "get", "orders"], None).trim(),
            "schema 'orders' version 1 (json)"
        );
        let stderr = failed(a, &["schema", "get", "orders", "--version", "4"], None);
        assert!(stderr.contains("schema not found: orders v4"), "{stderr}");
        let stderr = failed(a, &["schema", "get", "nothing"], None);
        assert!(
            stderr.contains("schema 'nothing' does not exist; register it with"),
            "{stderr}"
        );

        assert_eq!(
            ok(a, &["schema", "validate", "orders", r#"{"id": 1}"#], None).trim(),
            "valid against schema 'orders'"
        );
        assert!(ok(a, &["schema", "validate", "orders", "--file", &message_file], None).contains("valid"));
        let invalid = cli(
            a,
            &["schema", "validate", "orders", r#"{"id": "x"}"#, "-o", "json"],
            None,
        );
        assert_eq!(invalid.status.code(), Some(1), "an invalid message exits with 1");
        let report = json_lines(&String::from_utf8_lossy(&invalid.stdout));
        assert_eq!(report[0]["valid"], false);
        assert!(
            report[0]["errors"][0]
                .as_str()
                .expect("error text")
                .starts_with("/id: "),
            "{report:?}"
        );

        // produce --schema: valid messages are written, the others refused.
        let written = json_lines(&ok(
            a,
            &[
                "produce",
                "orders-topic",
                r#"{"id": 1}"#,
                "--schema",
                "orders",
                "-o",
                "json",
            ],
            None,
        ));
        assert_eq!(written[0]["offset"], 0);
        let stderr = failed(
            a,
            &["produce", "orders-topic", r#"{"id": "one"}"#, "--schema", "orders"],
            None,
        );
        assert!(
            stderr.contains("schema validation failed: [/id: ") && stderr.contains("(schema 'orders' version 1)"),
            "{stderr}"
        );
        let stderr = failed(
            a,
            &["produce", "orders-topic", r#"{"id": 1}"#, "--schema", "nothing"],
            None,
        );
        assert!(stderr.contains("schema 'nothing' does not exist"), "{stderr}");
        let lines = cli(
            a,
            &["produce", "orders-topic", "--schema", "orders"],
            Some("{\"id\": 2}\nnot json\n{\"id\": 3}\n"),
        );
        assert_eq!(lines.status.code(), Some(1), "one line was refused");
        assert_eq!(String::from_utf8_lossy(&lines.stdout).lines().count(), 2);
        let stderr = String::from_utf8_lossy(&lines.stderr);
        assert!(stderr.contains("1 message(s) could not be produced"), "{stderr}");
        let keyed = cli(
            a,
            &["produce", "orders-topic", "{}", "--schema", "orders", "--key", "k"],
            None,
        );
        assert_eq!(keyed.status.code(), Some(2), "--schema is keyless");
        assert_eq!(
            ok(a, &["consume", "orders-topic"], None),
            "{\"id\": 1}\n{\"id\": 2}\n{\"id\": 3}\n"
        );

        assert_eq!(
            ok(a, &["schema", "delete", "readings", "--version", "1"], None).trim(),
            "deleted version 1 of schema 'readings'"
        );
        let deleted = json_lines(&ok(a, &["schema", "delete", "orders", "-o", "json"], None));
        assert_eq!(deleted[0]["all_versions"], true);
        assert_eq!(deleted[0]["message"], "deleted 1 version of schema 'orders'");
        let stderr = failed(a, &["schema", "delete", "orders"], None);
        assert!(stderr.contains("schema 'orders' does not exist"), "{stderr}");
        let empty = cli(a, &["schema", "list"], None);
        assert!(empty.status.success() && empty.stdout.is_empty());
        assert_eq!(String::from_utf8_lossy(&empty.stderr).trim(), "no schemas");
    });
    run.await.expect("cli run");
    broker.shutdown().await;
}

/// `bench schema` and `bench delayed` with small counts: every request is
/// answered with the expected opcode, and the delayed records are delivered
/// once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_and_delayed_benches_run_end_to_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(dir.path()).await.expect("start broker");
    let addr = broker.client_addr().to_string();
    let run = tokio::task::spawn_blocking(move || {
        let a = addr.as_str();
        let schema = json_lines(&ok(
            a,
            &["bench", "schema", "-n", "300", "--rounds", "2", "-q", "-o", "json"],
            None,
        ));
        let rounds = schema[0]["rounds"].as_array().expect("rounds");
        assert_eq!(rounds.len(), 2);
        for round in rounds {
            for kind in ["plain", "schema"] {
                assert_eq!(round[kind]["messages"], 300, "{round}");
                assert_eq!(round[kind]["errors"], 0, "{round}");
            }
        }
        assert!(schema[0]["median_ratio"].as_f64().expect("ratio") > 0.0);
        // The records were validated and written.
        let written = json_lines(&ok(a, &["topic", "info", "bench", "-o", "json"], None));
        assert_eq!(written.len(), 1);
        assert_eq!(
            ok(a, &["consume", "bench", "-n", "1"], None).len(),
            101,
            "a 100-byte record and a newline"
        );

        let delayed = json_lines(&ok(
            a,
            &[
                "bench",
                "delayed",
                "--pending",
                "500",
                "-n",
                "400",
                "--warmup",
                "0",
                "--due",
                "50",
                "--due-delay",
                "200ms",
                "-q",
                "-o",
                "json",
            ],
            None,
        ));
        let phases = delayed[0]["phases"].as_array().expect("phases");
        assert_eq!(phases.len(), 8);
        assert_eq!(
            phases[2]["report"]["messages"], 500,
            "the pending records: {}",
            phases[2]
        );
        assert_eq!(phases[2]["report"]["mode"], "produce-delayed");
        for phase in phases {
            assert_eq!(phase["report"]["errors"], 0, "{phase}");
        }
        // FETCH from offset 0 skips the 500 pending records and reads the 400 plain ones.
        assert_eq!(phases[7]["report"]["messages"], 400, "{}", phases[7]);
        for lateness in delayed[0]["lateness"].as_array().expect("lateness") {
            assert_eq!(lateness["delivered"], 50, "{lateness}");
            assert_eq!(lateness["duplicates"], 0, "{lateness}");
            assert!(lateness["from_send"]["p50_ms"].as_f64().expect("p50") >= 0.0);
        }
        assert_eq!(delayed[0]["lateness"][1]["pending"], 500);
    });
    run.await.expect("bench run");
    broker.shutdown().await;
}

#[test]
fn unreachable_broker_fails_clearly() {
    let out = cli("127.0.0.1:1", &["topic", "list", "--timeout", "1s"], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not connect"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_share_joins_the_group_assignment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(dir.path()).await.expect("start broker");
    let addr = broker.client_addr().to_string();
    let run = tokio::task::spawn_blocking(move || {
        let a = addr.as_str();
        ok(a, &["topic", "create", "jobs", "-p", "2"], None);
        for p in ["0", "1"] {
            ok(a, &["produce", "jobs", "--partition", p], Some(&format!("p{p}\n")));
        }
        // Alone in the group, the member gets both partitions.
        let out = cli(
            a,
            &[
                "subscribe",
                "jobs",
                "-g",
                "w",
                "--share",
                "--from",
                "earliest",
                "-n",
                "2",
            ],
            None,
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort_unstable();
        assert_eq!(lines, ["p0", "p1"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("joined group 'w' on jobs as member member-")
                && stderr.contains("reading partitions [0, 1]"),
            "{stderr}"
        );
        // Its commits were fenced commits of the group.
        let lag = json_lines(&ok(a, &["groups", "lag", "jobs", "w", "-o", "json"], None));
        assert!(lag.iter().all(|p| p["lag"] == 0), "{lag:?}");
        // Bad combinations.
        let err = failed(a, &["subscribe", "jobs/+", "-g", "w", "--share"], None);
        assert!(err.contains("--share works on one topic, not on a pattern"), "{err}");
        let err = failed(a, &["subscribe", "jobs", "-g", "w", "--session-timeout", "5s"], None);
        assert!(err.contains("--share"), "{err}");
    });
    run.await.expect("cli run");
    broker.shutdown().await;
}
