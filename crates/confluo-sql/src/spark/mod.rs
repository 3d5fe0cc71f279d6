//! Spark SQL functions, with Spark's semantics, for SQL written for Databricks.
//!
//! Three sources, in this order of precedence: DataFusion's own functions where they already
//! behave as Spark's (`coalesce`, `nvl`, `try_cast`, `uuid`, `current_timestamp`, ...);
//! `datafusion-spark` for names DataFusion lacks (`sha2`, `collect_list`, `collect_set`, ...);
//! and ours for the Avro, JSON and regex functions pipelines reach for ([`avro`], [`json`],
//! [`text`]).
//! Some Spark spellings are respelled before planning ([`respell`]): `explode` is
//! DataFusion's `unnest`, and Java date patterns become chrono's.

mod avro;
mod json;
mod text;

use std::ops::ControlFlow;

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectNamePart, Statement,
    Value, visit_expressions_mut,
};

/// Registers the Spark functions on `ctx` (DataFusion's own keep their names).
pub fn register(ctx: &SessionContext) {
    let state = ctx.state();
    let have_scalar: std::collections::HashSet<String> =
        state.scalar_functions().keys().cloned().collect();
    let have_aggregate: std::collections::HashSet<String> =
        state.aggregate_functions().keys().cloned().collect();
    for f in datafusion_spark::all_default_scalar_functions() {
        if !have_scalar.contains(f.name()) && f.aliases().iter().all(|a| !have_scalar.contains(a)) {
            ctx.register_udf(f.as_ref().clone());
        }
    }
    for f in datafusion_spark::all_default_aggregate_functions() {
        if !have_aggregate.contains(f.name()) {
            ctx.register_udaf(f.as_ref().clone());
        }
    }
    for f in [
        ScalarUDF::new_from_impl(avro::FromAvro::new()),
        ScalarUDF::new_from_impl(json::GetJsonObject::new()),
        ScalarUDF::new_from_impl(json::FromJson::new()),
        ScalarUDF::new_from_impl(json::ToJson::new()),
        ScalarUDF::new_from_impl(json::SchemaOfJson::new()),
        ScalarUDF::new_from_impl(text::RegexpExtract::new()),
        ScalarUDF::new_from_impl(text::Split::new()),
    ] {
        ctx.register_udf(f);
    }
}

fn function_name(f: &datafusion::sql::sqlparser::ast::Function) -> Option<String> {
    match f.name.0.as_slice() {
        [ObjectNamePart::Identifier(i)] => Some(i.value.to_ascii_lowercase()),
        _ => None,
    }
}

fn nth_literal(args: &mut FunctionArguments, n: usize) -> Option<&mut String> {
    let FunctionArguments::List(list) = args else {
        return None;
    };
    match list.args.get_mut(n)? {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &mut v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// Wraps the `n`th argument in `CAST(... AS to)`.
fn cast_arg(args: &mut FunctionArguments, n: usize, to: ast::DataType) {
    let FunctionArguments::List(list) = args else {
        return;
    };
    if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) = list.args.get_mut(n) {
        let inner = std::mem::replace(e, Expr::value(Value::Null));
        *e = Expr::Cast {
            kind: ast::CastKind::Cast,
            expr: Box::new(inner),
            data_type: to,
            array: false,
            format: None,
        };
    }
}

/// Spark's `date_trunc` unit spellings as DataFusion's.
fn trunc_unit(unit: &str) -> Option<&'static str> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "yyyy" | "yy" => "year",
        "mm" | "mon" => "month",
        "dd" => "day",
        _ => return None,
    })
}

/// Respells Spark forms DataFusion plans under other names: `explode(a)` is `unnest(a)`;
/// `f(x).field` is `f(x)['field']`;
/// `date_trunc('MM', t)` is `date_trunc('month', t)`; the Java date pattern of
/// `to_date`, `to_timestamp` and `date_format` (`'dd/MM/yyyy'`) is chrono's (`'%d/%m/%Y'`).
/// A pattern given as a column, not a literal, is left to DataFusion.
pub fn respell(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |e| {
        // `from_json(...).total`: a field of a computed struct, which DataFusion takes only
        // as a quoted name.
        if let Expr::CompoundFieldAccess { access_chain, .. } = e {
            for access in access_chain.iter_mut() {
                if let ast::AccessExpr::Dot(Expr::Identifier(i)) = access {
                    let name = Value::SingleQuotedString(i.value.clone());
                    *access = ast::AccessExpr::Dot(Expr::value(name));
                }
            }
        }
        if let Expr::Function(f) = e
            && let Some(name) = function_name(f)
        {
            match name.as_str() {
                "explode" => {
                    let span = match &f.name.0[0] {
                        ObjectNamePart::Identifier(i) => i.span,
                        _ => datafusion::sql::sqlparser::tokenizer::Span::empty(),
                    };
                    f.name.0[0] = ObjectNamePart::Identifier(Ident {
                        value: "unnest".into(),
                        quote_style: None,
                        span,
                    });
                }
                // Spark casts a date given as text, and any integer day count.
                "date_add" | "date_sub" => {
                    cast_arg(&mut f.args, 0, ast::DataType::Date);
                    cast_arg(&mut f.args, 1, ast::DataType::Int(None));
                }
                "date_trunc" => {
                    if let Some(unit) = nth_literal(&mut f.args, 0)
                        && let Some(u) = trunc_unit(unit)
                    {
                        *unit = u.to_string();
                    }
                }
                "to_date" | "to_timestamp" | "date_format" => {
                    if let Some(p) = nth_literal(&mut f.args, 1) {
                        *p = confluo_connectors::files::values::java_to_chrono(p);
                    }
                }
                _ => {}
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{ConfluoStatement, parse_sql};

    #[test]
    fn spark_spellings_become_datafusion_ones() {
        let mut s = match parse_sql(
            "SELECT explode(a), date_trunc('MM', t), to_date(d, 'dd/MM/yyyy'), date_format(t, 'yyyy-MM-dd HH:mm'), from_json(j, 'a INT').a FROM x",
        )
        .unwrap()
        .remove(0)
        .statement
        {
            ConfluoStatement::Query(s) => *s,
            other => panic!("{other:?}"),
        };
        respell(&mut s);
        assert_eq!(
            s.to_string(),
            "SELECT unnest(a), date_trunc('month', t), to_date(d, '%d/%m/%Y'), date_format(t, '%Y-%m-%d %H:%M'), from_json(j, 'a INT').'a' FROM x"
        );
    }
}
