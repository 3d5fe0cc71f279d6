//! `_metadata` of `read_files`: a hidden column, as in Databricks.
//!
//! A file scan carries the column only when the statement names `_metadata`
//! ([`names_metadata`]), and then `SELECT *` over that scan still leaves it out
//! ([`hide_from_wildcards`]): a bronze table written with `SELECT *, _metadata.file_path`
//! gets one extra column, not two.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    ExcludeSelectItem, Expr, Ident, ObjectName, ObjectNamePart, Query, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, TableFactor, TableWithJoins, Visit, VisitMut,
    Visitor, VisitorMut, WildcardAdditionalOptions,
};

use confluo_connectors::files::metadata::METADATA_COLUMN;

fn is_metadata(i: &Ident) -> bool {
    i.value.eq_ignore_ascii_case(METADATA_COLUMN)
}

struct Names(bool);

impl Visitor for Names {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        let named = match e {
            Expr::Identifier(i) => is_metadata(i),
            Expr::CompoundIdentifier(parts) => parts.iter().any(is_metadata),
            _ => false,
        };
        if named {
            self.0 = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// Whether `node` (a statement or query) names `_metadata` anywhere in an expression.
pub fn names_metadata<V: Visit>(node: &V) -> bool {
    let mut v = Names(false);
    let _ = node.visit(&mut v);
    v.0
}

struct Hide<'a> {
    is_files: &'a dyn Fn(&TableFactor) -> bool,
}

impl Hide<'_> {
    /// The aliases (or `None` for unaliased) of the file scans a FROM list reads directly.
    fn file_scans(&self, from: &[TableWithJoins]) -> Vec<Option<Ident>> {
        from.iter()
            .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
            .filter(|tf| (self.is_files)(tf))
            .map(|tf| match tf {
                TableFactor::Table { alias, .. } => alias.as_ref().map(|a| a.name.clone()),
                _ => None,
            })
            .collect()
    }

    fn set_expr(&self, body: &mut SetExpr) {
        match body {
            SetExpr::Select(select) => {
                let scans = self.file_scans(&select.from);
                if scans.is_empty() {
                    return;
                }
                for item in &mut select.projection {
                    match item {
                        // With two scans in one FROM an unqualified `_metadata` is ambiguous;
                        // `*` then keeps both, and `alias.*` still hides each.
                        SelectItem::Wildcard(opts) if scans.len() == 1 => exclude(opts),
                        SelectItem::QualifiedWildcard(
                            SelectItemQualifiedWildcardKind::ObjectName(name),
                            opts,
                        ) if names_scan(name, &scans) => exclude(opts),
                        _ => {}
                    }
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left);
                self.set_expr(right);
            }
            // Nested queries are visited on their own.
            _ => {}
        }
    }
}

fn names_scan(name: &ObjectName, scans: &[Option<Ident>]) -> bool {
    let Some(ObjectNamePart::Identifier(last)) = name.0.last() else {
        return false;
    };
    scans
        .iter()
        .flatten()
        .any(|a| a.value.eq_ignore_ascii_case(&last.value))
}

fn exclude(opts: &mut WildcardAdditionalOptions) {
    let hidden = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(
        METADATA_COLUMN,
    ))]);
    opts.opt_exclude = Some(match opts.opt_exclude.take() {
        None => ExcludeSelectItem::Single(hidden),
        Some(ExcludeSelectItem::Single(one)) => ExcludeSelectItem::Multiple(vec![one, hidden]),
        Some(ExcludeSelectItem::Multiple(mut many)) => {
            many.push(hidden);
            ExcludeSelectItem::Multiple(many)
        }
    });
}

impl VisitorMut for Hide<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        self.set_expr(&mut q.body);
        ControlFlow::Continue(())
    }
}

/// Makes every `*` (and `alias.*`) that reads a file scan directly leave `_metadata` out.
/// `is_files` tells a file scan's table factor (the caller knows its spellings: plain
/// `read_files(...)`, or a pipeline's `STREAM read_files(...)`).
pub fn hide_from_wildcards<V: VisitMut>(node: &mut V, is_files: &dyn Fn(&TableFactor) -> bool) {
    let _ = node.visit(&mut Hide { is_files });
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::DatabricksDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn hidden(sql: &str) -> String {
        let mut s = Parser::parse_sql(&DatabricksDialect {}, sql)
            .unwrap()
            .remove(0);
        assert!(names_metadata(&s), "{sql}");
        hide_from_wildcards(&mut s, &|tf| {
            matches!(tf, TableFactor::Table { args: Some(_), .. })
        });
        s.to_string()
    }

    #[test]
    fn star_over_a_scan_leaves_metadata_out() {
        assert_eq!(
            hidden("SELECT *, _metadata.file_name FROM read_files('x')"),
            "SELECT * EXCLUDE _metadata, _metadata.file_name FROM read_files('x')"
        );
        assert_eq!(
            hidden("SELECT f.*, f._metadata FROM read_files('x') AS f JOIN t ON t.a = f.a"),
            "SELECT f.* EXCLUDE _metadata, f._metadata FROM read_files('x') AS f JOIN t ON t.a = f.a"
        );
        // A star over a subquery is the subquery's business.
        assert_eq!(
            hidden("SELECT * FROM (SELECT a, _metadata FROM read_files('x')) AS s"),
            "SELECT * FROM (SELECT a, _metadata FROM read_files('x')) AS s"
        );
    }

    #[test]
    fn only_statements_naming_it_carry_it() {
        let s = Parser::parse_sql(&DatabricksDialect {}, "SELECT * FROM read_files('x')")
            .unwrap()
            .remove(0);
        assert!(!names_metadata(&s));
    }
}
