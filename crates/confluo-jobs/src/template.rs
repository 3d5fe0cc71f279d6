//! `{{...}}` references in task text: `{{job.parameters.p}}`, `{{job.run_id}}`,
//! `{{job.start_time}}`, `{{job.trigger.files}}`, `{{tasks.k.values.v}}`.

/// A reference found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    /// `{{job.parameters.p}}`
    Parameter(String),
    /// `{{job.run_id}}`, `{{job.start_time}}`, `{{job.logical_time}}` (the schedule's tick,
    /// or the start of a run started by hand), `{{job.name}}`
    Run(String),
    /// `{{tasks.k.values.v}}`
    TaskValue(String, String),
    /// `{{job.trigger.type}}`, `{{job.trigger.files}}`, ...: what started the run and
    /// what its trigger passed (empty when another trigger started it).
    Trigger(String),
    /// `{{input}}`: a `for_each` iteration's input.
    Input,
}

/// The references of `text`, or what is wrong with one.
pub fn references(text: &str) -> Result<Vec<Ref>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("`{{{{` without `}}}}` in {text:?}"))?;
        let inner = after[..end].trim();
        let parts: Vec<&str> = inner.split('.').collect();
        out.push(match parts.as_slice() {
            ["job", "parameters", p] => Ref::Parameter(p.to_string()),
            ["job", what @ ("run_id" | "start_time" | "logical_time" | "name")] => {
                Ref::Run(what.to_string())
            }
            ["tasks", k, "values", v] => Ref::TaskValue(k.to_string(), v.to_string()),
            ["job", "trigger", k] => Ref::Trigger(k.to_string()),
            ["input"] => Ref::Input,
            _ => {
                return Err(format!(
                    "`{{{{{inner}}}}}` is not a reference Confluo knows: use {{{{job.parameters.NAME}}}}, {{{{job.run_id}}}}, {{{{job.start_time}}}}, {{{{job.logical_time}}}}, {{{{job.name}}}}, {{{{job.trigger.NAME}}}}, {{{{tasks.KEY.values.NAME}}}} or {{{{input}}}}"
                ));
            }
        });
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// `text` with each reference replaced by `value(reference)`.
pub fn render(
    text: &str,
    value: &dyn Fn(&Ref) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("`{{{{` without `}}}}` in {text:?}"))?;
        let piece = &rest[start..start + 2 + end + 2];
        let r = references(piece)?.remove(0);
        out.push_str(&value(&r)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_rendering() {
        let t = "day={{ job.parameters.day }} n={{tasks.check.values.n}} run={{job.run_id}}";
        assert_eq!(
            references(t).unwrap(),
            vec![
                Ref::Parameter("day".into()),
                Ref::TaskValue("check".into(), "n".into()),
                Ref::Run("run_id".into())
            ]
        );
        let out = render(t, &|r| {
            Ok(match r {
                Ref::Parameter(p) => format!("<{p}>"),
                Ref::TaskValue(k, v) => format!("{k}.{v}"),
                Ref::Run(w) => w.clone(),
                Ref::Trigger(k) => format!("[{k}]"),
                Ref::Input => "input".into(),
            })
        })
        .unwrap();
        assert_eq!(out, "day=<day> n=check.n run=run_id");
        assert_eq!(
            references("{{job.trigger.files}}").unwrap(),
            vec![Ref::Trigger("files".into())]
        );
        assert!(
            references("{{job.paramters.x}}")
                .unwrap_err()
                .contains("job.parameters.NAME")
        );
        assert!(references("{{job.parameters.x").is_err());
    }
}
