//! The readiness endpoint load balancers check: `GET /ready/<service>`
//! answers 200 while the service serves and is not drained, 503 otherwise
//! (with the reason); `GET /ready` lists every service as JSON.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::runtime::Runtime;

fn answer(rt: &Runtime, path: &str) -> (StatusCode, String) {
    let health = rt.health_now();
    match path.strip_prefix("/ready") {
        Some("") | Some("/") => {
            let all: Vec<serde_json::Value> = health
                .iter()
                .map(|h| serde_json::json!({"service": h.service, "release": h.release, "status": h.status, "ready": h.status == "serving"}))
                .collect();
            (
                StatusCode::OK,
                serde_json::to_string_pretty(&all).unwrap_or_default() + "\n",
            )
        }
        Some(rest) => {
            let name = rest.trim_start_matches('/');
            match health.iter().find(|h| h.service == name) {
                Some(h) if h.status == "serving" => {
                    (StatusCode::OK, format!("serving {}\n", h.release))
                }
                Some(h) => (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", h.status)),
                None => (
                    StatusCode::NOT_FOUND,
                    format!("no service `{name}` on this host\n"),
                ),
            }
        }
        None => (StatusCode::NOT_FOUND, "try /ready/<service>\n".into()),
    }
}

/// Serves the endpoint on `addr` until `shutdown`, within the bounds of
/// an endpoint anyone on the network can reach
/// ([`cutover_common::net::HttpLimits`]): balancers' checks are a few
/// connections, and a flood of idle ones cannot take the descriptors the
/// agent needs to journal commands.
pub async fn serve(
    addr: SocketAddr,
    rt: Arc<Runtime>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "readiness endpoint listening");
    cutover_common::net::serve_http(
        listener,
        cutover_common::net::HttpLimits::default(),
        shutdown,
        "readiness",
        move |req: Request<Incoming>| {
            let (status, body) = answer(&rt, req.uri().path());
            async move {
                Response::builder()
                    .status(status)
                    .header("content-type", "text/plain")
                    .body(Full::new(Bytes::from(body)))
                    .expect("valid response")
            }
        },
    )
    .await;
    Ok(())
}
