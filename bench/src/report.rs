//! Results as JSON lines, and the comparison table built from them.

use serde::{Deserialize, Serialize};

/// Whether a larger value of a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub better: Better,
}

/// One system's figures in one scenario, printed as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Result {
    pub scenario: String,
    /// `canvaschat`, `centrifugo` (the peer), `redis` (the ceiling) or `operator`.
    pub system: String,
    pub metrics: Vec<Metric>,
    /// Everything else measured, for whoever wants more than the table.
    #[serde(default)]
    pub details: serde_json::Value,
}

impl Result {
    pub fn new(scenario: &str, system: &str) -> Self {
        Result {
            scenario: scenario.to_owned(),
            system: system.to_owned(),
            metrics: Vec::new(),
            details: serde_json::Value::Null,
        }
    }

    pub fn metric(mut self, name: &str, value: f64, better: Better) -> Self {
        self.metrics.push(Metric {
            name: name.to_owned(),
            value,
            better,
        });
        self
    }
}

const OURS: &str = "canvaschat";
const PEER: &str = "centrifugo";
const CEILING: &str = "redis";

fn format_value(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// `ours / other`, and whether ours is at least as good given the metric's direction.
fn ratio(ours: f64, other: f64, better: Better) -> String {
    if other == 0.0 {
        return if ours == 0.0 {
            "= (both 0)".to_owned()
        } else {
            "n/a (0)".to_owned()
        };
    }
    let r = ours / other;
    let good = match better {
        Better::Higher => r >= 0.995,
        Better::Lower => r <= 1.005,
    };
    format!("{r:.2}x {}", if good { "ok" } else { "worse" })
}

/// A Markdown table: one row per scenario and metric, with CanvasChat's figure as a ratio
/// to the peer's and to the ceiling's measured in the same run.
pub fn table(results: &[Result]) -> String {
    let mut rows: Vec<(String, String, Better)> = Vec::new();
    for result in results {
        for metric in &result.metrics {
            let key = (result.scenario.clone(), metric.name.clone(), metric.better);
            if !rows.contains(&key) {
                rows.push(key);
            }
        }
    }
    let find = |scenario: &str, name: &str, system: &str| {
        results
            .iter()
            .filter(|r| r.scenario == scenario && r.system == system)
            .flat_map(|r| r.metrics.iter())
            .find(|m| m.name == name)
            .map(|m| m.value)
    };
    let mut out = String::from(
        "| scenario | metric | better | CanvasChat | Centrifugo | CanvasChat / Centrifugo | Redis pub/sub | CanvasChat / Redis |\n\
         |---|---|---|---:|---:|---|---:|---|\n",
    );
    for (scenario, name, better) in rows {
        let ours = find(&scenario, &name, OURS).or_else(|| find(&scenario, &name, "operator"));
        let peer = find(&scenario, &name, PEER);
        let ceiling = find(&scenario, &name, CEILING);
        let cell = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), format_value);
        let versus = |other: Option<f64>| match (ours, other) {
            (Some(o), Some(x)) => ratio(o, x, better),
            _ => "–".to_owned(),
        };
        let direction = match better {
            Better::Higher => "higher",
            Better::Lower => "lower",
        };
        out.push_str(&format!(
            "| {scenario} | {name} | {direction} | {} | {} | {} | {} | {} |\n",
            cell(ours),
            cell(peer),
            versus(peer),
            cell(ceiling),
            versus(ceiling),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_ratios_against_peer_and_ceiling() {
        let results = vec![
            Result::new("fanout", "canvaschat")
                .metric("delivered msg/s", 5000.0, Better::Higher)
                .metric("p99 ms", 4.0, Better::Lower),
            Result::new("fanout", "centrifugo")
                .metric("delivered msg/s", 4000.0, Better::Higher)
                .metric("p99 ms", 2.0, Better::Lower),
            Result::new("fanout", "redis").metric("delivered msg/s", 10000.0, Better::Higher),
            Result::new("operator", "operator").metric("writes per resync", 0.0, Better::Lower),
        ];
        let table = table(&results);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert_eq!(
            lines[2],
            "| fanout | delivered msg/s | higher | 5000 | 4000 | 1.25x ok | 10000 | 0.50x worse |"
        );
        assert_eq!(
            lines[3],
            "| fanout | p99 ms | lower | 4.00 | 2.00 | 2.00x worse | – | – |"
        );
        assert_eq!(
            lines[4],
            "| operator | writes per resync | lower | 0.00 | – | – | – | – |"
        );
    }

    #[test]
    fn results_round_trip_as_json_lines() {
        let result =
            Result::new("idle", "canvaschat").metric("KiB per connection", 12.5, Better::Lower);
        let line = serde_json::to_string(&result).unwrap();
        let back: Result = serde_json::from_str(&line).unwrap();
        assert_eq!(back.metrics[0].value, 12.5);
        assert_eq!(back.metrics[0].better, Better::Lower);
    }
}
