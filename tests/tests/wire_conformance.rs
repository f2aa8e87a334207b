//! Independent wire-protocol conformance: runs the stdlib-only Python client
//! in `tests/conformance/` (written from WIRE.md, not from our codec) against
//! the real `flymq` binary.
//!
//! Needs the broker binary built first (`cargo build -p flymq-broker`) and
//! `python3` on the PATH; without python3 the test reports that it was
//! skipped and passes.

use std::path::Path;
use std::process::Command;

use flymq_tests::{parse_pass_fail_summary, spawn_standalone};

fn python3_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn python_wire_client_conforms() {
    if !python3_available() {
        eprintln!("SKIPPED wire_conformance: python3 is not installed, the Python conformance suite did not run");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conformance")
        .join("test_wire.py");
    assert!(script.is_file(), "missing {}", script.display());

    let broker = spawn_standalone(&[]);
    let addr = broker.client_addr();
    let output = Command::new("python3")
        .arg(&script)
        .arg("--host")
        .arg(addr.ip().to_string())
        .arg("--port")
        .arg(addr.port().to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("cannot run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");

    let summary = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    let Some((passed, failed)) = parse_pass_fail_summary(summary) else {
        panic!(
            "the suite did not print its `N passed, N failed` line (exit {:?}); last line: {summary:?}",
            output.status
        );
    };
    assert!(
        output.status.success() && failed == 0 && passed > 0,
        "wire conformance failed: {summary} (exit {:?}); broker log:\n{}",
        output.status,
        broker.log_lines().join("\n")
    );
}
