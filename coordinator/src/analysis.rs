//! Canary analysis: are the canary hosts worse than the baseline hosts?
//!
//! For each metric (error ratio, latency) the samples of the two groups are
//! compared with a one-sided Mann-Whitney U test (normal approximation with
//! tie correction), and a difference counts only when it is both
//! significant and larger than an effect-size floor: a tiny but "certain"
//! difference is not a reason to roll back. Too few samples is
//! `inconclusive`, never pass and never fail.

use serde::{Deserialize, Serialize};

/// Samples of one group of hosts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    /// Probe checks: 1.0 for a failed check, 0.0 for a good one.
    pub errors: Vec<f64>,
    /// Probe check latencies.
    pub latency_ms: Vec<f64>,
    /// Real requests, from the app's own metrics: 1.0 for a 5xx, 0.0 for
    /// any other answer.
    pub requests: Vec<f64>,
    /// Real request latencies (upper bounds of the app's histogram
    /// buckets).
    pub request_latency_ms: Vec<f64>,
}

/// Thresholds of the analysis.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub min_samples: usize,
    /// One-sided significance level.
    pub alpha: f64,
    /// Error ratios must differ by at least this (absolute).
    pub error_ratio_floor: f64,
    /// Median latency must grow by at least this fraction...
    pub latency_relative_floor: f64,
    /// ...and at least this many milliseconds.
    pub latency_absolute_floor_ms: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            min_samples: 20,
            alpha: 0.01,
            error_ratio_floor: 0.02,
            latency_relative_floor: 0.2,
            latency_absolute_floor_ms: 5.0,
        }
    }
}

/// The verdict of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

/// One metric's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    pub metric: String,
    pub canary: f64,
    pub baseline: f64,
    pub canary_n: usize,
    pub baseline_n: usize,
    pub p_value: Option<f64>,
    pub verdict: Verdict,
    pub why: String,
}

/// The whole analysis, stored with the rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub verdict: Verdict,
    pub metrics: Vec<MetricResult>,
}

/// One-sided Mann-Whitney U: the probability of seeing `a` this much
/// larger than `b` by chance (normal approximation, tie-corrected).
pub fn mann_whitney_greater(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let mut all: Vec<(f64, usize)> = a
        .iter()
        .map(|x| (*x, 0))
        .chain(b.iter().map(|x| (*x, 1)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut ranks = vec![0.0; n];
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in ranks.iter_mut().take(j + 1).skip(i) {
            *k = r;
        }
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let r1: f64 = all
        .iter()
        .zip(&ranks)
        .filter(|((_, g), _)| *g == 0)
        .map(|(_, r)| r)
        .sum();
    let u1 = r1 - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let nn = n1 + n2;
    let var = n1 * n2 / 12.0 * ((nn + 1.0) - tie_term / (nn * (nn - 1.0)));
    if var <= 0.0 {
        return 1.0; // every value equal: no evidence of a difference
    }
    let z = (u1 - mean - 0.5) / var.sqrt(); // continuity correction
    1.0 - normal_cdf(z)
}

/// Standard normal CDF (Abramowitz-Stegun 7.1.26 via erf).
fn normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))
}

fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    if x >= 0.0 { y } else { -y }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// Judges one metric: too few samples is inconclusive; otherwise the
/// canary fails when it is significantly larger and by at least `floor`.
fn judge(
    metric: &str,
    canary: &[f64],
    baseline: &[f64],
    summary: fn(&[f64]) -> f64,
    floor: f64,
    unit: &str,
    cfg: Config,
) -> MetricResult {
    let (c, b) = (summary(canary), summary(baseline));
    let mut m = MetricResult {
        metric: metric.into(),
        canary: c,
        baseline: b,
        canary_n: canary.len(),
        baseline_n: baseline.len(),
        p_value: None,
        verdict: Verdict::Inconclusive,
        why: format!("too few samples (need {} per group)", cfg.min_samples),
    };
    if canary.len() < cfg.min_samples || baseline.len() < cfg.min_samples {
        return m;
    }
    let p = mann_whitney_greater(canary, baseline);
    m.p_value = Some(p);
    if p < cfg.alpha && c - b >= floor {
        m.verdict = Verdict::Fail;
        m.why = format!("canary {c:.3}{unit} vs baseline {b:.3}{unit} (p={p:.4})");
    } else {
        m.verdict = Verdict::Pass;
        m.why = "no significant increase above the floor".into();
    }
    m
}

/// Compares canary with baseline: probe checks always, real requests too
/// when the spec names the app's metrics (`with_requests`).
pub fn analyze(canary: &Samples, baseline: &Samples, with_requests: bool, cfg: Config) -> Report {
    let floor_of = |base: &[f64]| {
        (median(base) * cfg.latency_relative_floor).max(cfg.latency_absolute_floor_ms)
    };
    let latency_floor = floor_of(&baseline.latency_ms);
    let mut metrics = vec![
        judge(
            "error_ratio",
            &canary.errors,
            &baseline.errors,
            mean,
            cfg.error_ratio_floor,
            "",
            cfg,
        ),
        judge(
            "latency_p50_ms",
            &canary.latency_ms,
            &baseline.latency_ms,
            median,
            latency_floor,
            " ms",
            cfg,
        ),
    ];
    if with_requests {
        metrics.push(judge(
            "request_error_ratio",
            &canary.requests,
            &baseline.requests,
            mean,
            cfg.error_ratio_floor,
            "",
            cfg,
        ));
        if !canary.request_latency_ms.is_empty() || !baseline.request_latency_ms.is_empty() {
            metrics.push(judge(
                "request_latency_p50_ms",
                &canary.request_latency_ms,
                &baseline.request_latency_ms,
                median,
                floor_of(&baseline.request_latency_ms),
                " ms",
                cfg,
            ));
        }
    }
    Report {
        verdict: overall(&metrics),
        metrics,
    }
}

/// The verdict of several metrics: any failing fails; else any
/// inconclusive is inconclusive; else pass.
pub fn overall(metrics: &[MetricResult]) -> Verdict {
    if metrics.iter().any(|m| m.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if metrics.iter().any(|m| m.verdict == Verdict::Inconclusive) {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic sample generator.
    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    fn group(seed: u64, n: usize, error_ratio: f64, latency: f64) -> Samples {
        let mut s = seed;
        Samples {
            errors: (0..n)
                .map(|_| if lcg(&mut s) < error_ratio { 1.0 } else { 0.0 })
                .collect(),
            latency_ms: (0..n)
                .map(|_| latency * (0.8 + 0.4 * lcg(&mut s)))
                .collect(),
            ..Samples::default()
        }
    }

    #[test]
    fn identical_groups_pass() {
        let r = analyze(
            &group(1, 200, 0.01, 10.0),
            &group(2, 200, 0.01, 10.0),
            false,
            Config::default(),
        );
        assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
    }

    #[test]
    fn an_injected_error_ratio_fails() {
        let r = analyze(
            &group(1, 200, 0.3, 10.0),
            &group(2, 200, 0.01, 10.0),
            false,
            Config::default(),
        );
        assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
        assert_eq!(r.metrics[0].verdict, Verdict::Fail);
        assert!(r.metrics[0].p_value.unwrap() < 0.001);
    }

    #[test]
    fn a_latency_shift_fails() {
        let r = analyze(
            &group(1, 200, 0.0, 30.0),
            &group(2, 200, 0.0, 10.0),
            false,
            Config::default(),
        );
        assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
        assert_eq!(r.metrics[1].verdict, Verdict::Fail);
    }

    #[test]
    fn a_significant_but_tiny_latency_shift_passes_the_effect_floor() {
        let r = analyze(
            &group(1, 2000, 0.0, 10.5),
            &group(2, 2000, 0.0, 10.0),
            false,
            Config::default(),
        );
        assert_eq!(r.metrics[1].verdict, Verdict::Pass, "{r:#?}");
    }

    #[test]
    fn no_data_or_too_little_is_inconclusive_never_pass_or_fail() {
        let r = analyze(
            &Samples::default(),
            &Samples::default(),
            false,
            Config::default(),
        );
        assert_eq!(r.verdict, Verdict::Inconclusive);
        let r = analyze(
            &group(1, 5, 1.0, 100.0),
            &group(2, 5, 0.0, 1.0),
            false,
            Config::default(),
        );
        assert_eq!(
            r.verdict,
            Verdict::Inconclusive,
            "five samples prove nothing: {r:#?}"
        );
    }

    #[test]
    fn the_u_test_agrees_with_a_known_case() {
        // All of a above all of b: the one-sided p is tiny; reversed, ~1.
        let a: Vec<f64> = (10..30).map(f64::from).collect();
        let b: Vec<f64> = (0..20).map(f64::from).collect();
        assert!(mann_whitney_greater(&a, &b) < 0.001);
        assert!(mann_whitney_greater(&b, &a) > 0.99);
        assert!((mann_whitney_greater(&b, &b) - 0.5).abs() < 0.1);
    }

    #[test]
    fn real_requests_failing_more_on_the_canary_fail_it_though_its_probes_pass() {
        let mut canary = group(1, 200, 0.0, 10.0);
        let mut baseline = group(2, 200, 0.0, 10.0);
        canary.requests = (0..1000)
            .map(|i| if i % 5 == 0 { 1.0 } else { 0.0 })
            .collect();
        baseline.requests = vec![0.0; 1000];
        let r = analyze(&canary, &baseline, true, Config::default());
        assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
        let m = r
            .metrics
            .iter()
            .find(|m| m.metric == "request_error_ratio")
            .unwrap();
        assert_eq!((m.canary, m.baseline, m.canary_n), (0.2, 0.0, 1000));
        assert_eq!(
            r.metrics[0].verdict,
            Verdict::Pass,
            "the probes saw nothing"
        );
        // Without the app's metrics named, requests are not judged.
        assert_eq!(
            analyze(&canary, &baseline, false, Config::default()).verdict,
            Verdict::Pass
        );
        // Named but never scraped: too little data, never a pass.
        canary.requests.clear();
        assert_eq!(
            analyze(&canary, &baseline, true, Config::default()).verdict,
            Verdict::Inconclusive
        );
    }
}
