//! `confluo demo`: a project with generated CSV, JSON and Parquet files, ingested into
//! Delta tables and queried — everything end to end with no setup.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use clap::Args;

use super::{CmdResult, Context};
use crate::render::{OutputFormat, write_stream};
use confluo_connectors::files::ReadOptions;
use confluo_core::Project;
use confluo_core::project::{PROJECT_FILE, starter_yaml};
use confluo_lakehouse::{IngestBuilder, Lakehouse};
use confluo_sql::{SqlOutput, SqlSession};

/// Arguments of `confluo demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to create the demo project.
    #[arg(long, default_value = "confluo-demo")]
    dir: PathBuf,
    /// Rows of orders to generate.
    #[arg(long, default_value_t = 20_000)]
    rows: usize,
}

/// A small deterministic generator (SplitMix64), so every run makes the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const COUNTRIES: &[&str] = &["US", "DE", "FR", "GB", "JP", "BR", "IN", "CA"];
const STATUSES: &[&str] = &["placed", "shipped", "delivered", "returned"];

fn generate(dir: &Path, rows: usize) -> anyhow::Result<()> {
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("orders"))?;
    let mut rng = Rng(42);
    let customers = (rows / 20).max(10);
    // Customers as newline-delimited JSON, with one broken line.
    let mut json = String::new();
    for id in 1..=customers {
        let country = COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize];
        writeln!(
            json,
            r#"{{"customer_id": {id}, "name": "Customer {id}", "email": "c{id}@example.com", "country": "{country}", "signup_date": "2024-{:02}-{:02}"}}"#,
            1 + rng.below(12),
            1 + rng.below(28)
        )?;
        if id == 7 {
            json.push_str("{\"customer_id\": 999999, \"name\": \"broken\n");
        }
    }
    std::fs::write(data.join("customers.json"), json)?;
    // Orders as two CSV files, with a few malformed rows that end up rescued.
    let per_file = rows / 2;
    let mut order_id = 0u64;
    for part in 1..=2 {
        let mut csv = String::from("order_id,customer_id,order_date,status,amount\n");
        for i in 0..per_file {
            order_id += 1;
            let c = 1 + rng.below(customers as u64);
            let status = STATUSES[rng.below(STATUSES.len() as u64) as usize];
            let amount = (rng.below(50_000) as f64) / 100.0 + 1.0;
            let date = format!("2025-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28));
            match (part, i) {
                (1, 10) => writeln!(csv, "{order_id},{c},{date},{status},12.5x")?,
                (1, 20) => writeln!(csv, "{order_id},{c},{date}")?,
                (2, 30) => writeln!(csv, "{order_id},{c},\"{date},{status},{amount}")?,
                _ => writeln!(csv, "{order_id},{c},{date},{status},{amount:.2}")?,
            }
        }
        std::fs::write(data.join(format!("orders/orders_{part}.csv")), csv)?;
    }
    // Order items as Parquet.
    let n = order_id as usize * 2;
    let mut ids = Vec::with_capacity(n);
    let mut skus = Vec::with_capacity(n);
    let mut qty = Vec::with_capacity(n);
    let mut price = Vec::with_capacity(n);
    for o in 1..=order_id {
        for _ in 0..2 {
            ids.push(o as i64);
            skus.push(format!("SKU-{:04}", rng.below(500)));
            qty.push(1 + rng.below(5) as i64);
            price.push((rng.below(20_000) as f64) / 100.0 + 0.5);
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("sku", DataType::Utf8, false),
        Field::new("quantity", DataType::Int64, false),
        Field::new("unit_price", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(skus)),
            Arc::new(Int64Array::from(qty)),
            Arc::new(Float64Array::from(price)),
        ],
    )?;
    let file = std::fs::File::create(data.join("order_items.parquet"))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None)?;
    w.write(&batch)?;
    w.close()?;
    Ok(())
}

const QUERIES: &[(&str, &str)] = &[
    ("Tables", "SHOW TABLES IN bronze"),
    (
        "Revenue by country (orders ⋈ customers)",
        "SELECT c.country, count(*) AS orders, round(sum(o.amount), 2) AS revenue
         FROM bronze.orders o JOIN bronze.customers c ON o.customer_id = c.customer_id
         GROUP BY c.country ORDER BY revenue DESC",
    ),
    (
        "Top products (Parquet items)",
        "SELECT sku, sum(quantity) AS units, round(sum(quantity * unit_price), 2) AS sales
         FROM bronze.order_items GROUP BY sku ORDER BY sales DESC LIMIT 5",
    ),
    (
        "Rows that did not fit, kept in _rescued_data",
        "SELECT order_id, _rescued_data FROM bronze.orders WHERE _rescued_data IS NOT NULL ORDER BY order_id",
    ),
    ("History of bronze.orders", "DESCRIBE HISTORY bronze.orders"),
];

/// Generates data, ingests it and prints the answers.
pub async fn run(ctx: &Context, args: DemoArgs) -> CmdResult {
    let dir = args.dir;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if !dir.join(PROJECT_FILE).exists() {
        std::fs::write(dir.join(PROJECT_FILE), starter_yaml("confluo_demo"))?;
    }
    generate(&dir, args.rows)?;
    let project = Project::load(&dir)?;
    let lh = Arc::new(Lakehouse::open(&project).await?);
    lh.metastore()
        .create_schema(lh.default_catalog(), "bronze", None, None, true)
        .await?;
    let data = project.root.join("data");
    for (path, table) in [
        (data.join("orders"), "bronze.orders"),
        (data.join("customers.json"), "bronze.customers"),
        (data.join("order_items.parquet"), "bronze.order_items"),
    ] {
        let report = IngestBuilder::new(&lh, path.display().to_string(), lh.resolve(table)?)
            .with_options(ReadOptions::default())
            .await?;
        if !ctx.quiet {
            println!(
                "ingested {:>2} file(s) into {:<28} {:>8} rows  ({} rescued, {} skipped as already ingested)",
                report.files_ingested,
                report.table,
                report.rows,
                report.rescued,
                report.files_skipped
            );
        }
    }
    let session = SqlSession::new(lh).await.map_err(|e| anyhow::anyhow!(e))?;
    for (title, sql) in QUERIES {
        println!("\n== {title}");
        match session
            .run_script(sql)
            .await
            .map_err(|e| anyhow::anyhow!(e))?
        {
            SqlOutput::Rows(stream) => {
                write_stream(stream, OutputFormat::Table, None).await?;
            }
            SqlOutput::Message(m) => println!("{m}"),
        }
    }
    println!(
        "\nThe demo project is in {}. Try: confluo --project {} sql",
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
