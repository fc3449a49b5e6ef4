//! Releases of real apps for the scenarios and benchmarks that run them
//! (gunicorn from Debian's packages, with Python's `prometheus_client`).

use crate::fleet::TestFleet;

/// A gunicorn app exporting its own request counter and latency
/// histogram with Python's `prometheus_client`, answering 500 to one
/// request in `fail_every` (never with 0); `/healthz` is always fine.
pub fn metered_app(version: &str, fail_every: u32) -> String {
    format!(
        r#"import itertools

from prometheus_client import Counter, Histogram, make_wsgi_app

VERSION = "{version}"
FAIL_EVERY = {fail_every}
REQUESTS = Counter("http_requests", "Requests answered", ["code"])
LATENCY = Histogram("http_request_duration_seconds", "Request latency")
metrics = make_wsgi_app()
seen = itertools.count()


def app(environ, start_response):
    path = environ.get("PATH_INFO")
    if path == "/metrics":
        return metrics(environ, start_response)
    if path == "/healthz":
        status, body = "200 OK", b"ok\n"
    else:
        with LATENCY.time():
            if FAIL_EVERY and next(seen) % FAIL_EVERY == 0:
                status, body = "500 Internal Server Error", b"oops\n"
            else:
                status, body = "200 OK", ("hello from %s\n" % VERSION).encode()
        REQUESTS.labels(code=status[:3]).inc()
    start_response(status, [
        ("Content-Type", "text/plain"),
        ("Content-Length", str(len(body))),
        ("x-version", VERSION),
    ])
    return [body]
"#
    )
}

/// A spec for [`metered_app`] whose request metrics the agents scrape
/// (`[metrics]`).
pub fn metered_spec(f: &TestFleet, version: &str, strategy: &str) -> std::path::PathBuf {
    gunicorn_spec(f, version, strategy, METRICS)
}

/// A spec for [`metered_app`] under gunicorn (one worker, so that its
/// counters are one process's), with `extra` TOML tables.
pub fn gunicorn_spec(
    f: &TestFleet,
    version: &str,
    strategy: &str,
    extra: &str,
) -> std::path::PathBuf {
    gunicorn_spec_with(f, version, 1, strategy, extra)
}

/// A spec for a gunicorn app (`app:app`) with `workers` workers, shaped
/// like the reference example: an HTTP readiness probe on `/healthz` of
/// the service's own listener; `extra` TOML tables after it.
pub fn gunicorn_spec_with(
    f: &TestFleet,
    version: &str,
    workers: u32,
    strategy: &str,
    extra: &str,
) -> std::path::PathBuf {
    f.spec_text(
        version,
        &format!(
            r#"service = "web"
[run]
command = ["gunicorn", "--workers", "{workers}", "--graceful-timeout", "5", "app:app"]
[[listen]]
name = "http"
address = "0.0.0.0:{port}"
[swap]
min_ready = "500ms"
grace = "10s"
ready_timeout = "12s"
[probes.readiness]
http = {{ listener = "http", path = "/healthz" }}
interval = "200ms"
failure_threshold = 2
[strategy]
{strategy}
healthy_deadline = "90s"
[targets]
selector = "role=web"
{extra}
"#,
            port = f.port
        ),
    )
}

/// The agents scrape [`metered_app`]'s own metrics.
pub const METRICS: &str = "[metrics]\nlistener = \"http\"\nrequests = \"http_requests_total\"\nlatency = \"http_request_duration_seconds\"\ninterval = \"500ms\"\n";

/// One canary host judged on a 5 s bake, then everyone.
pub const CANARY: &str = "kind = \"canary\"\nsteps = [ { hosts = 1, pause = \"5s\", analysis = true }, { hosts = \"100%\" } ]";

/// The id in `cutover deploy`'s first line.
pub fn deployment_id(out: &str) -> String {
    out.split_whitespace()
        .skip_while(|w| *w != "deployment")
        .nth(1)
        .expect("a deployment id in the output")
        .to_string()
}
