//! The dataflow graph: a pipeline's files parsed, names resolved, cycles and duplicates
//! rejected, datasets in dependency order. Everything here happens before data moves.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use datafusion::sql::sqlparser::ast::{ObjectName, Query};
use globset::{GlobBuilder, GlobSetBuilder};

use confluo_core::TableName;
use confluo_core::project::{PipelineConfig, Project};
use confluo_core::suggest::{hint, nearest};

use crate::dialect::{
    self, DatasetDef, DatasetKind, Definition, Expectation, Reference, name_parts,
};
use crate::error::{PipelineError, Pos, Result};

/// Where a flow's rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Another dataset of this pipeline (by key).
    Dataset(String),
    /// A lakehouse table outside the pipeline.
    Table(TableName),
    /// Files through `read_files`.
    Files {
        /// Path or glob.
        path: String,
        /// Reader options.
        options: Vec<(String, String)>,
    },
    /// An event stream through a stream table function (`read_kafka`, `read_nats`, ...).
    Stream {
        /// The function, lower-case.
        function: String,
        /// The options as written.
        options: Vec<(String, String)>,
    },
    /// A database table's change feed through `read_changes`.
    Changes {
        /// The connection.
        connection: String,
        /// The source table.
        table: String,
    },
}

/// One input of a flow, and whether it is read incrementally.
#[derive(Debug, Clone)]
pub struct FlowInput {
    /// What is read.
    pub input: Input,
    /// `STREAM(...)`: only what is new since the flow's last update.
    pub stream: bool,
}

/// A query writing into a dataset.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Its name (a dataset's own query is a flow named after the dataset).
    pub name: String,
    /// The key of the dataset it writes.
    pub target: String,
    /// The query.
    pub query: Box<Query>,
    /// `INSERT INTO ONCE`.
    pub once: bool,
    /// What it reads, views expanded.
    pub inputs: Vec<FlowInput>,
    /// An AUTO CDC flow: its changes are applied by key rather than appended.
    pub auto_cdc: Option<Box<crate::auto_cdc::syntax::CdcFlow>>,
    /// Where it is defined.
    pub pos: Pos,
}

impl Flow {
    /// How messages name the flow: by its target's key when it is the dataset's own query,
    /// else as ``target (flow `name`)``.
    pub fn label(&self) -> String {
        if self.target.rsplit('.').next() == Some(self.name.as_str()) {
            self.target.clone()
        } else {
            format!("{} (flow `{}`)", self.target, self.name)
        }
    }

    /// Whether it reads anything through `STREAM`.
    pub fn is_streaming(&self) -> bool {
        self.inputs.iter().any(|i| i.stream)
    }
}

/// A dataset in the graph.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `catalog.schema.table`, the key everything else uses.
    pub key: String,
    /// The full table name.
    pub table: TableName,
    /// Its definition.
    pub def: DatasetDef,
    /// Indices into [`Pipeline::flows`] of the flows writing it.
    pub flows: Vec<usize>,
    /// Keys of the datasets it reads (directly or through views).
    pub upstream: BTreeSet<String>,
}

impl Dataset {
    /// What it is.
    pub fn kind(&self) -> DatasetKind {
        self.def.kind
    }

    /// Its expectations.
    pub fn expectations(&self) -> &[Expectation] {
        &self.def.expectations
    }
}

/// A resolved pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Its name.
    pub name: String,
    /// Catalog of its datasets.
    pub catalog: String,
    /// Schema of its datasets.
    pub schema: String,
    /// The SQL files it was read from.
    pub files: Vec<PathBuf>,
    /// Datasets by key.
    pub datasets: BTreeMap<String, Dataset>,
    /// All flows.
    pub flows: Vec<Flow>,
    /// Keys of the stored datasets (not views) in dependency order.
    pub order: Vec<String>,
    /// Configuration values in effect.
    pub configuration: BTreeMap<String, String>,
}

/// The pipelines a project defines: its `pipelines:` entries, or, when there are none but
/// a `pipelines/` folder exists, one named after the project.
pub fn pipeline_configs(project: &Project) -> BTreeMap<String, PipelineConfig> {
    let mut configs = project.config.pipelines.clone();
    if configs.is_empty() && project.root.join("pipelines").is_dir() {
        configs.insert(project.config.name.clone(), PipelineConfig::default());
    }
    configs
}

/// Where a pipeline's datasets and event log go: its catalog and schema (the project's
/// unless it names others), lower-cased as tables are.
pub fn target_schema(project: &Project, config: &PipelineConfig) -> (String, String) {
    let catalog = config
        .catalog
        .clone()
        .unwrap_or_else(|| project.config.catalog.clone());
    let schema = config
        .schema
        .clone()
        .unwrap_or_else(|| project.config.schema.clone());
    (catalog.to_ascii_lowercase(), schema.to_ascii_lowercase())
}

/// The project's pipelines, each with the table of its event log.
pub fn event_logs(project: &Project) -> Vec<(String, confluo_core::TableName)> {
    pipeline_configs(project)
        .into_iter()
        .map(|(name, config)| {
            let (catalog, schema) = target_schema(project, &config);
            let table = crate::event_log::table_name(&catalog, &schema, &name);
            (name, table)
        })
        .collect()
}

/// Picks the pipeline to work on: the named one, or the only one.
pub fn select(project: &Project, name: Option<&str>) -> Result<(String, PipelineConfig)> {
    let configs = pipeline_configs(project);
    match name {
        Some(n) => match configs.get(n) {
            Some(c) => Ok((n.to_string(), c.clone())),
            None => Err(PipelineError::Config(format!(
                "no pipeline named `{n}` in {}{}",
                project.root.display(),
                hint(&nearest(n, configs.keys().map(String::as_str)))
            ))),
        },
        None => {
            let mut it = configs.into_iter();
            match (it.next(), it.next()) {
                (Some(one), None) => Ok(one),
                (None, _) => Err(PipelineError::Config(format!(
                    "the project in {} defines no pipeline\n  hint: add SQL files under pipelines/ or a `pipelines:` entry to confluo.yaml",
                    project.root.display()
                ))),
                (Some(a), Some(b)) => Err(PipelineError::Config(format!(
                    "the project defines several pipelines ({}, {}, ...); choose one with --pipeline",
                    a.0, b.0
                ))),
            }
        }
    }
}

/// The SQL files matching the pipeline's library globs, sorted.
pub fn library_files(project: &Project, config: &PipelineConfig) -> Result<Vec<PathBuf>> {
    let mut builder = GlobSetBuilder::new();
    for g in &config.libraries {
        let glob = GlobBuilder::new(g.trim_start_matches("./"))
            .literal_separator(true)
            .build()
            .map_err(|e| PipelineError::Config(format!("library glob `{g}`: {e}")))?;
        builder.add(glob);
    }
    let set = builder
        .build()
        .map_err(|e| PipelineError::Config(e.to_string()))?;
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(&project.root)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| {
            let n = e.file_name().to_string_lossy();
            !(e.depth() > 0 && (n.starts_with('.') || n == "lakehouse" || n == "target"))
        })
    {
        let entry = entry.map_err(|e| PipelineError::Config(e.to_string()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(&project.root)
            .unwrap_or(entry.path());
        let is_sql = rel
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("sql"));
        if is_sql && set.is_match(rel) {
            files.push(entry.path().to_path_buf());
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(PipelineError::Config(format!(
            "no SQL files match the pipeline's libraries ({}) under {}",
            config.libraries.join(", "),
            project.root.display()
        )));
    }
    Ok(files)
}

/// Table names that exist outside the pipeline, for resolving and suggesting.
pub trait Catalog {
    /// Whether the table exists in the lakehouse.
    fn exists(&self, name: &TableName) -> bool;
    /// Every table name, for suggestions.
    fn names(&self) -> Vec<String>;
}

/// The full name of a dataset or table reference, completed with the pipeline's catalog
/// and schema.
pub(crate) fn full_name(
    name: &ObjectName,
    catalog: &str,
    schema: &str,
    pos: &Pos,
) -> Result<TableName> {
    let parts = name_parts(name);
    Ok(match parts.as_slice() {
        [t] => TableName::new(catalog, schema, t),
        [s, t] => TableName::new(catalog, s, t),
        [c, s, t] => TableName::new(c, s, t),
        _ => {
            return Err(PipelineError::at(
                pos.clone(),
                format!("`{name}`: a table name has at most three parts"),
            ));
        }
    })
}

/// `loc` within the file of `pos` (or `pos` itself when `loc` is unknown).
pub(crate) fn at(pos: &Pos, loc: datafusion::sql::sqlparser::tokenizer::Location) -> Pos {
    if loc.line == 0 {
        return pos.clone();
    }
    Pos {
        file: pos.file.clone(),
        line: loc.line,
        column: loc.column,
    }
}

/// Reads, parses and resolves a pipeline. Nothing is written.
pub fn load(
    project: &Project,
    name: &str,
    config: &PipelineConfig,
    catalog: &dyn Catalog,
) -> Result<Pipeline> {
    let files = library_files(project, config)?;
    let mut configuration = config.configuration.clone();
    let mut definitions = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| PipelineError::Io {
            path: f.clone(),
            source: e,
        })?;
        let rel = f.strip_prefix(&project.root).unwrap_or(f);
        let parsed = dialect::parse_file(rel, &text, &configuration)?;
        for (k, v) in parsed.settings {
            configuration.insert(k, v);
        }
        definitions.extend(parsed.definitions);
    }
    let (cat, sch) = target_schema(project, config);
    build(name, &cat, &sch, files, definitions, configuration, catalog)
}

/// Builds the graph from parsed definitions.
pub fn build(
    name: &str,
    cat: &str,
    sch: &str,
    files: Vec<PathBuf>,
    definitions: Vec<Definition>,
    configuration: BTreeMap<String, String>,
    catalog: &dyn Catalog,
) -> Result<Pipeline> {
    let mut datasets: BTreeMap<String, Dataset> = BTreeMap::new();
    let mut flow_defs = Vec::new();
    for d in definitions {
        match d {
            Definition::Dataset(def) => {
                let table = full_name(&def.name, cat, sch, &def.pos)?;
                let key = table.to_string();
                if let Some(prev) = datasets.get(&key) {
                    return Err(PipelineError::at(
                        def.pos.clone(),
                        format!(
                            "{key} is defined twice (first at {})\n  hint: to write into one streaming table from several queries, use CREATE FLOW ... AS INSERT INTO {} BY NAME ...",
                            prev.def.pos, def.name
                        ),
                    ));
                }
                datasets.insert(
                    key.clone(),
                    Dataset {
                        key,
                        table,
                        def,
                        flows: vec![],
                        upstream: BTreeSet::new(),
                    },
                );
            }
            Definition::Flow(f) => flow_defs.push(f),
        }
    }

    // Flows: each dataset's own query, then the explicit ones.
    let mut flows: Vec<Flow> = Vec::new();
    for ds in datasets.values() {
        if let Some(q) = &ds.def.query {
            flows.push(Flow {
                name: ds.table.table.to_string(),
                target: ds.key.clone(),
                query: q.clone(),
                once: false,
                inputs: vec![],
                auto_cdc: None,
                pos: ds.def.pos.clone(),
            });
        }
    }
    let mut flow_names: HashMap<String, Pos> = flows
        .iter()
        .map(|f| (f.name.to_ascii_lowercase(), f.pos.clone()))
        .collect();
    for f in flow_defs {
        let target = full_name(&f.target, cat, sch, &f.pos)?.to_string();
        match datasets.get(&target) {
            Some(d) if d.def.kind == DatasetKind::StreamingTable => {}
            Some(d) if f.auto_cdc.is_some() => {
                return Err(PipelineError::at(
                    f.pos.clone(),
                    format!(
                        "AUTO CDC flow {} applies changes into {target}, a {}; the target of AUTO CDC must be a streaming table\n  hint: declare it with CREATE OR REFRESH STREAMING TABLE {} (without AS ...)",
                        f.name,
                        d.def.kind.label(),
                        f.target
                    ),
                ));
            }
            Some(d) => {
                return Err(PipelineError::at(
                    f.pos.clone(),
                    format!(
                        "flow {} writes into {target}, a {}; flows can only append to streaming tables",
                        f.name,
                        d.def.kind.label()
                    ),
                ));
            }
            None => {
                let names: Vec<&str> = datasets.keys().map(String::as_str).collect();
                return Err(PipelineError::at(
                    f.pos.clone(),
                    format!(
                        "flow {} writes into {target}, which the pipeline does not define{}\n  hint: declare it with CREATE STREAMING TABLE {}",
                        f.name,
                        hint(&nearest(&target, names)),
                        f.target
                    ),
                ));
            }
        }
        if let Some(prev) = flow_names.insert(f.name.to_ascii_lowercase(), f.pos.clone()) {
            return Err(PipelineError::at(
                f.pos.clone(),
                format!("flow {} is defined twice (first at {prev})", f.name),
            ));
        }
        flows.push(Flow {
            name: f.name,
            target,
            query: f.query,
            once: f.once,
            inputs: vec![],
            auto_cdc: f.auto_cdc,
            pos: f.pos,
        });
    }
    for ds in datasets.values() {
        if ds.def.kind == DatasetKind::StreamingTable
            && ds.def.query.is_none()
            && !flows.iter().any(|f| f.target == ds.key)
        {
            return Err(PipelineError::at(
                ds.def.pos.clone(),
                format!(
                    "streaming table {} has no query and no flow writes into it",
                    ds.key
                ),
            ));
        }
    }

    // Resolve every reference; views are expanded into their readers' inputs.
    let view_refs = resolve_views(&datasets, cat, sch, catalog)?;
    for flow in &mut flows {
        let refs = dialect::references(&flow.query, &flow.pos.file)?;
        let mut inputs = Vec::new();
        for r in refs {
            expand(
                &r,
                &flow.pos,
                cat,
                sch,
                &datasets,
                &view_refs,
                catalog,
                &mut inputs,
            )?;
        }
        flow.inputs = inputs;
    }
    for (i, flow) in flows.iter().enumerate() {
        let ds = datasets
            .get_mut(&flow.target)
            .expect("flow target resolved");
        ds.flows.push(i);
        for inp in &flow.inputs {
            if let Input::Dataset(k) = &inp.input {
                ds.upstream.insert(k.clone());
            }
        }
    }
    for flow in &flows {
        let target = &datasets[&flow.target];
        if target.def.kind == DatasetKind::MaterializedView && flow.is_streaming() {
            return Err(PipelineError::at(
                flow.pos.clone(),
                format!(
                    "materialized view {} reads a STREAM; materialized views read whole tables\n  hint: make it a STREAMING TABLE, or drop STREAM(...)",
                    target.key
                ),
            ));
        }
        for inp in &flow.inputs {
            if let Input::Dataset(k) = &inp.input
                && k == &flow.target
            {
                return Err(PipelineError::at(
                    flow.pos.clone(),
                    format!("{} reads itself", flow.target),
                ));
            }
        }
    }
    crate::auto_cdc::check_graph(&datasets, &flows)?;
    let order = topological(&datasets)?;
    Ok(Pipeline {
        name: name.to_string(),
        catalog: cat.to_string(),
        schema: sch.to_string(),
        files,
        datasets,
        flows,
        order,
        configuration,
    })
}

/// For each view, the inputs its query reads (views inside views expanded).
fn resolve_views(
    datasets: &BTreeMap<String, Dataset>,
    cat: &str,
    sch: &str,
    catalog: &dyn Catalog,
) -> Result<HashMap<String, Vec<FlowInput>>> {
    let mut out: HashMap<String, Vec<FlowInput>> = HashMap::new();
    let views: Vec<&Dataset> = datasets
        .values()
        .filter(|d| d.def.kind == DatasetKind::View)
        .collect();
    // Views may read views: resolve until nothing changes (a cycle is caught below).
    let mut pending: Vec<&Dataset> = views.clone();
    let mut guard = 0;
    while !pending.is_empty() {
        guard += 1;
        let mut next = Vec::new();
        for v in pending {
            let q = v.def.query.as_ref().expect("views have queries");
            let refs = dialect::references(q, &v.def.pos.file)?;
            let mut inputs = Vec::new();
            let mut blocked = false;
            for r in &refs {
                if let Reference::Table { name, .. } = r {
                    let key = full_name(name, cat, sch, &v.def.pos)?.to_string();
                    if key == v.key {
                        return Err(PipelineError::at(
                            v.def.pos.clone(),
                            format!("view {} reads itself", v.key),
                        ));
                    }
                    if datasets
                        .get(&key)
                        .is_some_and(|d| d.def.kind == DatasetKind::View)
                        && !out.contains_key(&key)
                    {
                        blocked = true;
                        break;
                    }
                }
                expand(
                    r,
                    &v.def.pos,
                    cat,
                    sch,
                    datasets,
                    &out,
                    catalog,
                    &mut inputs,
                )?;
            }
            if blocked {
                next.push(v);
            } else {
                out.insert(v.key.clone(), inputs);
            }
        }
        if guard > views.len() + 1 {
            let names: Vec<&str> = next.iter().map(|v| v.key.as_str()).collect();
            return Err(PipelineError::at(
                next[0].def.pos.clone(),
                format!("views read each other in a cycle: {}", names.join(" -> ")),
            ));
        }
        pending = next;
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn expand(
    r: &Reference,
    pos: &Pos,
    cat: &str,
    sch: &str,
    datasets: &BTreeMap<String, Dataset>,
    views: &HashMap<String, Vec<FlowInput>>,
    catalog: &dyn Catalog,
    out: &mut Vec<FlowInput>,
) -> Result<()> {
    match r {
        Reference::Files {
            path,
            options,
            stream,
            ..
        } => out.push(FlowInput {
            input: Input::Files {
                path: path.clone(),
                options: options.clone(),
            },
            stream: *stream,
        }),
        Reference::Stream {
            function,
            options,
            stream,
            ..
        } => out.push(FlowInput {
            input: Input::Stream {
                function: function.clone(),
                options: options.clone(),
            },
            stream: *stream,
        }),
        Reference::Changes {
            connection,
            table,
            stream,
            ..
        } => out.push(FlowInput {
            input: Input::Changes {
                connection: connection.clone(),
                table: table.clone(),
            },
            stream: *stream,
        }),
        Reference::Table {
            name,
            stream,
            pos: loc,
        } => {
            let here = at(pos, *loc);
            let table = full_name(name, cat, sch, &here)?;
            let key = table.to_string();
            match datasets.get(&key) {
                Some(d) if d.def.kind == DatasetKind::View => {
                    for inp in views.get(&key).cloned().unwrap_or_default() {
                        out.push(FlowInput {
                            input: inp.input,
                            // Reading a view through STREAM streams its streaming inputs.
                            stream: inp.stream && *stream,
                        });
                    }
                }
                Some(_) => out.push(FlowInput {
                    input: Input::Dataset(key),
                    stream: *stream,
                }),
                None if catalog.exists(&table) => out.push(FlowInput {
                    input: Input::Table(table),
                    stream: *stream,
                }),
                None => {
                    let mut names: Vec<String> = datasets
                        .values()
                        .map(|d| d.table.table.to_string())
                        .collect();
                    names.extend(catalog.names());
                    return Err(PipelineError::at(
                        here,
                        format!(
                            "table or view `{name}` not found: it is neither defined in the pipeline nor in the lakehouse (looked for {key}){}",
                            hint(&nearest(
                                &name_parts(name).join("."),
                                names.iter().map(String::as_str)
                            ))
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Stored datasets in dependency order; a cycle is an error naming it.
fn topological(datasets: &BTreeMap<String, Dataset>) -> Result<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        None,
        Visiting,
        Done,
    }
    fn visit(
        k: &str,
        datasets: &BTreeMap<String, Dataset>,
        marks: &mut HashMap<String, Mark>,
        stack: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        match marks.get(k).copied().unwrap_or(Mark::None) {
            Mark::Done => return Ok(()),
            Mark::Visiting => {
                let start = stack.iter().position(|s| s == k).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].to_vec();
                cycle.push(k.to_string());
                return Err(PipelineError::at(
                    datasets[k].def.pos.clone(),
                    format!("the pipeline has a cycle: {}", cycle.join(" -> ")),
                ));
            }
            Mark::None => {}
        }
        marks.insert(k.to_string(), Mark::Visiting);
        stack.push(k.to_string());
        for u in &datasets[k].upstream {
            visit(u, datasets, marks, stack, order)?;
        }
        stack.pop();
        marks.insert(k.to_string(), Mark::Done);
        if datasets[k].def.kind != DatasetKind::View {
            order.push(k.to_string());
        }
        Ok(())
    }
    let mut marks = HashMap::new();
    let mut order = Vec::new();
    for k in datasets.keys() {
        visit(k, datasets, &mut marks, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

impl Pipeline {
    /// The dataset a key names.
    pub fn dataset(&self, key: &str) -> &Dataset {
        &self.datasets[key]
    }

    /// Keys of the datasets that read `key`, directly or transitively.
    pub fn downstream_of(&self, key: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![key.to_string()];
        while let Some(k) = todo.pop() {
            for d in self.datasets.values() {
                if d.upstream.contains(&k) && out.insert(d.key.clone()) {
                    todo.push(d.key.clone());
                }
            }
        }
        out
    }

    /// Finds a dataset by a name as a user types it (`t`, `schema.t` or the full name).
    pub fn find(&self, name: &str) -> Result<String> {
        let t = TableName::parse(name, &self.catalog, &self.schema)
            .map_err(|e| PipelineError::Config(e.to_string()))?;
        let key = t.to_string();
        if self.datasets.contains_key(&key) {
            return Ok(key);
        }
        let names: Vec<String> = self
            .datasets
            .values()
            .map(|d| d.table.table.to_string())
            .collect();
        Err(PipelineError::Config(format!(
            "pipeline {} has no dataset `{name}`{}",
            self.name,
            hint(&nearest(name, names.iter().map(String::as_str)))
        )))
    }

    /// The graph as text: each dataset with its kind, flows and inputs.
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "pipeline {} ({} datasets, {} flows; target {}.{})\n",
            self.name,
            self.datasets.len(),
            self.flows.len(),
            self.catalog,
            self.schema
        );
        let views: Vec<&String> = self
            .datasets
            .values()
            .filter(|d| d.def.kind == DatasetKind::View)
            .map(|d| &d.key)
            .collect();
        for k in self.order.iter().chain(views) {
            let d = &self.datasets[k];
            out.push_str(&format!(
                "\n{} {}{}  [{}]\n",
                d.def.kind.label(),
                d.key,
                if d.def.private { " (private)" } else { "" },
                d.def.pos
            ));
            for e in &d.def.expectations {
                out.push_str(&format!(
                    "  expect {} ({}) on violation {}\n",
                    e.name,
                    e.condition,
                    e.action.label()
                ));
            }
            for &fi in &d.flows {
                let f = &self.flows[fi];
                out.push_str(&format!(
                    "  flow {}{} ({})\n",
                    f.name,
                    if f.once { " once" } else { "" },
                    if f.is_streaming() {
                        "streaming"
                    } else {
                        "batch"
                    }
                ));
                for inp in &f.inputs {
                    out.push_str(&format!(
                        "    <- {}{}\n",
                        if inp.stream { "STREAM " } else { "" },
                        describe_input(&inp.input)
                    ));
                }
            }
        }
        out
    }

    /// Edges `(from, to, streaming)` between node labels, for DOT and Mermaid.
    fn edges(&self) -> Vec<(String, String, bool)> {
        let mut edges = Vec::new();
        for f in &self.flows {
            for inp in &f.inputs {
                edges.push((describe_input(&inp.input), f.target.clone(), inp.stream));
            }
        }
        edges.sort();
        edges.dedup();
        edges
    }

    /// The graph in Graphviz DOT.
    pub fn render_dot(&self) -> String {
        let mut out = format!("digraph \"{}\" {{\n  rankdir=LR;\n", self.name);
        for d in self.datasets.values() {
            let shape = match d.def.kind {
                DatasetKind::StreamingTable => "box",
                DatasetKind::MaterializedView => "box3d",
                DatasetKind::View => "ellipse",
            };
            out.push_str(&format!(
                "  \"{}\" [shape={shape}, label=\"{}\\n{}\"];\n",
                d.key,
                d.table.table,
                d.def.kind.label()
            ));
        }
        for (from, to, stream) in self.edges() {
            out.push_str(&format!(
                "  \"{}\" -> \"{to}\"{};\n",
                from.replace('"', "\\\""),
                if stream {
                    " [style=bold, label=\"stream\"]"
                } else {
                    ""
                }
            ));
        }
        out.push_str("}\n");
        out
    }

    /// The graph as a Mermaid flowchart.
    pub fn render_mermaid(&self) -> String {
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut out = String::from("flowchart LR\n");
        let mut id_of = |label: &str, out: &mut String| -> String {
            if let Some(id) = ids.get(label) {
                return id.clone();
            }
            let id = format!("n{}", ids.len());
            let text = label.replace('"', "'");
            out.push_str(&format!("  {id}[\"{text}\"]\n"));
            ids.insert(label.to_string(), id.clone());
            id
        };
        for d in self.datasets.values() {
            id_of(&d.key, &mut out);
        }
        for (from, to, stream) in self.edges() {
            let a = id_of(&from, &mut out);
            let b = id_of(&to, &mut out);
            out.push_str(&format!(
                "  {a} {} {b}\n",
                if stream { "==>|stream|" } else { "-->" }
            ));
        }
        out
    }
}

/// A readable name for an input.
pub fn describe_input(i: &Input) -> String {
    match i {
        Input::Dataset(k) => k.clone(),
        Input::Table(t) => t.to_string(),
        Input::Files { path, .. } => format!("read_files('{path}')"),
        Input::Stream { function, options } => stream_label(function, options),
        Input::Changes { connection, table } => format!("read_changes('{connection}', '{table}')"),
    }
}

/// How a stream table function call reads in labels: `read_kafka(subscribe => 'orders')`.
pub fn stream_label(function: &str, options: &[(String, String)]) -> String {
    match confluo_connectors::registry::stream_function(function) {
        Some(f) => f.label(options),
        None => format!("{function}(...)"),
    }
}

/// The absolute path for a `read_files` path written relative to the project.
pub fn files_path(project_root: &Path, path: &str) -> String {
    if path.contains("://") || Path::new(path).is_absolute() {
        path.to_string()
    } else {
        project_root.join(path).to_string_lossy().into_owned()
    }
}
