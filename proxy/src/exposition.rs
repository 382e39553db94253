//! The text expositions `/metrics` serves: Prometheus' format 0.0.4 and
//! OpenMetrics 1.0 (for scrapers that ask for it with `Accept`). Escaping,
//! number formatting, and the family and sample lines.
//!
//! The two differ in a family's lines (OpenMetrics names a counter's
//! family without `_total`, adds `# UNIT` and ends with `# EOF`) and in
//! timestamps (ms against seconds); samples are written the same way.
//!
//! See <https://prometheus.io/docs/instrumenting/exposition_formats/> and
//! <https://github.com/OpenObservability/OpenMetrics/blob/main/specification/OpenMetrics.md>.

use std::fmt::Write as _;

use crate::series;

/// The `Content-Type` of a 0.0.4 text exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The `Content-Type` of an OpenMetrics text exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which text format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4.
    Prometheus,
    /// OpenMetrics text 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text` with a quality above zero and not
    /// below that of the text format (`text/plain`, or `*/*` when that is
    /// not named).
    pub fn negotiate(accept: Option<&str>) -> Self {
        let (mut openmetrics, mut text, mut any) = (0.0_f64, None::<f64>, 0.0_f64);
        for part in accept.unwrap_or_default().split(',') {
            let mut params = part.split(';').map(str::trim);
            let media = params.next().unwrap_or("").to_ascii_lowercase();
            let q = params
                .find_map(|p| p.strip_prefix("q=").and_then(|q| q.trim().parse::<f64>().ok()))
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" => text = Some(text.unwrap_or(0.0).max(q)),
                "*/*" => any = any.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text.unwrap_or(any) {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// Its `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => CONTENT_TYPE,
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// An exposition being written.
#[derive(Debug)]
pub struct Exposition {
    text: String,
    format: Format,
}

impl Exposition {
    /// An empty exposition in `format`.
    pub fn new(format: Format) -> Self {
        Self { text: String::with_capacity(4096), format }
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The finished text (OpenMetrics' `# EOF` added).
    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.text.push_str("# EOF\n");
        }
        self.text
    }
}

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
    fn as_str(self, format: Format) -> &'static str {
        match (self, format) {
            (Self::Counter, _) => "counter",
            (Self::Gauge, _) => "gauge",
            (Self::Untyped, Format::Prometheus) => "untyped",
            (Self::Untyped, Format::OpenMetrics) => "unknown",
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

/// A `# HELP` text escaped: `\` and newline, and for OpenMetrics `"` too.
fn escape_help(text: &str, format: Format, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
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

/// The lines that open a family of samples named `name` (a counter's
/// with its `_total`); `name` must be valid. In OpenMetrics a counter's
/// family is named without `_total` (one whose name lacks it is
/// `unknown`), and a name ending in a unit gets its `# UNIT` line.
pub fn family(out: &mut Exposition, name: &str, help: &str, kind: Kind) {
    let format = out.format;
    let (family, kind) = match (format, kind) {
        (Format::OpenMetrics, Kind::Counter) => match name.strip_suffix("_total") {
            Some(stem) => (stem, Kind::Counter),
            None => (name, Kind::Untyped),
        },
        _ => (name, kind),
    };
    let out = &mut out.text;
    let _ = write!(out, "# HELP {family} ");
    escape_help(help, format, out);
    let _ = writeln!(out, "\n# TYPE {family} {}", kind.as_str(format));
    if format == Format::OpenMetrics
        && kind != Kind::Untyped
        && let Some(unit) = series::unit_of(family)
    {
        let _ = writeln!(out, "# UNIT {family} {unit}");
    }
}

/// One sample line; label names must be valid, values are escaped here.
pub fn sample(
    out: &mut Exposition,
    name: &str,
    labels: &[(String, String)],
    value: f64,
    time_ms: Option<u64>,
) {
    let format = out.format;
    let out = &mut out.text;
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
    match (time_ms, format) {
        (None, _) => {}
        (Some(t), Format::Prometheus) => {
            let _ = write!(out, " {}", t.min(i64::MAX as u64));
        }
        (Some(t), Format::OpenMetrics) => {
            let _ = write!(out, " {}.{:03}", t / 1000, t % 1000);
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_escaped_per_the_format() {
        let mut out = Exposition::new(Format::Prometheus);
        family(&mut out, "m", "a \\ b\nc \"q\"", Kind::Counter);
        let labels = vec![("l".to_owned(), "a\\b\"c\nd".to_owned()), ("e".into(), "é".into())];
        sample(&mut out, "m", &labels, 1.5, Some(1700000000123));
        sample(&mut out, "m", &[], f64::NAN, None);
        assert_eq!(
            out.finish(),
            "# HELP m a \\\\ b\\nc \"q\"\n# TYPE m counter\n\
             m{l=\"a\\\\b\\\"c\\nd\",e=\"é\"} 1.5 1700000000123\nm NaN\n"
        );
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_gives_units() {
        let mut out = Exposition::new(Format::OpenMetrics);
        family(&mut out, "x_rx_bytes_total", "Bytes \"in\"", Kind::Counter);
        sample(&mut out, "x_rx_bytes_total", &[], 3.0, Some(1700000000012));
        family(&mut out, "x_odd", "h", Kind::Counter);
        family(&mut out, "x_mixed_bytes_total", "h", Kind::Untyped);
        family(&mut out, "x_load", "h", Kind::Gauge);
        sample(&mut out, "x_load", &[], 0.5, None);
        assert_eq!(
            out.finish(),
            "# HELP x_rx_bytes Bytes \\\"in\\\"\n# TYPE x_rx_bytes counter\n# UNIT x_rx_bytes bytes\n\
             x_rx_bytes_total 3.0 1700000000.012\n\
             # HELP x_odd h\n# TYPE x_odd unknown\n\
             # HELP x_mixed_bytes_total h\n# TYPE x_mixed_bytes_total unknown\n\
             # HELP x_load h\n# TYPE x_load gauge\nx_load 0.5\n# EOF\n"
        );
    }

    #[test]
    fn the_format_follows_accept() {
        let om = Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5");
        assert_eq!(Format::negotiate(om), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        let refused = Some("application/openmetrics-text; q=0, text/plain");
        assert_eq!(Format::negotiate(refused), Format::Prometheus);
        let prefers_text =
            Some("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;q=0.4");
        assert_eq!(Format::negotiate(prefers_text), Format::Prometheus);
        let prometheus = Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        );
        assert_eq!(Format::negotiate(prometheus), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
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
