//! A scenario's results: printed as aligned `name: value` lines for people,
//! or as one JSON object per line for scripts (`--json`).

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::procstat::ProcDelta;

/// One reported value.
#[derive(Clone, Debug)]
pub enum Value {
    /// A count.
    Int(u64),
    /// A measurement.
    Float(f64),
    /// A label.
    Text(String),
}

/// The results of one scenario run, in the order they are printed.
#[derive(Clone, Debug)]
pub struct Report {
    /// Scenario name, the first JSON field.
    pub scenario: String,
    /// Results, in order.
    pub fields: Vec<(String, Value)>,
}

impl Report {
    /// An empty report for `scenario`.
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_string(),
            fields: Vec::new(),
        }
    }

    /// Adds a count.
    pub fn int(&mut self, key: &str, value: u64) -> &mut Report {
        self.fields.push((key.to_string(), Value::Int(value)));
        self
    }

    /// Adds a measurement.
    pub fn float(&mut self, key: &str, value: f64) -> &mut Report {
        self.fields.push((key.to_string(), Value::Float(value)));
        self
    }

    /// Adds a label.
    pub fn text(&mut self, key: &str, value: &str) -> &mut Report {
        self.fields.push((key.to_string(), Value::Text(value.to_string())));
        self
    }

    /// Adds p50/p90/p99/max of a latency histogram recorded in nanoseconds,
    /// reported in microseconds.
    pub fn latency(&mut self, prefix: &str, histogram: &Histogram<u64>) -> &mut Report {
        let us = |ns: u64| ns as f64 / 1000.0;
        self.int(&format!("{prefix}samples"), histogram.len());
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
            self.float(&format!("{prefix}{name}_us"), us(histogram.value_at_quantile(q)));
        }
        self.float(&format!("{prefix}max_us"), us(histogram.max()))
    }

    /// Adds what a process spent.
    pub fn process(&mut self, prefix: &str, delta: &ProcDelta) -> &mut Report {
        self.float(&format!("{prefix}cpu_s"), delta.cpu_seconds);
        self.int(&format!("{prefix}rss_kib"), delta.rss_kib);
        self.int(&format!("{prefix}peak_rss_kib"), delta.peak_rss_kib);
        self.int(&format!("{prefix}context_switches"), delta.context_switches)
    }

    /// Looks up a number by key.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.fields.iter().find(|(k, _)| k == key).and_then(|(_, v)| match v {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Text(_) => None,
        })
    }

    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        let mut out = format!("{{\"scenario\":{}", json_string(&self.scenario));
        for (key, value) in &self.fields {
            let _ = write!(out, ",{}:", json_string(key));
            match value {
                Value::Int(i) => {
                    let _ = write!(out, "{i}");
                }
                Value::Float(f) if f.is_finite() => {
                    let _ = write!(out, "{f:.3}");
                }
                Value::Float(_) => out.push_str("null"),
                Value::Text(t) => out.push_str(&json_string(t)),
            }
        }
        out.push('}');
        out
    }

    /// Aligned lines for a person.
    pub fn to_text(&self) -> String {
        let width = self.fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = format!("== {}\n", self.scenario);
        for (key, value) in &self.fields {
            let shown = match value {
                Value::Int(i) => i.to_string(),
                Value::Float(f) => format!("{f:.3}"),
                Value::Text(t) => t.clone(),
            };
            let _ = writeln!(out, "{key:>width$}: {shown}");
        }
        out
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A latency histogram in nanoseconds, up to 100 s, at 2 significant
/// digits (1% resolution at every scale, ~75 KiB per reader thread).
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, 100_000_000_000, 2).expect("constant histogram bounds are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_text_hold_every_field() {
        let mut r = Report::new("fanout");
        r.int("clients", 50).float("rate", 1.5).text("protocol", "charla \"x\"");
        assert_eq!(
            r.to_json(),
            r#"{"scenario":"fanout","clients":50,"rate":1.500,"protocol":"charla \"x\""}"#
        );
        assert!(r.to_text().contains("clients: 50"));
        assert_eq!(r.number("rate"), Some(1.5));
    }

    #[test]
    fn latency_is_reported_in_microseconds() {
        let mut h = latency_histogram();
        for ns in [10_000u64, 20_000, 30_000] {
            h.record(ns).unwrap();
        }
        let mut r = Report::new("x");
        r.latency("lat_", &h);
        assert_eq!(r.number("lat_samples"), Some(3.0));
        let p50 = r.number("lat_p50_us").unwrap();
        assert!((19.8..20.2).contains(&p50), "{p50}");
    }
}
