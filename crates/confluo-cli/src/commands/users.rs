//! `confluo users`: the people and service principals who may connect to `confluo serve`,
//! their groups, and the audit of their logins.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use confluo_govern::identity::generate_secret;
use confluo_govern::{Identity, PrincipalKind, Tokens};

use super::{CmdResult, Context};
use crate::render::{grid, moment};
use crate::report::CliError;

/// `confluo users`.
#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Add a user (or set a new password for one). The password is read from standard
    /// input (`--password-stdin`) or `CONFLUO_PASSWORD`; it is never an argument, which
    /// other users could see.
    Add {
        /// The login name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// A service principal (a job or an application): its secret is generated and
        /// printed once.
        #[arg(long)]
        service_principal: bool,
        /// Groups to add it to.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// List users, service principals and their groups.
    List,
    /// Remove a user or service principal.
    Remove {
        /// The login name.
        name: String,
    },
    /// Add a user to a group.
    Join {
        /// The login name.
        name: String,
        /// The group.
        group: String,
    },
    /// Remove a user from a group.
    Leave {
        /// The login name.
        name: String,
        /// The group.
        group: String,
    },
    /// Logins on every endpoint: who, from where, and what happened.
    Audit {
        /// How far back.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Personal access tokens: bearer tokens for the HTTP API.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token for a user; it is printed once and never stored.
    Create {
        /// Whose token.
        name: String,
        /// What it is for.
        #[arg(long)]
        comment: Option<String>,
        /// How long it lives (`90d`, `12h`); `never` for no expiry.
        #[arg(long, default_value = "90d")]
        expires: String,
    },
    /// List tokens (a user's, or everyone's).
    List {
        /// Only this user's.
        name: Option<String>,
    },
    /// Revoke a token by id (or the token itself).
    Revoke {
        /// The token's id (`confluo users token list`).
        id: String,
    },
}

fn fail(e: impl std::fmt::Display) -> CliError {
    CliError::from(anyhow::anyhow!("{e}"))
}

/// Runs `confluo users`.
pub async fn run(ctx: &Context, args: UsersArgs) -> CmdResult {
    let (_project, lh) = ctx.lakehouse().await?;
    let identity = Identity::new(lh.metastore().clone());
    match args.command {
        UsersCommand::Add {
            name,
            password_stdin,
            service_principal,
            groups,
        } => {
            let (kind, password, show) = if service_principal {
                (
                    PrincipalKind::ServicePrincipal,
                    generate_secret().map_err(fail)?,
                    true,
                )
            } else {
                (PrincipalKind::User, read_password(password_stdin)?, false)
            };
            let new = identity
                .add(&name, kind, &password, &groups)
                .await
                .map_err(fail)?;
            let what = if service_principal {
                "service principal"
            } else {
                "user"
            };
            if new {
                println!("added {what} {name}");
            } else {
                println!("set a new password for {what} {name}");
            }
            if show {
                println!("secret (shown once; use it as the password): {password}");
            }
        }
        UsersCommand::List => {
            let rows = identity
                .list()
                .await
                .map_err(fail)?
                .into_iter()
                .map(|p| {
                    vec![
                        p.name,
                        p.kind.replace('_', " "),
                        p.groups.join(", "),
                        moment(p.created_ms),
                    ]
                })
                .collect();
            print!("{}", grid(&["name", "kind", "groups", "created"], rows));
        }
        UsersCommand::Remove { name } => {
            identity.remove(&name).await.map_err(fail)?;
            println!("removed {name}");
        }
        UsersCommand::Join { name, group } => {
            identity
                .set_membership(&name, &group, true)
                .await
                .map_err(fail)?;
            println!("{name} is in group {group}");
        }
        UsersCommand::Leave { name, group } => {
            if identity
                .set_membership(&name, &group, false)
                .await
                .map_err(fail)?
            {
                println!("{name} left group {group}");
            } else {
                println!("{name} was not in group {group}");
            }
        }
        UsersCommand::Audit { since, user } => {
            let from = chrono::Utc::now().timestamp_millis() - since.as_millis() as i64;
            let rows = lh
                .metastore()
                .auth_events(user.as_deref(), from)
                .await
                .map_err(fail)?
                .into_iter()
                .map(|e| {
                    vec![
                        moment(e.at_ms),
                        e.principal,
                        e.client,
                        e.endpoint,
                        e.outcome,
                        e.message.unwrap_or_default(),
                    ]
                })
                .collect();
            print!(
                "{}",
                grid(
                    &["time", "user", "client", "endpoint", "outcome", "message"],
                    rows
                )
            );
        }
        UsersCommand::Token { command } => {
            token(&Tokens::new(lh.metastore().clone()), command).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `confluo users token ...`.
async fn token(tokens: &Tokens, command: TokenCommand) -> Result<(), CliError> {
    match command {
        TokenCommand::Create {
            name,
            comment,
            expires,
        } => {
            let lifetime = if expires.eq_ignore_ascii_case("never") {
                None
            } else {
                Some(humantime::parse_duration(&expires).map_err(|e| {
                    fail(format!(
                        "--expires {expires}: {e} (write a duration such as 90d or 12h, or never)"
                    ))
                })?)
            };
            let (row, secret) = tokens
                .create(&name, comment.as_deref(), lifetime)
                .await
                .map_err(fail)?;
            println!(
                "token {} for {name}, {}",
                row.token_id,
                row.expires_ms
                    .map(|e| format!("expires {}", moment(e)))
                    .unwrap_or_else(|| "never expires".into())
            );
            println!("{secret}");
            eprintln!("(shown once: send it as `Authorization: Bearer <token>`)");
        }
        TokenCommand::List { name } => {
            let now = chrono::Utc::now().timestamp_millis();
            let rows = tokens
                .list(name.as_deref())
                .await
                .map_err(fail)?
                .into_iter()
                .map(|t| {
                    let state = if t.revoked_ms.is_some() {
                        "revoked"
                    } else if t.expires_ms.is_some_and(|e| e <= now) {
                        "expired"
                    } else {
                        "live"
                    };
                    vec![
                        t.token_id,
                        t.principal,
                        state.to_string(),
                        moment(t.created_ms),
                        t.expires_ms.map(moment).unwrap_or_else(|| "never".into()),
                        t.last_used_ms.map(moment).unwrap_or_default(),
                        t.comment.unwrap_or_default(),
                    ]
                })
                .collect();
            print!(
                "{}",
                grid(
                    &[
                        "id",
                        "user",
                        "state",
                        "created",
                        "expires",
                        "last used",
                        "comment"
                    ],
                    rows
                )
            );
        }
        TokenCommand::Revoke { id } => {
            tokens.revoke(&id).await.map_err(fail)?;
            println!("revoked token {id}");
        }
    }
    Ok(())
}

/// The password: standard input's first line, or `CONFLUO_PASSWORD`.
fn read_password(from_stdin: bool) -> Result<String, CliError> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        if p.is_empty() {
            return Err(fail("--password-stdin: standard input had no password"));
        }
        return Ok(p);
    }
    if let Ok(p) = std::env::var("CONFLUO_PASSWORD") {
        return Ok(p);
    }
    let hint = if std::io::stdin().is_terminal() {
        "type it after `--password-stdin` and press Enter"
    } else {
        "pipe it in with --password-stdin"
    };
    Err(fail(format!(
        "no password given: use --password-stdin ({hint}) or set CONFLUO_PASSWORD"
    )))
}
