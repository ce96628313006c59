//! Latency histograms, clocks, and resource use of server processes read from /proc.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Microseconds since the Unix epoch: the sender and receivers share this machine's clock.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Latencies in microseconds, shared by all receiving tasks (recording is a few ns).
#[derive(Clone)]
pub struct Latencies(Arc<Mutex<Histogram<u64>>>);

/// Percentiles in milliseconds.
#[derive(Debug, Default, Serialize, Clone, Copy)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latencies {
    pub fn new() -> Result<Self, hdrhistogram::CreationError> {
        // 1 µs .. 10 min with 3 significant digits; values above saturate at the top.
        let histogram = Histogram::new_with_bounds(1, 600_000_000, 3)?;
        Ok(Latencies(Arc::new(Mutex::new(histogram))))
    }

    pub fn record(&self, micros: u64) {
        let mut histogram = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        histogram.saturating_record(micros.max(1));
    }

    pub fn summary(&self) -> LatencySummary {
        let histogram = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let ms = |micros: u64| micros as f64 / 1000.0;
        LatencySummary {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// A server process to watch, named for the report.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

impl std::str::FromStr for Watched {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (name, pid) = value
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=PID, got {value:?}"))?;
        let pid = pid
            .parse()
            .map_err(|_| format!("PID in {value:?} is not a number"))?;
        Ok(Watched {
            name: name.to_owned(),
            pid,
        })
    }
}

/// One reading of a process: resident memory and CPU time used so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    pub rss_kib: u64,
    pub cpu_ticks: u64,
}

/// Reads `/proc/<pid>/status` and `/proc/<pid>/stat`; `None` once the process is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(ProcSample {
        rss_kib: parse_rss_kib(&status)?,
        cpu_ticks: parse_cpu_ticks(&stat)?,
    })
}

/// True while the process runs (a zombie waiting for its parent counts as exited).
pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_state(&stat))
        .is_some_and(|state| state != 'Z' && state != 'X')
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Fields after the command name, which is in parentheses and may itself contain spaces.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

fn parse_state(stat: &str) -> Option<char> {
    stat_fields(stat)?.first()?.chars().next()
}

/// utime + stime (fields 14 and 15 of stat; 12 and 13 after the name).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let fields = stat_fields(stat)?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resource use of one process over a measured window.
#[derive(Debug, Serialize, Clone)]
pub struct ProcUsage {
    pub name: String,
    pub rss_start_mib: f64,
    pub rss_end_mib: f64,
    /// Percent of one core over the window.
    pub cpu_percent: f64,
}

/// Start-of-window readings of the watched processes.
pub struct Window {
    started: std::time::Instant,
    readings: Vec<(Watched, Option<ProcSample>)>,
    clock_ticks_per_second: f64,
}

impl Window {
    pub fn start(watched: &[Watched], clock_ticks_per_second: u64) -> Self {
        Window {
            started: std::time::Instant::now(),
            readings: watched.iter().map(|w| (w.clone(), sample(w.pid))).collect(),
            clock_ticks_per_second: clock_ticks_per_second as f64,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn finish(&self) -> Vec<ProcUsage> {
        let seconds = self.elapsed().as_secs_f64().max(1e-3);
        self.readings
            .iter()
            .filter_map(|(watched, start)| {
                let start = (*start)?;
                let end = sample(watched.pid)?;
                let cpu = end.cpu_ticks.saturating_sub(start.cpu_ticks) as f64
                    / self.clock_ticks_per_second;
                Some(ProcUsage {
                    name: watched.name.clone(),
                    rss_start_mib: start.rss_kib as f64 / 1024.0,
                    rss_end_mib: end.rss_kib as f64 / 1024.0,
                    cpu_percent: 100.0 * cpu / seconds,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let status = "Name:\tredis-server\nVmPeak:\t  9000 kB\nVmRSS:\t    8256 kB\nThreads:\t5\n";
        assert_eq!(parse_rss_kib(status), Some(8256));
        let stat = "4242 (my prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 5 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_state(stat), Some('S'));
        assert_eq!(parse_state("7 (x) Z 1"), Some('Z'));
    }

    #[test]
    fn watched_needs_name_and_pid() {
        let w: Watched = "gateway-a=123".parse().unwrap();
        assert_eq!((w.name.as_str(), w.pid), ("gateway-a", 123));
        assert!("gateway".parse::<Watched>().is_err());
        assert!("gateway=abc".parse::<Watched>().is_err());
    }

    #[test]
    fn percentiles_from_samples() {
        let latencies = Latencies::new().unwrap();
        for micros in 1..=1000 {
            latencies.record(micros * 10);
        }
        let summary = latencies.summary();
        assert_eq!(summary.count, 1000);
        assert!((summary.p50_ms - 5.0).abs() < 0.05, "{summary:?}");
        assert!((summary.p99_ms - 9.9).abs() < 0.05, "{summary:?}");
        assert!(sample(std::process::id()).is_some_and(|s| s.rss_kib > 0));
        assert!(is_running(std::process::id()));
    }
}
