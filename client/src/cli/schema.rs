//! `schema register|list|get|validate|delete`: the broker's schema registry.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use flymq_client::{Client, Error, SchemaEntry};
use serde_json::json;

use crate::cli::args::SchemaCommand;
use crate::cli::output::Output;

/// Runs a `schema` subcommand.
pub async fn run(client: &Client, cmd: SchemaCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        SchemaCommand::Register {
            name,
            schema_type,
            file,
        } => {
            let definition = read_input(&file, "schema definition")?;
            if definition.is_empty() {
                bail!("the schema definition in {} is empty", shown(&file));
            }
            let version = client.register_schema(&name, schema_type, definition).await?;
            out.item(
                || format!("registered schema '{name}' version {version} ({schema_type})"),
                json!({"schema": name, "type": schema_type.as_str(), "version": version}),
            )?;
        }
        SchemaCommand::List { name } => {
            let schemas = client.list_schemas(name.as_deref().unwrap_or_default()).await?;
            if !out.is_json() && schemas.is_empty() {
                match &name {
                    Some(name) => eprintln!("no schema named '{name}'"),
                    None => eprintln!("no schemas"),
                }
                return Ok(());
            }
            out.table(
                &["SCHEMA", "TYPE", "VERSION"],
                &schemas,
                |s| vec![s.name.clone(), s.schema_type.clone(), s.version.to_string()],
                entry_json,
            )?;
        }
        SchemaCommand::Get { name, version } => {
            let entry = client
                .get_schema(&name, version.unwrap_or(0))
                .await
                .map_err(|e| explain(e, &name))?;
            out.item(
                || {
                    format!(
                        "schema '{}' version {} ({})",
                        entry.name, entry.version, entry.schema_type
                    )
                },
                entry_json(&entry),
            )?;
        }
        SchemaCommand::Validate { name, message, file } => {
            let message = match (message, file) {
                (Some(message), _) => message.into_bytes(),
                (None, Some(file)) => read_input(&file, "message")?,
                (None, None) => bail!("give the message as an argument, or --file PATH (`-` for stdin)"),
            };
            let result = client.validate_schema(&name, message).await?;
            if result.valid && client.list_schemas(&name).await?.is_empty() {
                // The broker accepts anything for a name without a schema
                // (WIRE.md §10.4); a typo should not look like a pass.
                eprintln!("note: no schema named '{name}' is registered; the broker accepts any message for it");
            }
            out.item(
                || {
                    if result.valid {
                        format!("valid against schema '{name}'")
                    } else {
                        let mut text = format!("not valid against schema '{name}':");
                        for problem in &result.errors {
                            text.push_str("\n  ");
                            text.push_str(problem);
                        }
                        text
                    }
                },
                json!({"schema": name, "valid": result.valid, "errors": result.errors}),
            )?;
            if !result.valid {
                bail!(
                    "the message is not valid against schema '{name}' ({} problem(s))",
                    result.errors.len()
                );
            }
        }
        SchemaCommand::Delete { name, version } => {
            let message = client
                .delete_schema(&name, version.unwrap_or(0))
                .await
                .map_err(|e| explain(e, &name))?;
            out.item(
                || match version {
                    Some(v) => format!("deleted version {v} of schema '{name}'"),
                    None => format!("deleted every version of schema '{name}' ({message})"),
                },
                json!({"schema": name, "version": version, "all_versions": version.is_none(), "deleted": true, "message": message}),
            )?;
        }
    }
    Ok(())
}

fn entry_json(entry: &SchemaEntry) -> serde_json::Value {
    json!({"schema": entry.name, "type": entry.schema_type, "version": entry.version})
}

/// A missing schema or version, said with what to do about it.
pub fn explain(err: Error, name: &str) -> anyhow::Error {
    match &err {
        Error::Server { message, .. } if err.is_schema_not_found() && message.starts_with("schema not found:") => {
            anyhow::anyhow!("{message}; list its versions with `flymq-cli schema list {name}`")
        }
        _ if err.is_schema_not_found() => anyhow::anyhow!(
            "schema '{name}' does not exist; register it with `flymq-cli schema register {name} --type json --file PATH` \
             (`flymq-cli schema list` shows the registered schemas)"
        ),
        _ => err.into(),
    }
}

/// The bytes of `path`, or of stdin when it is `-`.
fn read_input(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read the {what} from stdin"))?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("cannot read the {what} file {}", path.display()))
}

fn shown(path: &Path) -> String {
    if path == Path::new("-") {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    }
}
