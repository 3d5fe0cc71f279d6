//! AUTO CDC flows inside a pipeline: graph checks before anything is planned, and the
//! target's schema when the flow is planned against placeholders.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::DataFrame;

use super::resolve;
use super::syntax::CdcFlow;
use crate::error::{PipelineError, Result};
use crate::graph::{Dataset, Flow};

/// Checks AUTO CDC flows against the graph: they read a stream, and their target is fed by
/// that flow alone and has no expectations (not supported on AUTO CDC targets yet).
pub(crate) fn check_graph(datasets: &BTreeMap<String, Dataset>, flows: &[Flow]) -> Result<()> {
    for f in flows {
        let Some(cdc) = &f.auto_cdc else {
            continue;
        };
        if !f.is_streaming() && !f.once {
            return Err(PipelineError::at(
                cdc.source.clone(),
                format!(
                    "AUTO CDC flow {} reads its source as a batch; changes must be read as a stream\n  hint: write FROM STREAM(<source>)",
                    f.name
                ),
            ));
        }
        let target = &datasets[&f.target];
        for other in flows.iter().filter(|o| o.target == f.target) {
            if std::ptr::eq(other, f) {
                continue;
            }
            let what = if other.auto_cdc.is_some() {
                format!(
                    "AUTO CDC flow {} also applies changes into {}; one AUTO CDC flow per target is supported",
                    other.name, f.target
                )
            } else {
                format!(
                    "flow {} appends into {}, which AUTO CDC flow {} applies changes into; an AUTO CDC target takes no other writers",
                    other.name, f.target, f.name
                )
            };
            return Err(PipelineError::at(
                other.pos.clone(),
                format!("{what}\n  hint: write the other rows into the AUTO CDC source instead"),
            ));
        }
        if let Some(e) = target.def.expectations.first() {
            return Err(PipelineError::at(
                e.pos.clone(),
                format!(
                    "expectation `{}` on {}: expectations on AUTO CDC targets are not supported yet\n  hint: put the expectation on the source streaming table",
                    e.name, f.target
                ),
            ));
        }
    }
    Ok(())
}

/// The target schema of an AUTO CDC flow planned as `df`; a clause that does not fit the
/// source is an error at that clause.
pub(crate) fn target_schema(cdc: &CdcFlow, flow: &Flow, df: &DataFrame) -> Result<SchemaRef> {
    let r = resolve(&cdc.spec, df).map_err(|e| {
        let pos = cdc.pos_of(e.clause).clone();
        PipelineError::at(pos, format!("AUTO CDC flow {}: {}", flow.name, e.message))
    })?;
    Ok(Arc::clone(&r.target_schema))
}
