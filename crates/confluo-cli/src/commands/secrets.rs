//! `confluo secrets`: the encrypted secret store that `secret('scope', 'key')` reads
//! (connection passwords). Values are read from standard input, never from arguments, and
//! never printed.

use std::io::Read;

use clap::{Args, Subcommand};

use confluo_govern::Secrets;

use super::{CmdResult, Context};
use crate::render::{grid, moment};
use crate::report::CliError;

/// `confluo secrets`.
#[derive(Debug, Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Save a secret (replacing one of the same scope and key). The value is read from
    /// standard input (one trailing newline is dropped).
    Put {
        /// The scope: a group of secrets, often one per system (`shop`).
        scope: String,
        /// The key within the scope (`pg-password`).
        key: String,
    },
    /// List scopes and keys (never values).
    List {
        /// Only this scope.
        scope: Option<String>,
    },
    /// Delete a secret.
    Delete {
        /// The scope.
        scope: String,
        /// The key.
        key: String,
    },
}

fn fail(e: impl std::fmt::Display) -> CliError {
    CliError::from(anyhow::anyhow!("{e}"))
}

/// Runs `confluo secrets`.
pub async fn run(ctx: &Context, args: SecretsArgs) -> CmdResult {
    let (_project, lh) = ctx.lakehouse().await?;
    let secrets = Secrets::new(&lh);
    match args.command {
        SecretsCommand::Put { scope, key } => {
            let mut value = String::new();
            std::io::stdin().read_to_string(&mut value)?;
            let value = value
                .strip_suffix('\n')
                .map(|v| v.strip_suffix('\r').unwrap_or(v))
                .unwrap_or(&value);
            if value.is_empty() {
                return Err(fail(format!(
                    "no value for secret('{scope}', '{key}'): pipe it in, e.g. `printf %s \"$PW\" | confluo secrets put {scope} {key}`"
                )));
            }
            secrets.put(&scope, &key, value).await.map_err(fail)?;
            println!("saved secret('{scope}', '{key}')");
        }
        SecretsCommand::List { scope } => {
            let rows = secrets
                .list(scope.as_deref())
                .await
                .map_err(fail)?
                .into_iter()
                .map(|(s, k, at)| vec![s, k, moment(at)])
                .collect();
            print!("{}", grid(&["scope", "key", "updated"], rows));
        }
        SecretsCommand::Delete { scope, key } => {
            if secrets.delete(&scope, &key).await.map_err(fail)? {
                println!("deleted secret('{scope}', '{key}')");
            } else {
                return Err(fail(format!("secret('{scope}', '{key}') does not exist")));
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
