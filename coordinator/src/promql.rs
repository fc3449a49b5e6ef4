//! Canary analysis from an existing Prometheus (`[analysis.prometheus]`):
//! each query is rendered twice, for the canary hosts and for the baseline
//! hosts (`{{hosts}}`, `{{release}}`, `{{window}}`), sent to
//! `/api/v1/query`, and the two numbers compared: the canaries fail when
//! theirs is higher than the baseline's by more than `max_increase`. A
//! query that fails or returns no number is `inconclusive`, never a pass.

use std::time::Duration;

use cutover_common::deploy::{PromQuery, PrometheusSource};

use crate::analysis::{MetricResult, Verdict};

/// One group of hosts a query is rendered for.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    pub hosts: &'a [String],
    pub releases: Vec<String>,
}

/// A regex matching exactly `items` (pure), fit to stand inside a PromQL
/// double-quoted string: a special character goes in a class (`web[.]1`),
/// since PromQL itself refuses `\.` there; a backslash, caret or bracket
/// is escaped for the regex with a backslash escaped for the string.
fn alternation(items: &[String]) -> String {
    let escaped: Vec<String> = items
        .iter()
        .map(|h| {
            h.chars()
                .map(|c| match c {
                    '.' | '+' | '*' | '?' | '(' | ')' | '|' | '{' | '}' | '$' => format!("[{c}]"),
                    '\\' | '^' | '[' | ']' => format!("\\\\{c}"),
                    c => c.to_string(),
                })
                .collect()
        })
        .collect();
    escaped.join("|")
}

/// The query for one group (pure).
pub fn render(q: &PromQuery, g: &Group<'_>, window: Duration) -> String {
    q.query
        .replace("{{hosts}}", &alternation(g.hosts))
        .replace("{{release}}", &alternation(&g.releases))
        .replace("{{window}}", &format!("{}s", window.as_secs().max(1)))
}

/// The one number of a `/api/v1/query` answer (pure): `None` when the
/// result is empty or not a number.
pub fn value_of(body: &serde_json::Value) -> Result<Option<f64>, String> {
    if body["status"] != "success" {
        return Err(format!(
            "Prometheus said {}: {}",
            body["errorType"].as_str().unwrap_or("error"),
            body["error"].as_str().unwrap_or("no reason")
        ));
    }
    let data = &body["data"];
    let value = match data["resultType"].as_str() {
        Some("vector") => {
            let r = data["result"].as_array().cloned().unwrap_or_default();
            if r.len() > 1 {
                return Err(format!(
                    "expected one number, got {} series (aggregate with sum())",
                    r.len()
                ));
            }
            r.first().map(|s| s["value"][1].clone())
        }
        Some("scalar") => Some(data["result"][1].clone()),
        other => return Err(format!("expected a vector or scalar, got {other:?}")),
    };
    Ok(value
        .and_then(|v| v.as_str().and_then(|s| s.parse::<f64>().ok()))
        .filter(|v| v.is_finite()))
}

async fn query(
    client: &reqwest::Client,
    src: &PrometheusSource,
    promql: &str,
) -> Result<Option<f64>, String> {
    let url = reqwest::Url::parse_with_params(
        &format!("{}/api/v1/query", src.url.trim_end_matches('/')),
        &[("query", promql)],
    )
    .map_err(|e| format!("bad URL: {e}"))?;
    let r = client
        .get(url)
        .timeout(src.timeout)
        .send()
        .await
        .map_err(|e| format!("querying {}: {e}", src.url))?;
    let bytes = r
        .bytes()
        .await
        .map_err(|e| format!("reading the answer of {}: {e}", src.url))?;
    let body: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the answer of {} is not JSON: {e}", src.url))?;
    value_of(&body)
}

/// Judges one query's two numbers (pure).
pub fn judge(
    q: &PromQuery,
    canary: Result<Option<f64>, String>,
    baseline: Result<Option<f64>, String>,
) -> MetricResult {
    let mut m = MetricResult {
        metric: format!("prometheus:{}", q.name),
        canary: f64::NAN,
        baseline: f64::NAN,
        canary_n: 0,
        baseline_n: 0,
        p_value: None,
        verdict: Verdict::Inconclusive,
        why: String::new(),
    };
    match (canary, baseline) {
        (Err(e), _) | (_, Err(e)) => m.why = e,
        (Ok(None), _) => m.why = "no data for the canaries".into(),
        (_, Ok(None)) => m.why = "no data for the baseline".into(),
        (Ok(Some(c)), Ok(Some(b))) => {
            (m.canary, m.baseline, m.canary_n, m.baseline_n) = (c, b, 1, 1);
            if c - b > q.max_increase {
                m.verdict = Verdict::Fail;
                m.why = format!(
                    "canary {c:.4} vs baseline {b:.4}: more than {} higher",
                    q.max_increase
                );
            } else {
                m.verdict = Verdict::Pass;
                m.why = format!("at most {} higher than the baseline", q.max_increase);
            }
        }
    }
    m
}

/// Runs every query of `src` for both groups.
pub async fn analyse(
    src: &PrometheusSource,
    canary: &Group<'_>,
    baseline: &Group<'_>,
    window: Duration,
) -> Vec<MetricResult> {
    let client = cutover_common::http::HttpClient::build(|| {
        reqwest::Client::builder().connect_timeout(src.timeout)
    })
    .map_err(|e| format!("an HTTP client for {}: {e}", src.url))
    .and_then(|c| match c.refusal(&src.url) {
        Some(why) => Err(format!("querying {}: {why}", src.url)),
        None => Ok(c.client),
    });
    let mut out = Vec::new();
    for q in &src.queries {
        let (c, b) = match &client {
            Ok(client) => (
                query(client, src, &render(q, canary, window)).await,
                query(client, src, &render(q, baseline, window)).await,
            ),
            Err(e) => (Err(e.clone()), Err(e.clone())),
        };
        out.push(judge(q, c, b));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(max_increase: f64) -> PromQuery {
        PromQuery {
            name: "errors".into(),
            query: r#"sum(rate(x{host=~"{{hosts}}",release=~"{{release}}"}[{{window}}]))"#.into(),
            max_increase,
        }
    }

    #[test]
    fn a_query_is_rendered_for_a_group_with_its_hosts_escaped() {
        let hosts = vec!["web-1".to_string(), "web.2".to_string()];
        let g = Group {
            hosts: &hosts,
            releases: vec!["2-ab12".into()],
        };
        assert_eq!(
            render(&q(0.0), &g, Duration::from_millis(8_400)),
            r#"sum(rate(x{host=~"web-1|web[.]2",release=~"2-ab12"}[8s]))"#
        );
    }

    #[test]
    fn answers_are_read_as_one_number_or_none() {
        let v = |j: &str| value_of(&serde_json::from_str(j).unwrap());
        assert_eq!(
            v(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.2"]}]}}"#
            ),
            Ok(Some(0.2))
        );
        assert_eq!(
            v(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#),
            Ok(None)
        );
        assert_eq!(
            v(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#),
            Ok(None),
            "0/0 is no data"
        );
        assert!(
            v(r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#)
                .unwrap_err()
                .contains("parse error")
        );
        assert!(v(r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}"#)
            .unwrap_err()
            .contains("sum()"));
    }

    #[test]
    fn the_canary_fails_only_above_the_allowed_increase_and_no_data_is_inconclusive() {
        assert_eq!(
            judge(&q(0.05), Ok(Some(0.2)), Ok(Some(0.0))).verdict,
            Verdict::Fail
        );
        assert_eq!(
            judge(&q(0.05), Ok(Some(0.04)), Ok(Some(0.0))).verdict,
            Verdict::Pass
        );
        let m = judge(&q(0.05), Ok(None), Ok(Some(0.0)));
        assert_eq!(m.verdict, Verdict::Inconclusive);
        assert!(m.why.contains("no data"), "{}", m.why);
        let m = judge(&q(0.05), Ok(Some(0.3)), Err("querying: refused".into()));
        assert_eq!(m.verdict, Verdict::Inconclusive);
    }
}
