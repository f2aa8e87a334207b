//! `flymq-cli` commands. Each submodule runs one command group against a
//! [`Client`] and prints through [`output::Output`].

pub mod args;
mod cluster;
mod consume;
mod groups;
pub mod output;
mod produce;
mod schema;
mod security;
mod topic;

use std::path::Path;

use anyhow::Context;
use flymq_client::admin::AdminOptions;
use flymq_client::{Client, ClientConfig, ClientTlsOptions, Credentials, parse_bootstrap};

use crate::bench;
use args::{Cli, Command, TlsArgs};
use output::Output;

/// Environment variable holding the password of --username.
pub const PASSWORD_ENV: &str = "FLYMQ_PASSWORD";

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Output::new(cli.output);
    let config = client_config(&cli)?;
    let admin = admin_options(&cli, &config);
    let command = match cli.command {
        Command::Bench(cmd) => return bench::run(cmd, config, out).await,
        // Membership commands talk to the admin API only: no broker
        // connection on the binary protocol is needed.
        Command::Cluster(cmd) if cmd.uses_admin_api() => {
            return cluster::run_admin(&cli.admin, &admin, cli.timeout, cmd, out).await;
        }
        Command::Topic(cmd) if cmd.uses_admin_api() => {
            return topic::run_admin(&cli.admin, &admin, cli.timeout, cmd, out).await;
        }
        other => other,
    };
    let client = Client::connect(config.clone()).await?;
    match command {
        Command::Topic(cmd) => topic::run(&client, cmd, out).await,
        Command::Produce(args) => produce::run(&client, args, out).await,
        Command::Schema(cmd) => schema::run(&client, cmd, out).await,
        Command::Consume(args) => consume::consume(&client, args, out).await,
        Command::Subscribe(args) => consume::subscribe(&client, args, out).await,
        Command::Groups(cmd) => groups::run(&client, cmd, out).await,
        Command::Cluster(cmd) => cluster::run(&client, cmd, out).await,
        Command::User(cmd) => security::user(&client, config.credentials.as_ref(), cmd, out).await,
        Command::Role(cmd) => security::role(&client, cmd, out).await,
        Command::Acl(cmd) => security::acl(&client, cmd, out).await,
        Command::Audit(cmd) => security::audit(&client, cmd, out).await,
        Command::Whoami => security::whoami(&client, out).await,
        Command::Bench(_) => Ok(()),
    }
}

/// Client settings from the global options.
fn client_config(cli: &Cli) -> anyhow::Result<ClientConfig> {
    let bootstrap = parse_bootstrap(&cli.bootstrap).context("invalid --bootstrap / FLYMQ_BOOTSTRAP")?;
    let credentials = match &cli.username {
        Some(user) => Some(Credentials::new(user.clone(), password(cli.password_file.as_deref())?)),
        None => None,
    };
    Ok(ClientConfig {
        bootstrap,
        connect_timeout: cli.timeout,
        request_timeout: cli.timeout,
        connect_rounds: 1,
        credentials,
        tls: tls_options(&cli.tls),
        ..ClientConfig::default()
    })
}

/// Admin API settings: the same TLS options and credentials, except that an
/// `http://` admin address forces plaintext.
fn admin_options(cli: &Cli, config: &ClientConfig) -> AdminOptions {
    let plaintext = cli.admin.trim().starts_with("http://");
    AdminOptions {
        connect_timeout: cli.timeout,
        tls: if plaintext { None } else { config.tls.clone() },
        credentials: config.credentials.clone(),
    }
}

fn tls_options(args: &TlsArgs) -> Option<ClientTlsOptions> {
    args.enabled().then(|| ClientTlsOptions {
        ca_file: args.tls_ca.clone(),
        client_cert_file: args.tls_cert.clone(),
        client_key_file: args.tls_key.clone(),
        server_name: args.tls_server_name.clone(),
        insecure_skip_verify: args.tls_insecure_skip_verify,
    })
}

/// The password of --username: the first line of --password-file, else
/// FLYMQ_PASSWORD.
fn password(file: Option<&Path>) -> anyhow::Result<String> {
    if let Some(path) = file {
        return first_line_of_file(path).with_context(|| format!("cannot read the password file {}", path.display()));
    }
    match std::env::var(PASSWORD_ENV) {
        Ok(password) => Ok(password),
        Err(_) => anyhow::bail!(
            "--username needs a password: set {PASSWORD_ENV} or give --password-file (a password is never taken from a flag)"
        ),
    }
}

/// The first line of a file, without its line ending.
pub(crate) fn first_line_of_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(first_line(&text))
}

pub(crate) fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r')
        .to_owned()
}
