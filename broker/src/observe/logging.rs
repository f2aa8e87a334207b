//! `tracing` setup: JSON lines by default, human-readable on request.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `level` is an `EnvFilter` directive
/// (`info`, `debug`, `flymq_broker=debug,info`, ...).
pub fn init(level: &str, json: bool) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("invalid log level '{level}': {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // A subscriber may already be installed (tests); that is fine.
    let _ = result;
    Ok(())
}
