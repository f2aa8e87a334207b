//! Helpers shared by the cross-component tests.
//!
//! [`spawn_flymq`] starts the real `flymq` broker binary as a separate process
//! and waits for its `FlyMQ broker ready` log line, from which it learns the
//! addresses the broker actually bound (start it with port 0 everywhere, so
//! tests never collide). The returned [`BrokerProcess`] kills the broker when
//! dropped.
//!
//! The binary is not built here: the test executable lives in
//! `<target>/<profile>/deps/` and the broker in `<target>/<profile>/flymq`, so
//! run `cargo build -p flymq-broker` (same profile) before the tests. Set
//! `FLYMQ_BIN` to use another binary.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

pub mod cluster;

/// The message of the broker's log line once every listener is bound.
pub const READY_MESSAGE: &str = "FlyMQ broker ready";

/// How long [`spawn_flymq`] waits for the ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of the `flymq` broker binary next to the running test executable
/// (`<target>/<profile>/flymq`), or `$FLYMQ_BIN` when set.
pub fn flymq_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("FLYMQ_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("FLYMQ_BIN={} does not exist", bin.display());
        }
        return Ok(bin);
    }
    let exe = std::env::current_exe().context("cannot find the test executable's path")?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Integration tests run from <target>/<profile>/deps/.
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.pop();
    }
    let bin = dir.join(format!("flymq{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        bail!(
            "the flymq broker binary is missing at {}: run `cargo build -p flymq-broker` first \
             (same profile and CARGO_TARGET_DIR as the tests), or set FLYMQ_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

/// Addresses the broker logged in its ready line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyInfo {
    pub client: SocketAddr,
    pub metrics: Option<SocketAddr>,
    pub health: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// Parses one JSON log line; `Some` when it is the ready line. The broker logs
/// JSON with the event fields flattened into the object, e.g.
/// `{"level":"INFO","message":"FlyMQ broker ready","client":"127.0.0.1:40123",...}`.
pub fn parse_ready_line(line: &str) -> Option<ReadyInfo> {
    let value: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    let message = value
        .get("message")
        .or_else(|| value.pointer("/fields/message"))?
        .as_str()?;
    if message != READY_MESSAGE {
        return None;
    }
    let addr = |name: &str| -> Option<SocketAddr> {
        value
            .get(name)
            .or_else(|| value.pointer(&format!("/fields/{name}")))?
            .as_str()?
            .parse()
            .ok()
    };
    Some(ReadyInfo {
        client: addr("client")?,
        metrics: addr("metrics"),
        health: addr("health"),
        admin: addr("admin"),
    })
}

/// A running `flymq` process; killed (and reaped) on drop.
pub struct BrokerProcess {
    child: Child,
    ready: ReadyInfo,
    log: Arc<Mutex<Vec<String>>>,
    data_dir: Option<tempfile::TempDir>,
}

impl BrokerProcess {
    /// The client protocol address from the ready line.
    pub fn client_addr(&self) -> SocketAddr {
        self.ready.client
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.ready.metrics
    }

    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.ready.health
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.ready.admin
    }

    /// Asks the broker to stop gracefully (SIGTERM) and waits up to
    /// `timeout` for it to exit; `Some(status)` when it did.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Kills the process with SIGKILL (no shutdown) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything the broker logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The data directory, when this helper created it.
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_ref().map(tempfile::TempDir::path)
    }

    /// Every stderr line the broker printed so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// `Some(status)` once the process has exited.
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the broker and waits for it.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `flymq` with exactly `args` and waits for its ready line. Panics
/// with the broker's output when it does not become ready (test helper); see
/// [`try_spawn_flymq`] for a `Result`.
pub fn spawn_flymq<I, S>(args: I) -> BrokerProcess
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    try_spawn_flymq(args).unwrap_or_else(|err| panic!("{err:#}"))
}

/// A standalone broker on 127.0.0.1 with port 0 for every listener and a
/// fresh temporary data directory (removed when the process is dropped).
/// `extra` is appended to the command line (e.g. `["--set", "key=value"]`).
pub fn spawn_standalone(extra: &[&str]) -> BrokerProcess {
    try_spawn_standalone(extra).unwrap_or_else(|err| panic!("{err:#}"))
}

pub fn try_spawn_standalone(extra: &[&str]) -> anyhow::Result<BrokerProcess> {
    let dir = tempfile::Builder::new()
        .prefix("flymq-test-")
        .tempdir()
        .context("cannot create a data directory")?;
    let data_dir = dir.path().to_string_lossy().into_owned();
    let mut args: Vec<String> = vec![
        "--data-dir".into(),
        data_dir,
        "--bind-addr".into(),
        "127.0.0.1:0".into(),
        "--set".into(),
        "metrics_addr=127.0.0.1:0".into(),
        "--set".into(),
        "health_addr=127.0.0.1:0".into(),
        "--set".into(),
        "admin_addr=127.0.0.1:0".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut broker = try_spawn_flymq(&args)?;
    broker.data_dir = Some(dir);
    Ok(broker)
}

pub fn try_spawn_flymq<I, S>(args: I) -> anyhow::Result<BrokerProcess>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    try_spawn_flymq_env(args, std::iter::empty::<(String, String)>())
}

/// Like [`try_spawn_flymq`], with extra environment variables (`POD_IP`, `FLYMQ_SEEDS`, ...).
pub fn try_spawn_flymq_env<I, S, E>(args: I, env: E) -> anyhow::Result<BrokerProcess>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
    E: IntoIterator<Item = (String, String)>,
{
    try_spawn_flymq_wrapped(&[], args, env)
}

/// Like [`try_spawn_flymq_env`], with the broker started through `wrapper`
/// (e.g. `["ip", "netns", "exec", "ns1"]`, which execs the broker in place,
/// so killing the process kills the broker).
pub fn try_spawn_flymq_wrapped<I, S, E>(wrapper: &[&str], args: I, env: E) -> anyhow::Result<BrokerProcess>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
    E: IntoIterator<Item = (String, String)>,
{
    let bin = flymq_binary()?;
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    // JSON logs at info level, whatever the test process's environment
    // says, unless FLYMQ_TEST_BROKER_LOG_LEVEL asks for more (to diagnose a
    // test); a test's own `env` is applied after, so it can set them.
    command
        .env_remove("FLYMQ_LOG_JSON")
        .env_remove("FLYMQ_LOG_LEVEL")
        .env_remove("RUST_LOG");
    if let Ok(level) = std::env::var("FLYMQ_TEST_BROKER_LOG_LEVEL") {
        command.env("FLYMQ_LOG_LEVEL", level);
    }
    command
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr pipe"))?;

    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let thread_log = log.clone();
    // Keeps draining stderr for the process lifetime so the broker never blocks on a full pipe.
    std::thread::Builder::new()
        .name("flymq-stderr".into())
        .spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(info) = parse_ready_line(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(info);
                }
                if let Ok(mut l) = thread_log.lock() {
                    l.push(line);
                }
            }
        })
        .context("cannot start the stderr reader thread")?;

    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(ready) => {
                return Ok(BrokerProcess {
                    child,
                    ready,
                    log,
                    data_dir: None,
                });
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // stderr closed without a ready line: the process is exiting.
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(50)),
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Let the reader thread collect the last lines.
            std::thread::sleep(Duration::from_millis(100));
            let output = log.lock().map(|l| l.join("\n")).unwrap_or_default();
            bail!(
                "flymq ({}) exited with {status} before it was ready; its output:\n{output}",
                bin.display()
            );
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let output = log.lock().map(|l| l.join("\n")).unwrap_or_default();
            bail!(
                "flymq ({}) printed no `{READY_MESSAGE}` line within {:?}; its output:\n{output}",
                bin.display(),
                READY_TIMEOUT
            );
        }
    }
}

/// `(passed, failed)` from a summary line exactly like `12 passed, 0 failed`
/// (what `tests/conformance/test_wire.py` prints last).
pub fn parse_pass_fail_summary(line: &str) -> Option<(u64, u64)> {
    let (passed, failed) = line.trim().split_once(" passed, ")?;
    let failed = failed.strip_suffix(" failed")?;
    Some((passed.parse().ok()?, failed.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_is_parsed() {
        assert_eq!(parse_pass_fail_summary("85 passed, 0 failed"), Some((85, 0)));
        assert_eq!(parse_pass_fail_summary("3 passed, 2 failed\n"), Some((3, 2)));
        assert_eq!(parse_pass_fail_summary("OK"), None);
        assert_eq!(parse_pass_fail_summary("x passed, 0 failed"), None);
        assert_eq!(parse_pass_fail_summary("1 passed, 0 failed, 2 skipped"), None);
    }

    #[test]
    fn ready_line_is_parsed() {
        let line = r#"{"timestamp":"2025-01-01T00:00:00Z","level":"INFO","message":"FlyMQ broker ready","client":"127.0.0.1:40123","metrics":"127.0.0.1:40124","health":"127.0.0.1:40125","node_id":1,"target":"flymq_broker"}"#;
        let info = parse_ready_line(line).unwrap();
        assert_eq!(info.client, "127.0.0.1:40123".parse().unwrap());
        assert_eq!(info.metrics, Some("127.0.0.1:40124".parse().unwrap()));
        assert_eq!(info.health, Some("127.0.0.1:40125".parse().unwrap()));
        assert!(parse_ready_line(r#"{"message":"topic created","client":"127.0.0.1:1"}"#).is_none());
        assert!(parse_ready_line("FlyMQ broker ready client=127.0.0.1:1").is_none());
        assert!(
            parse_ready_line(r#"{"message":"FlyMQ broker ready"}"#).is_none(),
            "no client address"
        );
    }
}
