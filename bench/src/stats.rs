//! Percentiles (nearest rank) and machine facts for the result files.
//!
//! Exact percentiles of the sorted samples, not `hdrhistogram` (measured with hdrhistogram
//! 7.6): the summaries hold negative values (clock offsets between processes: the ingest
//! breakdown's `before_apply` down to -4.13 ms in `results/ingest-latency.json`), which a
//! histogram of `u64` cannot record, and `f64`s in ms, bytes and counts reported to 3 decimals.
//! On 2.5 M log-uniform 0.1-200 ms samples in µs, 3 significant figures moved p99 from 185.483
//! to 185.599 ms and the max from 200 to 200.063; only 5 (2 MiB of counters) gave the exact
//! numbers, and only below 262 ms. Sorting those 2.5 M samples took 163 ms (the histogram
//! 21 ms), once per result file: no reason to report bucket bounds instead of samples.

use serde::Serialize;
use std::collections::BTreeMap;

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Summary of a sample of values.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Number of values.
    pub n: usize,
    /// Smallest.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// Summarizes `values` (any order).
    pub fn of(values: &[f64]) -> Self {
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        let mean = if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
        Self {
            n: v.len(),
            min: v.first().copied().unwrap_or(f64::NAN),
            p50: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
            max: v.last().copied().unwrap_or(f64::NAN),
            mean,
        }
    }
}

impl Summary {
    /// The same summary with every field rounded to 3 decimals.
    pub fn rounded(self) -> Self {
        Self {
            n: self.n,
            min: r3(self.min),
            p50: r3(self.p50),
            p90: r3(self.p90),
            p99: r3(self.p99),
            max: r3(self.max),
            mean: r3(self.mean),
        }
    }
}

/// Count of each distinct value.
pub fn histogram(values: &[usize]) -> BTreeMap<usize, usize> {
    let mut h = BTreeMap::new();
    for v in values {
        *h.entry(*v).or_insert(0) += 1;
    }
    h
}

/// Facts about the machine and the build, recorded with every result.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs (`nproc`).
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// 1/5/15-minute load averages when the run started (other work on the machine shows here).
    pub loadavg_at_start: String,
    /// The `flashnode` binary under test.
    pub flashnode_bin: String,
    /// `git rev-parse HEAD` of the workspace, with `-dirty` when the tree has changes.
    pub git_commit: String,
}

impl Machine {
    /// Reads the current machine facts.
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let mut git_commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
        if git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()) {
            git_commit.push_str("-dirty");
        }
        Self {
            nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            cpu_model,
            kernel,
            loadavg_at_start: loadavg(),
            flashnode_bin: flashnode_tests::flashnode_bin().display().to_string(),
            git_commit,
        }
    }
}

/// The first three fields of /proc/loadavg.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Rounds to 3 decimals for readable JSON.
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
