//! Thresholds: when a measured value warns or fails (`"> 5"`, `"between 1 and 9"`,
//! `"> 2h"` for ages).

use std::fmt;

use confluo_core::quality::Threshold;

/// A condition on a measured value; when it holds, the check warns or fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    /// `> n`
    Gt(f64),
    /// `>= n`
    Ge(f64),
    /// `< n`
    Lt(f64),
    /// `<= n`
    Le(f64),
    /// `= n`
    Eq(f64),
    /// `!= n` (or `<> n`)
    Ne(f64),
    /// `between a and b` (inclusive)
    Between(f64, f64),
    /// `not between a and b`
    NotBetween(f64, f64),
}

/// Builds a condition from its number (`Condition::Gt`, ...).
type MakeCondition = fn(f64) -> Condition;

/// How a threshold's numbers are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Plain numbers (a trailing `%` is allowed).
    Number,
    /// Durations (`90s`, `2h`, `1d`) or seconds.
    Seconds,
}

fn number(text: &str, unit: Unit) -> Result<f64, String> {
    let t = text.trim();
    let plain = t.strip_suffix('%').unwrap_or(t).trim().replace('_', "");
    if let Ok(v) = plain.parse::<f64>() {
        return Ok(v);
    }
    if unit == Unit::Seconds
        && let Ok(d) = humantime::parse_duration(t)
    {
        return Ok(d.as_secs_f64());
    }
    Err(match unit {
        Unit::Number => format!("`{t}` is not a number"),
        Unit::Seconds => format!("`{t}` is not a duration (e.g. 90s, 2h, 1d)"),
    })
}

impl Condition {
    /// Reads a threshold as written in `confluo.yaml`.
    pub fn parse(t: &Threshold, unit: Unit) -> Result<Condition, String> {
        let text = match t {
            Threshold::Number(n) => return Ok(Condition::Gt(*n)),
            Threshold::Text(s) => s.trim(),
        };
        let lower = text.to_ascii_lowercase();
        for (prefix, negated) in [("not between ", true), ("between ", false)] {
            if let Some(rest) = lower.strip_prefix(prefix) {
                let Some((a, b)) = rest.split_once(" and ") else {
                    return Err(format!("`{text}`: write `{prefix}A and B`"));
                };
                let (a, b) = (number(a, unit)?, number(b, unit)?);
                if a > b {
                    return Err(format!("`{text}`: the lower bound comes first"));
                }
                return Ok(if negated {
                    Condition::NotBetween(a, b)
                } else {
                    Condition::Between(a, b)
                });
            }
        }
        let ops: [(&str, MakeCondition); 8] = [
            (">=", Condition::Ge),
            ("<=", Condition::Le),
            ("!=", Condition::Ne),
            ("<>", Condition::Ne),
            ("==", Condition::Eq),
            (">", Condition::Gt),
            ("<", Condition::Lt),
            ("=", Condition::Eq),
        ];
        for (op, make) in ops {
            if let Some(rest) = text.strip_prefix(op) {
                return Ok(make(number(rest, unit)?));
            }
        }
        // A bare value reads as "above it is bad", as a bare number does.
        number(text, unit).map(Condition::Gt).map_err(|e| {
            format!("{e}; write a condition such as `> 5`, `< 1000`, `between 1 and 9`")
        })
    }

    /// Whether `value` meets the condition (the check warns or fails).
    pub fn holds(&self, value: f64) -> bool {
        match *self {
            Condition::Gt(n) => value > n,
            Condition::Ge(n) => value >= n,
            Condition::Lt(n) => value < n,
            Condition::Le(n) => value <= n,
            Condition::Eq(n) => value == n,
            Condition::Ne(n) => value != n,
            Condition::Between(a, b) => value >= a && value <= b,
            Condition::NotBetween(a, b) => value < a || value > b,
        }
    }
}

fn show(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Condition::Gt(n) => write!(f, "> {}", show(n)),
            Condition::Ge(n) => write!(f, ">= {}", show(n)),
            Condition::Lt(n) => write!(f, "< {}", show(n)),
            Condition::Le(n) => write!(f, "<= {}", show(n)),
            Condition::Eq(n) => write!(f, "= {}", show(n)),
            Condition::Ne(n) => write!(f, "!= {}", show(n)),
            Condition::Between(a, b) => write!(f, "between {} and {}", show(a), show(b)),
            Condition::NotBetween(a, b) => write!(f, "not between {} and {}", show(a), show(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str, unit: Unit) -> Condition {
        Condition::parse(&Threshold::Text(s.into()), unit).unwrap()
    }

    #[test]
    fn conditions_read_as_written() {
        assert_eq!(p("> 5", Unit::Number), Condition::Gt(5.0));
        assert_eq!(p(">=5%", Unit::Number), Condition::Ge(5.0));
        assert_eq!(p("< 1_000", Unit::Number), Condition::Lt(1000.0));
        assert_eq!(p("<> 0", Unit::Number), Condition::Ne(0.0));
        assert_eq!(p("= 0", Unit::Number), Condition::Eq(0.0));
        assert_eq!(
            p("between 1 and 9", Unit::Number),
            Condition::Between(1.0, 9.0)
        );
        assert_eq!(
            p("NOT BETWEEN 10 and 20", Unit::Number),
            Condition::NotBetween(10.0, 20.0)
        );
        assert_eq!(p("> 2h", Unit::Seconds), Condition::Gt(7200.0));
        assert_eq!(p("90m", Unit::Seconds), Condition::Gt(5400.0));
        assert_eq!(
            Condition::parse(&Threshold::Number(3.0), Unit::Number).unwrap(),
            Condition::Gt(3.0)
        );
        assert!(p("not between 10 and 20", Unit::Number).holds(9.0));
        assert!(!p("between 10 and 20", Unit::Number).holds(21.0));
        assert_eq!(
            p("between 1 and 9.5", Unit::Number).to_string(),
            "between 1 and 9.5"
        );
    }

    #[test]
    fn bad_conditions_say_what_is_wrong() {
        let e = |s: &str, u| Condition::parse(&Threshold::Text(s.into()), u).unwrap_err();
        assert!(e("> lots", Unit::Number).contains("`lots` is not a number"));
        assert!(e("between 9 and 1", Unit::Number).contains("lower bound"));
        assert!(e("between 1", Unit::Number).contains("A and B"));
        assert!(e("> soon", Unit::Seconds).contains("not a duration"));
    }
}
