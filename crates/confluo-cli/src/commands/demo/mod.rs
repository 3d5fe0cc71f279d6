//! `confluo demo`: the customer-360 example end to end with no setup — generate three
//! systems' raw files, run the declarative pipeline over them (bronze → silver → gold), and
//! print the answers.

pub mod generate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;

use super::pipeline::RunArgs;
use super::{CmdResult, Context};
use crate::render::{OutputFormat, write_stream};
use confluo_sql::{SqlOutput, SqlSession};

/// The example's files, built into the binary so the demo needs nothing else.
const EXAMPLE_FILES: &[(&str, &str)] = &[
    (
        "confluo.yaml",
        include_str!("../../../../../examples/customer-360/confluo.yaml"),
    ),
    (
        "pipelines/01_bronze.sql",
        include_str!("../../../../../examples/customer-360/pipelines/01_bronze.sql"),
    ),
    (
        "pipelines/02_silver.sql",
        include_str!("../../../../../examples/customer-360/pipelines/02_silver.sql"),
    ),
    (
        "pipelines/03_gold.sql",
        include_str!("../../../../../examples/customer-360/pipelines/03_gold.sql"),
    ),
];

/// Arguments of `confluo demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to create (or reuse) the demo project.
    #[arg(long, default_value = "customer-360")]
    dir: PathBuf,
    /// Size of the generated data: 1 is about half a million raw rows (110 MB), 20 about ten
    /// million.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// How many quarters of exports to write (1-8, 2024 Q1 onwards). Run again with more
    /// quarters to see an incremental update process only the new files.
    #[arg(long, default_value_t = generate::QUARTERS)]
    quarters: u32,
    /// Seed of the generator: the same seed and scale always give the same files.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Only write the project and the raw files; do not run the pipeline.
    #[arg(long)]
    generate_only: bool,
    /// Inject a fault for the data quality monitors to catch: `missing-tickets` withholds
    /// the support export of 2024 Q3 (it is moved to `data/withheld/`).
    #[arg(long, value_enum)]
    fault: Option<Fault>,
}

/// A fault the demo can inject.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Fault {
    /// One quarter's support tickets never arrive.
    MissingTickets,
}

/// The export `--fault missing-tickets` withholds.
const WITHHELD: &str = "support/tickets_2024q3.csv";

/// The answers printed at the end: gold tables, queried with SQL.
const ANSWERS: &[(&str, &str)] = &[
    (
        "Which campaigns influence opportunities? (top 8 by opportunities per engaged customer)",
        "SELECT campaign_id, campaign_name, engaged_customers, influenced_opportunities,
                opportunities_per_engaged, influenced_revenue_won
         FROM campaign_influence
         ORDER BY opportunities_per_engaged DESC, campaign_id LIMIT 8",
    ),
    (
        "Do customers with frequent support tickets renew less?",
        "SELECT tickets_in_prior_year, renewals, renewed, renewal_rate
         FROM renewals_by_support_load ORDER BY bucket_floor",
    ),
    (
        "Which segments respond to which product features? (response rate)",
        "SELECT segment,
                max(CASE WHEN feature = 'Dashboards' THEN response_rate END) AS dashboards,
                max(CASE WHEN feature = 'Alerts' THEN response_rate END) AS alerts,
                max(CASE WHEN feature = 'Connectors' THEN response_rate END) AS connectors,
                max(CASE WHEN feature = 'Governance' THEN response_rate END) AS governance,
                max(CASE WHEN feature = 'AI Assistant' THEN response_rate END) AS ai_assistant
         FROM segment_feature_response GROUP BY segment ORDER BY segment",
    ),
    (
        "One customer identity across three systems",
        "SELECT (SELECT count(*) FROM customers) AS customers,
                (SELECT count(*) FROM engagement WHERE customer_id IS NOT NULL) AS events_resolved,
                (SELECT count(*) FROM engagement WHERE customer_id IS NULL) AS events_of_prospects,
                (SELECT count(*) FROM tickets WHERE customer_id IS NOT NULL) AS tickets_resolved,
                (SELECT count(*) FROM tickets WHERE customer_id IS NULL) AS tickets_unresolved",
    ),
];

/// Writes the example's project files that are not there yet (edits are kept).
fn write_project(dir: &Path) -> anyhow::Result<()> {
    for (rel, text) in EXAMPLE_FILES {
        let path = dir.join(rel);
        if path.exists() {
            continue;
        }
        std::fs::create_dir_all(path.parent().expect("parent"))
            .with_context(|| format!("cannot create {}", path.display()))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Generates the data, runs the pipeline and prints the answers.
pub async fn run(ctx: &Context, args: DemoArgs) -> CmdResult {
    let dir = args.dir;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_project(&dir)?;
    let started = Instant::now();
    let spec = generate::Spec {
        scale: args.scale,
        quarters: args.quarters,
        seed: args.seed,
    };
    let data = dir.join("data");
    let truth = generate::generate(&data, &spec)?;
    std::fs::write(
        data.join("generator.json"),
        serde_json::to_string_pretty(&truth)?,
    )?;
    if !ctx.quiet {
        println!(
            "customer-360 in {}: {} new raw file(s); {} raw rows, {:.1} MB over {} quarter(s) of CRM, marketing and support exports ({:.1}s)",
            dir.display(),
            truth.files_written,
            truth.raw_rows,
            truth.raw_bytes as f64 / 1e6,
            spec.quarters,
            started.elapsed().as_secs_f64()
        );
    }
    if args.fault == Some(Fault::MissingTickets) {
        let from = data.join(WITHHELD);
        let to = data.join("withheld").join("tickets_2024q3.csv");
        if from.exists() {
            std::fs::create_dir_all(to.parent().expect("parent"))?;
            std::fs::rename(&from, &to)
                .with_context(|| format!("cannot move {} aside", from.display()))?;
        }
        println!(
            "fault injected: the support export of 2024 Q3 is withheld ({})",
            to.display()
        );
    }
    if args.generate_only {
        return Ok(ExitCode::SUCCESS);
    }
    let ctx = Context {
        project_dir: Some(dir.clone()),
        quiet: ctx.quiet,
    };
    let status = super::pipeline::run(&ctx, RunArgs::everything()).await?;
    if status != ExitCode::SUCCESS {
        return Ok(status);
    }
    let (_, lh) = ctx.lakehouse().await?;
    let session = SqlSession::new(lh).await?;
    for (title, sql) in ANSWERS {
        println!("\n== {title}");
        match session.run_script(sql).await? {
            SqlOutput::Rows(stream) => {
                write_stream(stream, OutputFormat::Table, None).await?;
            }
            SqlOutput::Message(m) => println!("{m}"),
        }
    }
    println!("\n== Data quality (confluo monitor run)");
    let quality =
        super::monitor::run_monitors(&ctx, &[], super::monitor::MonitorFormat::Table, None).await?;
    println!(
        "\nDone in {:.1}s. The project is in {d}: try `confluo --project {d} sql`, \
         `confluo --project {d} validate --format mermaid` or `confluo --project {d} events`.",
        started.elapsed().as_secs_f64(),
        d = dir.display(),
    );
    Ok(quality)
}
