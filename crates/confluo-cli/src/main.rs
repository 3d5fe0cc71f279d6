//! `confluo`: move data into a governed Delta lakehouse, transform and check it with SQL.

mod commands;
mod progress;
mod render;
mod report;
mod signals;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Confluo: data integration into a Delta Lake lakehouse, in one binary.
#[derive(Debug, Parser)]
#[command(name = "confluo", version, about, propagate_version = true)]
struct Cli {
    /// The project folder (default: found by walking up from the current folder).
    #[arg(long, global = true, value_name = "DIR", env = "CONFLUO_PROJECT")]
    project: Option<PathBuf>,
    /// Less output: no progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the customer-360 example end to end: generate CRM, marketing and support files,
    /// run the bronze → silver → gold pipeline, print the answers.
    Demo(commands::demo::DemoArgs),
    /// Create a new project with a commented confluo.yaml.
    Init(commands::init::InitArgs),
    /// Load files (CSV, JSON, Parquet, Avro) into a Delta table; files already loaded are skipped.
    Ingest(commands::ingest::IngestArgs),
    /// Run SQL and print the result.
    Query(commands::query::QueryArgs),
    /// Interactive SQL shell with history.
    Sql(commands::shell::ShellArgs),
    /// List, test and explore the project's connections to external systems.
    Connections(commands::connections::ConnectionsArgs),
    /// Sync `ingest:` entries: copy source tables into lakehouse tables.
    Sync(commands::sync::SyncArgs),
    /// Check a pipeline's SQL (names, types, cycles, expectations) and print its graph.
    Validate(commands::pipeline::ValidateArgs),
    /// Update a pipeline: new input only, in dependency order.
    Run(commands::pipeline::RunArgs),
    /// List a pipeline's updates.
    Runs(commands::pipeline::RunsArgs),
    /// Print the events of one update.
    Events(commands::pipeline::EventsArgs),
    /// Jobs: list them, run one now, and read past runs, their tasks and logs.
    Jobs(commands::jobs::JobsArgs),
    /// Data quality: run the monitors of confluo.yaml, see each check's status, profile a table.
    Monitor(commands::monitor::MonitorArgs),
    /// Serve the lakehouse over the Postgres wire protocol and run the project's job
    /// schedules, until stopped (SIGTERM/Ctrl-C).
    Serve(commands::serve::ServeArgs),
    /// Users and service principals who may connect to `confluo serve`; their logins.
    Users(commands::users::UsersArgs),
    /// The encrypted secret store read by `secret('scope', 'key')` (connection passwords).
    Secrets(commands::secrets::SecretsArgs),
    /// Compare a source table with a lakehouse table: counts, checksums per key range, differing keys.
    Verify(commands::verify::VerifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONFLUO_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,deltalake=error,datafusion=error")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = commands::Context {
        project_dir: cli.project,
        quiet: cli.quiet,
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo(a) => commands::demo::run(&ctx, a).await,
            Command::Init(a) => commands::init::run(&ctx, a).await,
            Command::Ingest(a) => commands::ingest::run(&ctx, a).await,
            Command::Query(a) => commands::query::run(&ctx, a).await,
            Command::Sql(a) => commands::shell::run(&ctx, a).await,
            Command::Connections(a) => commands::connections::run(&ctx, a).await,
            Command::Sync(a) => commands::sync::run(&ctx, a).await,
            Command::Jobs(a) => commands::jobs::run(&ctx, a).await,
            Command::Monitor(a) => commands::monitor::run(&ctx, a).await,
            Command::Serve(a) => commands::serve::run(&ctx, a).await,
            Command::Users(a) => commands::users::run(&ctx, a).await,
            Command::Secrets(a) => commands::secrets::run(&ctx, a).await,
            Command::Validate(a) => commands::pipeline::validate(&ctx, a).await,
            Command::Run(a) => commands::pipeline::run(&ctx, a).await,
            Command::Runs(a) => commands::pipeline::runs(&ctx, a).await,
            Command::Events(a) => commands::pipeline::events(&ctx, a).await,
            Command::Verify(a) => commands::verify::run(&ctx, a).await,
        }
    });
    // Do not wait for stray background tasks at exit.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            report::print_error(&e);
            ExitCode::FAILURE
        }
    }
}
