//! Client configuration.

use std::time::Duration;

use flymq_security::tls::ClientTlsOptions;

use crate::error::{Error, Result};

/// Default broker address, as used by the other FlyMQ clients.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// Settings of a [`Client`](crate::Client).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Broker addresses (`host:port`) tried in order when (re)connecting.
    pub bootstrap: Vec<String>,
    /// How long one TCP connect attempt may take.
    pub connect_timeout: Duration,
    /// How long a request may wait for its response; a broker that does not
    /// answer in time is treated as gone and the connection is dropped.
    pub request_timeout: Duration,
    /// Requests that may be outstanding on the connection at once
    /// (pipelining depth). At least 1.
    pub max_in_flight: usize,
    /// Rounds over the whole bootstrap list before giving up on connecting.
    pub connect_rounds: u32,
    /// Pause between two rounds over the bootstrap list.
    pub reconnect_backoff: Duration,
    /// User to authenticate as (AUTH) on every new connection, including
    /// each reconnect; `None` sends no AUTH.
    pub credentials: Option<Credentials>,
    /// Implicit TLS (WIRE.md §7): the handshake starts right after the TCP
    /// connect; `None` = plaintext.
    pub tls: Option<ClientTlsOptions>,
    /// Send a health check this often while the client exists (keeps an
    /// idle connection open through NAT and idle timeouts, and finds a dead
    /// one early); `None` = never.
    pub keep_alive: Option<Duration>,
}

/// A user name and password for brokers with authentication enabled.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password (never printed by `Debug`).
    pub password: String,
}

impl Credentials {
    /// Credentials for `username`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            bootstrap: vec![DEFAULT_BOOTSTRAP.to_owned()],
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_in_flight: 256,
            connect_rounds: 3,
            reconnect_backoff: Duration::from_millis(200),
            credentials: None,
            tls: None,
            keep_alive: None,
        }
    }
}

impl ClientConfig {
    /// Default settings with the given bootstrap addresses.
    pub fn new<I, S>(bootstrap: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            bootstrap: bootstrap.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Parses a comma-separated bootstrap list (`"a:9092,b:9092"`), the
    /// format of `--bootstrap` and `FLYMQ_BOOTSTRAP`.
    pub fn from_bootstrap_list(list: &str) -> Result<Self> {
        let bootstrap = parse_bootstrap(list)?;
        Ok(Self {
            bootstrap,
            ..Self::default()
        })
    }

    /// Authenticates as `credentials` on every connection.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Connects over TLS with `tls`.
    pub fn with_tls(mut self, tls: ClientTlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sends a health check every `interval`.
    pub fn with_keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = Some(interval);
        self
    }

    /// Checks that the settings can work.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap.is_empty() {
            return Err(Error::Config(
                "bootstrap list is empty; give at least one broker address such as 127.0.0.1:9092".into(),
            ));
        }
        for addr in &self.bootstrap {
            check_address(addr)?;
        }
        if self.max_in_flight == 0 {
            return Err(Error::Config("max_in_flight must be at least 1".into()));
        }
        if self.connect_rounds == 0 {
            return Err(Error::Config("connect_rounds must be at least 1".into()));
        }
        if let Some(credentials) = &self.credentials
            && credentials.username.is_empty()
        {
            return Err(Error::Config("the user name of the credentials is empty".into()));
        }
        Ok(())
    }
}

/// Splits a comma-separated address list, trimming blanks and rejecting
/// entries that are not `host:port`.
pub fn parse_bootstrap(list: &str) -> Result<Vec<String>> {
    let addrs: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if addrs.is_empty() {
        return Err(Error::Config(format!(
            "bootstrap list '{list}' has no address; expected host:port[,host:port...]"
        )));
    }
    for addr in &addrs {
        check_address(addr)?;
    }
    Ok(addrs)
}

pub(crate) fn check_address(addr: &str) -> Result<()> {
    let valid = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "broker address '{addr}' is not host:port (for example 127.0.0.1:9092)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comma_separated_list() {
        let addrs = parse_bootstrap(" a:1, b:2 ,,[::1]:9092").expect("valid list");
        assert_eq!(addrs, vec!["a:1", "b:2", "[::1]:9092"]);
    }

    #[test]
    fn rejects_bad_addresses() {
        assert!(parse_bootstrap("").is_err());
        assert!(parse_bootstrap("localhost").is_err());
        assert!(parse_bootstrap("localhost:notaport").is_err());
        assert!(parse_bootstrap(":9092").is_err());
        let err = parse_bootstrap("a:1,b").unwrap_err().to_string();
        assert!(err.contains("'b'"), "{err}");
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let text = format!("{:?}", Credentials::new("alice", "s3cret"));
        assert!(text.contains("alice") && !text.contains("s3cret"), "{text}");
    }

    #[test]
    fn validate_checks_limits() {
        let mut cfg = ClientConfig::default();
        assert!(cfg.validate().is_ok());
        cfg.max_in_flight = 0;
        assert!(cfg.validate().is_err());
        let cfg = ClientConfig::new(Vec::<String>::new());
        assert!(cfg.validate().is_err());
    }
}
