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

#[test]
fn unreachable_broker_fails_clearly() {
    let out = cli("127.0.0.1:1", &["topic", "list", "--timeout", "1s"], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not connect"), "{stderr}");
}
