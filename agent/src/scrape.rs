//! The app's own Prometheus metrics, scraped from each instance for canary
//! analysis (the spec's `[metrics]`): a request counter by status and,
//! optionally, a latency histogram. Scrapes run on a connection the
//! instance itself accepted (see [`crate::attribute`]), from the moment it
//! was first ready, and publish the instance's lifetime counters; the
//! coordinator takes windows of them.

use std::time::Duration;

use cutover_common::service::AppMetrics;
use tokio::sync::watch;

use crate::probe::{self, ProbeStatus};

/// An instance's counters, as its metrics endpoint last said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppCounters {
    pub requests: u64,
    /// Requests answered with a 5xx status.
    pub errors: u64,
    /// Cumulative histogram buckets: (upper bound in seconds, count), by
    /// bound.
    pub latency: Vec<(f64, u64)>,
}

/// What the scraper knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scraped {
    /// The last good scrape.
    pub counters: Option<AppCounters>,
    /// Why the latest scrape failed.
    pub error: Option<String>,
}

/// One sample line of the text format: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses one line of the Prometheus text format (pure); `None` for
/// comments, blank lines and lines it cannot read.
fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => break i,
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                c => value.push(c),
                            },
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                c => key.push(c),
            }
        };
        rest = &body[end + 1..];
    }
    let value = parse_value(rest.split_whitespace().next()?)?;
    Some((name, labels, value))
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        v => v.parse().ok(),
    }
}

/// Reads the counters `m` names from a scrape (pure).
pub fn parse(text: &str, m: &AppMetrics) -> Result<AppCounters, String> {
    let total = format!("{}_total", m.requests);
    let bucket = m.latency.as_ref().map(|l| format!("{l}_bucket"));
    let mut c = AppCounters::default();
    let mut seen = false;
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for (name, labels, value) in text.lines().filter_map(parse_line) {
        let count = if value.is_finite() && value > 0.0 {
            value as u64
        } else {
            0
        };
        if name == m.requests || name == total {
            seen = true;
            c.requests += count;
            let status = labels.iter().find(|(k, _)| *k == m.status_label);
            if status.is_some_and(|(_, v)| v.starts_with('5')) {
                c.errors += count;
            }
        } else if Some(&name) == bucket.as_ref()
            && let Some(le) = labels
                .iter()
                .find(|(k, _)| k == "le")
                .and_then(|(_, v)| parse_value(v))
        {
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some((_, n)) => *n += count,
                None => buckets.push((le, count)),
            }
        }
    }
    if !seen {
        return Err(format!("no `{}` series in the scrape", m.requests));
    }
    if let Some(l) = &m.latency
        && buckets.is_empty()
    {
        return Err(format!("no `{l}_bucket` series in the scrape"));
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    c.latency = buckets;
    Ok(c)
}

/// A scraper running until dropped.
#[derive(Debug)]
pub struct Running {
    pub status: watch::Receiver<Scraped>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Scrapes the instance of `ctx` every `m.interval`, from the moment
/// `ready` first passed.
pub fn start(m: AppMetrics, ctx: probe::Context, ready: watch::Receiver<ProbeStatus>) -> Running {
    let (tx, rx) = watch::channel(Scraped::default());
    let task = tokio::spawn(async move {
        let mut ready = ready;
        if ready.wait_for(|s| s.first_pass.is_some()).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(m.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let target = m.target();
        let timeout = m.interval.min(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let got = probe::fetch(&ctx, &target, &m.path, timeout, 4 << 20)
                .await
                .and_then(|(status, body)| match status {
                    200..=299 => parse(&body, &m),
                    s => Err(format!("GET {} answered {s}", m.path)),
                });
            tx.send_modify(|s| match got {
                Ok(c) => {
                    s.counters = Some(c);
                    s.error = None;
                }
                Err(e) => s.error = Some(e),
            });
        }
    });
    Running { status: rx, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(latency: bool) -> AppMetrics {
        toml::from_str::<AppMetrics>(&format!(
            "requests = \"http_requests\"\n{}",
            if latency {
                "latency = \"http_request_duration_seconds\"\n"
            } else {
                ""
            }
        ))
        .unwrap()
    }

    /// As Python's prometheus_client writes it.
    const SCRAPE: &str = r#"# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{code="200",path="/"} 80.0
http_requests_total{code="503",path="/"} 15.0
http_requests_total{code="500",path="/x"} 5.0
http_requests_total{code="404",path="/"} 3.0
http_requests_created{code="200",path="/"} 1.7e+09
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.005",path="/"} 50.0
http_request_duration_seconds_bucket{le="0.05",path="/"} 90.0
http_request_duration_seconds_bucket{le="+Inf",path="/"} 100.0
http_request_duration_seconds_bucket{le="0.005",path="/x"} 1.0
http_request_duration_seconds_bucket{le="0.05",path="/x"} 2.0
http_request_duration_seconds_bucket{le="+Inf",path="/x"} 3.0
http_request_duration_seconds_count{path="/"} 100.0
other_metric{label="a \"quoted\", value"} 7
"#;

    #[test]
    fn requests_errors_and_latency_buckets_are_summed_over_series() {
        let c = parse(SCRAPE, &metrics(true)).unwrap();
        assert_eq!(c.requests, 103);
        assert_eq!(c.errors, 20, "5xx only: a 404 is the client's");
        assert_eq!(
            c.latency,
            vec![(0.005, 51), (0.05, 92), (f64::INFINITY, 103)]
        );
    }

    #[test]
    fn a_scrape_without_the_named_series_says_which() {
        let e = parse("up 1\n", &metrics(false)).unwrap_err();
        assert!(e.contains("http_requests"), "{e}");
        let e = parse("http_requests_total 4\n", &metrics(true)).unwrap_err();
        assert!(e.contains("http_request_duration_seconds_bucket"), "{e}");
        assert_eq!(
            parse("http_requests_total 4\n", &metrics(false))
                .unwrap()
                .requests,
            4
        );
    }

    #[test]
    fn label_values_with_escapes_and_odd_lines_are_read_or_skipped() {
        assert_eq!(
            parse_line(r#"m{a="x\"y",b="1,2"} 3 1700000000"#),
            Some((
                "m".into(),
                vec![("a".into(), "x\"y".into()), ("b".into(), "1,2".into())],
                3.0
            ))
        );
        assert_eq!(parse_line("m 4"), Some(("m".into(), vec![], 4.0)));
        assert_eq!(parse_line("# TYPE m counter"), None);
        assert_eq!(parse_line("m{a=\"unterminated} 1"), None);
        assert_eq!(parse_line("m"), None);
    }
}
