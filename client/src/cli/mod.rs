//! `flymq-cli` commands. Each submodule runs one command group against a
//! [`Client`] and prints through [`output::Output`].

pub mod args;
mod cluster;
mod consume;
mod groups;
pub mod output;
mod produce;
mod topic;

use anyhow::Context;
use flymq_client::{Client, ClientConfig, Credentials, parse_bootstrap};

use crate::bench;
use args::{Cli, Command};
use output::Output;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Output::new(cli.output);
    let config = client_config(&cli)?;
    let command = match cli.command {
        Command::Bench(cmd) => return bench::run(cmd, config, out).await,
        // Membership commands talk to the admin API only: no broker
        // connection on the binary protocol is needed.
        Command::Cluster(cmd) if cmd.uses_admin_api() => {
            return cluster::run_admin(&cli.admin, cli.timeout, cmd, out).await;
        }
        Command::Topic(cmd) if cmd.uses_admin_api() => {
            return topic::run_admin(&cli.admin, cli.timeout, cmd, out).await;
        }
        other => other,
    };
    let client = Client::connect(config).await?;
    match command {
        Command::Topic(cmd) => topic::run(&client, cmd, out).await,
        Command::Produce(args) => produce::run(&client, args, out).await,
        Command::Consume(args) => consume::consume(&client, args, out).await,
        Command::Subscribe(args) => consume::subscribe(&client, args, out).await,
        Command::Groups(cmd) => groups::run(&client, cmd, out).await,
        Command::Cluster(cmd) => cluster::run(&client, cmd, out).await,
        Command::Bench(_) => Ok(()),
    }
}

/// Client settings from the global options.
fn client_config(cli: &Cli) -> anyhow::Result<ClientConfig> {
    let bootstrap = parse_bootstrap(&cli.bootstrap).context("invalid --bootstrap / FLYMQ_BOOTSTRAP")?;
    Ok(ClientConfig {
        bootstrap,
        connect_timeout: cli.timeout,
        request_timeout: cli.timeout,
        connect_rounds: 1,
        credentials: cli
            .username
            .as_ref()
            .map(|user| Credentials::new(user.clone(), cli.password.clone().unwrap_or_default())),
        ..ClientConfig::default()
    })
}
