//! The Prometheus text exposition format 0.0.4: escaping, number
//! formatting, and the `# HELP` / `# TYPE` / sample lines.
//!
//! See <https://prometheus.io/docs/instrumenting/exposition_formats/>.

use std::fmt::Write as _;

/// The `Content-Type` of a 0.0.4 text exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type, as `# TYPE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic (may reset).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Mixed or unknown.
    Untyped,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Untyped => "untyped",
        }
    }
}

/// A label value escaped for the inside of double quotes: `\`, `"` and newline.
pub fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A `# HELP` text escaped: `\` and newline.
fn escape_help(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value as Prometheus parses it: `NaN`, `+Inf`, `-Inf`, or a
/// decimal number (exponent notation for very large or small ones).
pub fn format_value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v:?}");
    }
}

/// The `# HELP` and `# TYPE` lines of a family; `name` must be valid.
pub fn family(out: &mut String, name: &str, help: &str, kind: Kind) {
    let _ = write!(out, "# HELP {name} ");
    escape_help(help, out);
    let _ = writeln!(out, "\n# TYPE {name} {}", kind.as_str());
}

/// One sample line; label names must be valid, values are escaped here.
pub fn sample(
    out: &mut String,
    name: &str,
    labels: &[(String, String)],
    value: f64,
    time_ms: Option<u64>,
) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(v, out);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    format_value(value, out);
    if let Some(t) = time_ms {
        let _ = write!(out, " {}", t.min(i64::MAX as u64));
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_escaped_per_the_format() {
        let mut out = String::new();
        family(&mut out, "m", "a \\ b\nc \"q\"", Kind::Counter);
        let labels = vec![("l".to_owned(), "a\\b\"c\nd".to_owned()), ("e".into(), "é".into())];
        sample(&mut out, "m", &labels, 1.5, Some(1700000000123));
        sample(&mut out, "m", &[], f64::NAN, None);
        assert_eq!(
            out,
            "# HELP m a \\\\ b\\nc \"q\"\n# TYPE m counter\n\
             m{l=\"a\\\\b\\\"c\\nd\",e=\"é\"} 1.5 1700000000123\nm NaN\n"
        );
    }

    #[test]
    fn numbers_parse_back_in_prometheus_syntax() {
        let f = |v: f64| {
            let mut s = String::new();
            format_value(v, &mut s);
            s
        };
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(2.0), "2.0");
        assert_eq!(f(-0.25), "-0.25");
        assert_eq!(f(1e300), "1e300");
        for v in [0.1, 1e-7, 123456789.125, 1.7976931348623157e308, -5e-324] {
            assert_eq!(f(v).parse::<f64>().ok(), Some(v));
        }
    }
}
