//! `user`, `role`, `acl`, `audit` and `whoami` (binary protocol opcodes
//! 0x72-0x7D and 0x80/0x81). Passwords are read from files, stdin or the
//! environment, never from flags, and never printed.

use std::io::BufRead;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use flymq_client::{Client, Credentials, UserUpdate};
use flymq_proto::{AuditEvent, AuditQuery, UserInfo};
use serde_json::{Value, json};

use super::args::{AclCommand, AuditCommand, AuditFilter, ExportFormat, NewPasswordArgs, RoleCommand, UserCommand};
use super::output::Output;
use super::{first_line, first_line_of_file};

/// Environment variable holding a new password (`user create`, `user passwd`).
pub const NEW_PASSWORD_ENV: &str = "FLYMQ_NEW_PASSWORD";

/// The new password: --new-password-file, --new-password-stdin or FLYMQ_NEW_PASSWORD.
fn new_password(args: &NewPasswordArgs) -> anyhow::Result<String> {
    let password = if let Some(path) = &args.new_password_file {
        first_line_of_file(path).with_context(|| format!("cannot read the new password file {}", path.display()))?
    } else if args.new_password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the new password from stdin")?;
        first_line(&line)
    } else if let Ok(password) = std::env::var(NEW_PASSWORD_ENV) {
        password
    } else {
        anyhow::bail!(
            "no new password given: use --new-password-file, --new-password-stdin or {NEW_PASSWORD_ENV} (never a flag value)"
        );
    };
    if password.is_empty() {
        anyhow::bail!("the new password is empty");
    }
    Ok(password)
}

fn user_json(user: &UserInfo) -> Value {
    json!({
        "username": user.username,
        "roles": user.roles,
        "permissions": user.permissions,
        "enabled": user.enabled,
        "created": user.created,
        "updated": user.updated,
    })
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "-".into() } else { items.join(",") }
}

/// Runs a `user` subcommand. `credentials` are the caller's (for `passwd`
/// of the own account).
pub async fn user(
    client: &Client,
    credentials: Option<&Credentials>,
    cmd: UserCommand,
    out: Output,
) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create {
            name: username,
            roles,
            password,
        } => {
            let password = new_password(&password)?;
            let info = client.create_user(&username, &password, roles).await?;
            out.item(
                || format!("created user '{}' with roles {}", info.username, list(&info.roles)),
                json!({"created": true, "user": user_json(&info)}),
            )?;
        }
        UserCommand::Update {
            name: username,
            roles,
            no_roles,
            enable,
            disable,
        } => {
            let current = client.get_user(&username).await?;
            let update = UserUpdate {
                roles: if no_roles {
                    Vec::new()
                } else if roles.is_empty() {
                    current.roles
                } else {
                    roles
                },
                enabled: if enable {
                    true
                } else if disable {
                    false
                } else {
                    current.enabled
                },
            };
            client.update_user(&username, update.clone()).await?;
            out.item(
                || {
                    format!(
                        "updated user '{username}': roles {}, {}",
                        list(&update.roles),
                        if update.enabled { "enabled" } else { "disabled" }
                    )
                },
                json!({"updated": true, "username": username, "roles": update.roles, "enabled": update.enabled}),
            )?;
        }
        UserCommand::Delete { name: username } => {
            client.delete_user(&username).await?;
            out.item(
                || format!("deleted user '{username}'"),
                json!({"deleted": true, "username": username}),
            )?;
        }
        UserCommand::List => {
            let users = client.list_users().await?;
            out.table(
                &["USER", "ROLES", "ENABLED"],
                &users,
                |u| vec![u.username.clone(), list(&u.roles), u.enabled.to_string()],
                user_json,
            )?;
        }
        UserCommand::Get { name: username } => {
            let u = client.get_user(&username).await?;
            out.item(
                || {
                    format!(
                        "user {}\n  roles:       {}\n  permissions: {}\n  enabled:     {}\n  created:     {}\n  updated:     {}",
                        u.username,
                        list(&u.roles),
                        list(&u.permissions),
                        u.enabled,
                        u.created,
                        u.updated
                    )
                },
                user_json(&u),
            )?;
        }
        UserCommand::Passwd {
            name: username,
            password,
        } => {
            let own = credentials.map(|c| c.username.clone());
            let target = username
                .or_else(|| own.clone())
                .context("give the user whose password changes (or --username for your own)")?;
            let new = new_password(&password)?;
            // Changing your own password proves the old one; an
            // administrator changing someone else's needs none.
            let old = match credentials {
                Some(c) if c.username == target => c.password.clone(),
                _ => String::new(),
            };
            client.change_password(&target, &old, &new).await?;
            out.item(
                || format!("changed the password of '{target}'"),
                json!({"changed": true, "username": target}),
            )?;
        }
    }
    Ok(())
}

/// Runs a `role` subcommand.
pub async fn role(client: &Client, cmd: RoleCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        RoleCommand::List => {
            let roles = client.list_roles().await?;
            out.table(
                &["ROLE", "PERMISSIONS", "DESCRIPTION"],
                &roles,
                |r| vec![r.name.clone(), list(&r.permissions), r.description.clone()],
                |r| json!({"name": r.name, "permissions": r.permissions, "description": r.description}),
            )?;
        }
    }
    Ok(())
}

/// Runs an `acl` subcommand.
pub async fn acl(client: &Client, cmd: AclCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        AclCommand::Set {
            topic,
            public,
            users,
            roles,
        } => {
            client.set_acl(&topic, public, users.clone(), roles.clone()).await?;
            out.item(
                || {
                    format!(
                        "set ACL of '{topic}': {}, users {}, roles {}",
                        if public { "public" } else { "private" },
                        list(&users),
                        list(&roles)
                    )
                },
                json!({"topic": topic, "public": public, "users": users, "roles": roles, "set": true}),
            )?;
        }
        AclCommand::Get { topic } => {
            let acl = client.get_acl(&topic).await?;
            out.item(
                || {
                    if acl.exists {
                        format!(
                            "ACL of '{}': {}, users {}, roles {}",
                            acl.topic,
                            if acl.public { "public" } else { "private" },
                            list(&acl.users),
                            list(&acl.roles)
                        )
                    } else {
                        format!(
                            "no ACL for '{}'; topics without an ACL are {}",
                            acl.topic,
                            if acl.default_public { "public" } else { "private" }
                        )
                    }
                },
                json!({"topic": acl.topic, "exists": acl.exists, "public": acl.public,
                       "default_public": acl.default_public, "users": acl.users, "roles": acl.roles}),
            )?;
        }
        AclCommand::Delete { topic } => {
            client.delete_acl(&topic).await?;
            out.item(
                || format!("deleted the ACL of '{topic}'"),
                json!({"topic": topic, "deleted": true}),
            )?;
        }
        AclCommand::List => {
            let acls = client.list_acls().await?;
            out.table(
                &["TOPIC", "PUBLIC", "USERS", "ROLES"],
                &acls.entries,
                |a| vec![a.topic.clone(), a.public.to_string(), list(&a.users), list(&a.roles)],
                |a| json!({"topic": a.topic, "public": a.public, "users": a.users, "roles": a.roles}),
            )?;
            if !out.is_json() {
                eprintln!(
                    "topics without an ACL are {}",
                    if acls.default_public { "public" } else { "private" }
                );
            }
        }
    }
    Ok(())
}

fn audit_query(filter: &AuditFilter) -> AuditQuery {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let ago = |d: std::time::Duration| (now - d.as_secs() as i64).max(1);
    AuditQuery {
        start: filter.since.map_or(0, ago),
        end: filter.until.map_or(0, ago),
        event_types: filter.event_types.clone(),
        user: filter.user.clone().unwrap_or_default(),
        resource: filter.resource.clone().unwrap_or_default(),
        result: filter.result.clone().unwrap_or_default(),
        search: filter.search.clone().unwrap_or_default(),
        limit: i32::try_from(filter.limit).unwrap_or(i32::MAX),
        offset: i32::try_from(filter.offset).unwrap_or(i32::MAX),
    }
}

fn event_json(e: &AuditEvent) -> Value {
    let details: serde_json::Map<String, Value> = e
        .details
        .iter()
        .map(|d| (d.key.clone(), Value::String(d.value.clone())))
        .collect();
    json!({
        "id": e.id, "timestamp_ms": e.timestamp_ms, "type": e.event_type, "user": e.user,
        "client_ip": e.client_ip, "resource": e.resource, "action": e.action, "result": e.result,
        "node_id": e.node_id, "details": details,
    })
}

fn format_time(ms: i64) -> String {
    let secs = u64::try_from(ms / 1000).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

/// Runs an `audit` subcommand.
pub async fn audit(client: &Client, cmd: AuditCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Query { filter } => {
            let page = client.audit_query(audit_query(&filter)).await?;
            out.table(
                &["TIME", "TYPE", "USER", "CLIENT", "RESOURCE", "ACTION", "RESULT"],
                &page.events,
                |e| {
                    vec![
                        format_time(e.timestamp_ms),
                        e.event_type.clone(),
                        e.user.clone(),
                        e.client_ip.clone(),
                        e.resource.clone(),
                        e.action.clone(),
                        e.result.clone(),
                    ]
                },
                event_json,
            )?;
            if !out.is_json() {
                eprintln!(
                    "{} of {} matching event(s){}",
                    page.events.len(),
                    page.total,
                    if page.has_more {
                        format!("; more with --offset {}", filter.offset as usize + page.events.len())
                    } else {
                        String::new()
                    }
                );
            }
        }
        AuditCommand::Export {
            filter,
            format,
            out: path,
        } => {
            let format = match format {
                ExportFormat::Json => "json",
                ExportFormat::Csv => "csv",
            };
            let export = client.audit_export(audit_query(&filter), format).await?;
            match path {
                Some(path) => {
                    std::fs::write(&path, &export.data)
                        .with_context(|| format!("cannot write the export to {}", path.display()))?;
                    out.item(
                        || {
                            format!(
                                "wrote {} bytes of {} to {}",
                                export.data.len(),
                                export.format,
                                path.display()
                            )
                        },
                        json!({"path": path, "format": export.format, "bytes": export.data.len()}),
                    )?;
                }
                None => {
                    use std::io::Write;
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&export.data)?;
                    if !export.data.ends_with(b"\n") {
                        stdout.write_all(b"\n")?;
                    }
                    stdout.flush()?;
                }
            }
        }
    }
    Ok(())
}

/// Runs `whoami`.
pub async fn whoami(client: &Client, out: Output) -> anyhow::Result<()> {
    let who = client.whoami().await?;
    out.item(
        || {
            if who.authenticated {
                format!(
                    "{} (roles {}, permissions {})",
                    who.username,
                    list(&who.roles),
                    list(&who.permissions)
                )
            } else {
                "not authenticated".into()
            }
        },
        json!({"authenticated": who.authenticated, "username": who.username,
               "roles": who.roles, "permissions": who.permissions}),
    )?;
    Ok(())
}
