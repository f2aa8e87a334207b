//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// True when golden files should be rewritten instead of compared.
pub fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Compares `actual` with the file at `path`, or rewrites the file when
/// `UPDATE_GOLDEN=1`. Returns a description of the drift, if any.
pub fn check_golden(path: &Path, actual: &str) -> Option<String> {
    if updating() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create golden directory");
        }
        std::fs::write(path, actual).expect("write golden file");
        return None;
    }
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == actual => None,
        Ok(expected) => {
            let line = expected
                .lines()
                .zip(actual.lines())
                .position(|(a, b)| a != b)
                .map_or_else(|| expected.lines().count().min(actual.lines().count()) + 1, |i| i + 1);
            Some(format!(
                "{} is out of date (first difference at line {line}); regenerate with `UPDATE_GOLDEN=1 cargo test -p flymq-operator`",
                path.display()
            ))
        }
        Err(e) => Some(format!(
            "{} cannot be read ({e}); generate it with `UPDATE_GOLDEN=1 cargo test -p flymq-operator`",
            path.display()
        )),
    }
}

/// The offline Kubernetes schema validator shipped in `shared/tools`
/// (override with `FLYMQ_TOOLS_DIR`), or why it cannot run.
pub fn kube_validate() -> Result<PathBuf, String> {
    let dir = std::env::var_os("FLYMQ_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("..").join("shared").join("tools"));
    let tool = dir.join("kube-validate");
    if !tool.exists() {
        return Err(format!("{} not found (set FLYMQ_TOOLS_DIR)", tool.display()));
    }
    let python = Command::new("python3").arg("--version").output();
    if !python.is_ok_and(|o| o.status.success()) {
        return Err("python3 is not installed".into());
    }
    Ok(tool)
}

/// Runs kube-validate on `paths`, panicking with its output on failure; skips
/// (with a message) only when python3 or the tool is missing.
pub fn validate(paths: &[PathBuf]) {
    let tool = match kube_validate() {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIPPED schema validation: {why}");
            return;
        }
    };
    let out = Command::new(&tool).args(paths).output().expect("run kube-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kube-validate failed:\n{text}");
}
