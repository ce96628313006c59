//! Saturation: one scenario run again and again at a rising offered load until it stops
//! keeping up (p99 over the limit, or too few deliveries), to find the highest load each
//! system sustains. Bounded by a number of steps, each bounded in time.

use serde_json::json;

use crate::Error;
use crate::load::{self, LoadSpec};
use crate::report::{Better, Result};
use crate::storm::{self, StormSpec};

/// When a step counts as kept up with.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub p99_ms: f64,
    /// Deliveries (or successful joins) as a percentage of what was expected.
    pub min_success_percent: f64,
}

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub offered: f64,
    pub achieved: f64,
    pub p99_ms: f64,
    pub success_percent: f64,
}

impl Limits {
    pub fn sustained(&self, step: &Step) -> bool {
        step.p99_ms <= self.p99_ms && step.success_percent >= self.min_success_percent
    }
}

/// The offered loads to try: `start`, then each `factor` times the one before, `steps` in all.
pub fn ramp(start: f64, factor: f64, steps: u32) -> Vec<f64> {
    (0..steps)
        .scan(start, |load, _| {
            let this = *load;
            *load *= factor;
            Some(this)
        })
        .collect()
}

/// The best achieved figure among the steps that kept up, if any did. The ramp stops at the
/// first step that did not, so only the ones before it count.
pub fn highest_sustained(steps: &[Step], limits: &Limits) -> Option<Step> {
    steps
        .iter()
        .take_while(|step| limits.sustained(step))
        .copied()
        .max_by(|a, b| a.achieved.total_cmp(&b.achieved))
}

#[derive(Debug, Clone)]
pub struct RampSpec {
    pub start: f64,
    pub factor: f64,
    pub steps: u32,
    pub limits: Limits,
}

fn metric(result: &Result, name: &str) -> f64 {
    result
        .metrics
        .iter()
        .find(|m| m.name == name)
        .map_or(f64::NAN, |m| m.value)
}

fn summary(scenario: &str, system: &str, unit: &str, steps: &[Step], ramp: &RampSpec) -> Result {
    let best = highest_sustained(steps, &ramp.limits);
    let mut result = Result::new(scenario, system).metric(
        &format!("highest sustained {unit}"),
        best.map_or(0.0, |s| s.achieved),
        Better::Higher,
    );
    if let Some(best) = best {
        result = result.metric("p99 ms at that load", best.p99_ms, Better::Lower);
    }
    result.details = json!({
        "limits": {"p99_ms": ramp.limits.p99_ms, "min_success_percent": ramp.limits.min_success_percent},
        "steps": steps.iter().map(|s| json!({
            "offered": s.offered, "achieved": s.achieved, "p99_ms": s.p99_ms,
            "success_percent": s.success_percent, "sustained": ramp.limits.sustained(s),
        })).collect::<Vec<_>>(),
    });
    result
}

/// Chat load at rising send rates: the highest delivered msg/s with p99 and delivery in limits.
pub async fn messages(base: LoadSpec, ramp_spec: RampSpec) -> std::result::Result<Result, Error> {
    let mut steps = Vec::new();
    let mut system = String::new();
    for rate in ramp(ramp_spec.start, ramp_spec.factor, ramp_spec.steps) {
        let measured = load::run(LoadSpec {
            rate,
            ..base.clone()
        })
        .await?;
        system.clone_from(&measured.system);
        let step = Step {
            offered: rate,
            achieved: metric(&measured, "delivered msg/s"),
            p99_ms: metric(&measured, "p99 ms"),
            success_percent: metric(&measured, "delivered / expected %"),
        };
        eprintln!("saturation {system}: {step:?}");
        steps.push(step);
        if !ramp_spec.limits.sustained(&step) {
            break;
        }
    }
    Ok(summary(
        &base.scenario,
        &system,
        "delivered msg/s",
        &steps,
        &ramp_spec,
    ))
}

/// Connect/disconnect storms with more and more concurrent clients: the highest joins/s with
/// join p99 and the share of successful joins in limits.
pub async fn connects(base: StormSpec, ramp_spec: RampSpec) -> std::result::Result<Result, Error> {
    let mut steps = Vec::new();
    let mut system = String::new();
    for workers in ramp(ramp_spec.start, ramp_spec.factor, ramp_spec.steps) {
        let workers = workers.round().max(1.0) as u32;
        let measured = storm::run(StormSpec {
            workers,
            ..base.clone()
        })
        .await?;
        system.clone_from(&measured.system);
        let joins = measured.details["joins"].as_f64().unwrap_or(0.0);
        let failures = measured.details["failures"].as_f64().unwrap_or(0.0);
        let step = Step {
            offered: f64::from(workers),
            achieved: metric(&measured, "joins/s"),
            p99_ms: metric(&measured, "join p99 ms"),
            success_percent: 100.0 * joins / (joins + failures).max(1.0),
        };
        eprintln!("saturation {system}: {step:?}");
        steps.push(step);
        if !ramp_spec.limits.sustained(&step) {
            break;
        }
    }
    Ok(summary(
        &base.scenario,
        &system,
        "joins/s",
        &steps,
        &ramp_spec,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        p99_ms: 50.0,
        min_success_percent: 99.0,
    };

    fn step(offered: f64, achieved: f64, p99_ms: f64, success_percent: f64) -> Step {
        Step {
            offered,
            achieved,
            p99_ms,
            success_percent,
        }
    }

    #[test]
    fn ramp_multiplies_from_the_start() {
        assert_eq!(ramp(100.0, 2.0, 4), vec![100.0, 200.0, 400.0, 800.0]);
        assert!(ramp(100.0, 2.0, 0).is_empty());
    }

    #[test]
    fn a_step_over_either_limit_is_not_sustained() {
        assert!(LIMITS.sustained(&step(1.0, 1.0, 50.0, 99.0)));
        assert!(!LIMITS.sustained(&step(1.0, 1.0, 50.1, 100.0)));
        assert!(!LIMITS.sustained(&step(1.0, 1.0, 1.0, 98.9)));
        assert!(!LIMITS.sustained(&step(1.0, 1.0, f64::NAN, 100.0)));
    }

    #[test]
    fn highest_sustained_ignores_steps_after_the_first_failure() {
        let steps = [
            step(100.0, 100.0, 5.0, 100.0),
            step(200.0, 199.0, 9.0, 100.0),
            step(400.0, 390.0, 80.0, 100.0),
            // A lucky step after the limit was crossed does not count.
            step(800.0, 700.0, 20.0, 100.0),
        ];
        assert_eq!(highest_sustained(&steps, &LIMITS), Some(steps[1]));
        assert_eq!(highest_sustained(&steps[2..], &LIMITS), None);
    }
}
