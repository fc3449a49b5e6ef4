//! Fleet and record commands: the CA, join tokens, hosts, the audit
//! log, DORA stats and drift.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use cutover_common::labels;
use cutover_proto::v1 as pb;
use serde::Serialize;

use crate::client::ClientArgs;
use crate::output::{self, Format};
use crate::pki_setup;

use super::*;

pub(super) fn ca(cmd: CaCmd) -> Result<()> {
    match cmd {
        CaCmd::Init {
            config,
            cluster,
            output,
        } => {
            let cfg = config.load()?;
            let out = pki_setup::init(&cfg, &cluster)?;
            if output == Format::Json {
                print!(
                    "{}",
                    output::json(&serde_json::json!({
                        "pki_dir": out.pki_dir,
                        "ca_fingerprint": out.fingerprint,
                        "admin_identity": out.admin.bundle,
                        "admin_cli_config": out.admin.cli_config,
                    }))
                );
                return Ok(());
            }
            println!("created the cluster CA in {}", out.pki_dir.display());
            println!("CA fingerprint: {}", out.fingerprint);
            println!("admin operator: {}", out.admin.bundle.display());
            println!();
            println!("Use the CLI as admin with:");
            println!(
                "  export CUTOVER_CLI_CONFIG={}",
                out.admin.cli_config.display()
            );
            Ok(())
        }
        CaCmd::Fingerprint { config, output } => {
            let cfg = config.load()?;
            let fp = pki_setup::load_ca(&cfg)?.fingerprint();
            match output {
                Format::Json => print!(
                    "{}",
                    output::json(&serde_json::json!({"ca_fingerprint": fp}))
                ),
                Format::Table => println!("{fp}"),
            }
            Ok(())
        }
        CaCmd::IssueOperator {
            config,
            name,
            role,
            ttl,
            out,
            output,
        } => {
            let cfg = config.load()?;
            let ca = pki_setup::load_ca(&cfg)?;
            let store = pki_setup::open_store(&cfg)?;
            let ttl = ttl.unwrap_or(cfg.operator_cert_ttl);
            let issued =
                pki_setup::issue_operator(&cfg, &ca, &store, &name, role, ttl, out.as_deref())?;
            if output == Format::Json {
                print!(
                    "{}",
                    output::json(&serde_json::json!({
                        "name": issued.name,
                        "role": role.as_str(),
                        "not_after": humantime::format_rfc3339_millis(issued.not_after).to_string(),
                        "identity": issued.bundle,
                        "cli_config": issued.cli_config,
                    }))
                );
                return Ok(());
            }
            println!(
                "issued operator {} ({}) valid until {}",
                issued.name,
                role.as_str(),
                humantime::format_rfc3339_seconds(issued.not_after)
            );
            println!("  certificate and key: {}", issued.bundle.display());
            println!("  CLI config:          {}", issued.cli_config.display());
            Ok(())
        }
        CaCmd::RevokeOperator {
            config,
            name,
            serial,
            output,
        } => {
            let cfg = config.load()?;
            let store = pki_setup::open_store(&cfg)?;
            let line = pki_setup::revoke_operator(&store, name.as_deref(), serial.as_deref())?;
            match output {
                Format::Json => print!(
                    "{}",
                    output::json(
                        &serde_json::json!({"revoked": true, "name": name, "serial": serial, "message": line})
                    )
                ),
                Format::Table => println!("{line}"),
            }
            Ok(())
        }
    }
}

#[derive(Serialize)]
pub(super) struct TokenOut {
    token: String,
    token_id: String,
    expires_at: Option<String>,
    ca_fingerprint: String,
    coordinator: String,
}

pub(super) async fn token(client: &ClientArgs, cmd: TokenCmd) -> Result<()> {
    let TokenCmd::Create {
        ttl,
        uses,
        labels: l,
        output,
    } = cmd;
    let labels = labels::parse(&l).context("--labels")?;
    let resolved = client.resolve()?;
    let mut c = crate::client::connect(&resolved).await?;
    let r = c
        .create_token(pb::CreateTokenRequest {
            request_id: String::new(),
            ttl_ms: ttl.as_millis() as u64,
            uses,
            labels: labels.into_iter().collect(),
        })
        .await
        .map_err(status)?
        .into_inner();
    let out = TokenOut {
        token: r.token,
        token_id: r.token_id,
        expires_at: output::rfc3339(r.expires_at_ms),
        ca_fingerprint: r.ca_fingerprint,
        coordinator: resolved.url,
    };
    match output {
        Format::Json => print!("{}", output::json(&out)),
        Format::Table => {
            println!("{}", out.token);
            eprintln!(
                "token {} expires {} ({} use{}). Enroll a host with:\n  cutover-agent enroll --coordinator {} --token-file FILE --ca-fingerprint {}",
                out.token_id,
                out.expires_at.as_deref().unwrap_or("-"),
                uses,
                if uses == 1 { "" } else { "s" },
                out.coordinator,
                out.ca_fingerprint
            );
        }
    }
    Ok(())
}

#[derive(Serialize)]
pub(super) struct HostOut {
    host: String,
    labels: BTreeMap<String, String>,
    state: String,
    last_seen: Option<String>,
    agent_version: Option<String>,
    address: Option<String>,
    hostname: Option<String>,
    cpus: u32,
    memory_bytes: u64,
    os: Option<String>,
    kernel: Option<String>,
    arch: Option<String>,
    boot_id: Option<String>,
    certificate_expires: Option<String>,
    session: Option<String>,
    services: Vec<ServiceOut>,
    /// `hosts show` only: its newest commands, newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    recent_commands: Option<Vec<CommandOut>>,
}

/// A command sent to a host, and its result.
#[derive(Serialize)]
pub(super) struct CommandOut {
    command_id: String,
    kind: String,
    /// `null` for an operator's command.
    deployment: Option<String>,
    sent_by: String,
    sent_at: Option<String>,
    /// ok, failed, pending.
    outcome: String,
    message: Option<String>,
    finished_at: Option<String>,
}

#[derive(Serialize)]
pub(super) struct ServiceOut {
    service: String,
    active_release: Option<String>,
    previous_release: Option<String>,
    staged_releases: Vec<String>,
    drained: bool,
    /// serving, unhealthy, down, stopped; `null` before a first report.
    status: Option<String>,
    pid: Option<u32>,
    restarts: u32,
    /// Why it drifted from what Cutover deployed; empty: it did not.
    drift: Vec<String>,
}

/// The hosts matching `selector` (checked here first, for a local error).
pub(super) async fn list_hosts(
    client: &ClientArgs,
    selector: &str,
) -> Result<pb::ListHostsResponse> {
    labels::Selector::parse(selector).context("--selector")?;
    let mut c = client.connect().await?;
    // Every page.
    let mut all = pb::ListHostsResponse::default();
    loop {
        let page = c
            .list_hosts(pb::ListHostsRequest {
                selector: selector.into(),
                page_size: 1000,
                page_token: std::mem::take(&mut all.next_page_token),
                ..Default::default()
            })
            .await
            .map_err(status)?
            .into_inner();
        all.hosts.extend(page.hosts);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        all.next_page_token = page.next_page_token;
    }
}

/// A host as `-o json` shows it.
pub(super) fn host_out(h: pb::HostInfo) -> HostOut {
    let fmt_ts = |ms: i64| output::rfc3339(ms);
    let f = h.facts.unwrap_or_default();
    HostOut {
        host: h.host_id,
        labels: h.labels.into_iter().collect(),
        state: h.state,
        last_seen: output::rfc3339(h.last_seen_ms),
        agent_version: super::json::some(&h.agent_version),
        address: super::json::some(&h.address),
        hostname: super::json::some(&f.hostname),
        cpus: f.cpus,
        memory_bytes: f.memory_bytes,
        os: super::json::some(&f.os),
        kernel: super::json::some(&f.kernel),
        arch: super::json::some(&f.arch),
        boot_id: super::json::some(&h.boot_id),
        certificate_expires: fmt_ts(h.certificate_not_after_ms),
        session: (!h.session_id.is_empty()).then_some(h.session_id),
        recent_commands: (!h.recent_commands.is_empty()).then(|| {
            h.recent_commands
                .into_iter()
                .map(|c| CommandOut {
                    command_id: c.command_id,
                    kind: c.kind,
                    deployment: super::json::some(&c.deployment_id),
                    sent_by: c.sent_by,
                    sent_at: super::json::time(&c.sent_at),
                    outcome: c.outcome,
                    message: super::json::some(&c.message),
                    finished_at: super::json::time(&c.finished_at),
                })
                .collect()
        }),
        services: h
            .services
            .into_iter()
            .map(|s| {
                let health = s.health.unwrap_or_default();
                ServiceOut {
                    service: s.service,
                    active_release: super::json::some(&s.active_release),
                    previous_release: super::json::some(&s.previous_release),
                    staged_releases: s.staged_releases,
                    drained: s.drained,
                    status: if s.stopped {
                        Some("stopped".into())
                    } else {
                        super::json::some(&health.status)
                    },
                    pid: (health.pid != 0).then_some(health.pid),
                    restarts: health.restarts,
                    drift: s.drift,
                }
            })
            .collect(),
    }
}

pub(super) async fn hosts(client: &ClientArgs, selector: &str, output: Format) -> Result<()> {
    let r = list_hosts(client, selector).await?;
    match output {
        Format::Json => {
            let hosts: Vec<HostOut> = r.hosts.into_iter().map(host_out).collect();
            print!("{}", output::json(&hosts));
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = r
                .hosts
                .into_iter()
                .map(|h| {
                    let labels: BTreeMap<String, String> = h.labels.into_iter().collect();
                    let drifted: Vec<String> = h
                        .services
                        .iter()
                        .filter(|s| !s.drift.is_empty())
                        .map(|s| s.service.clone())
                        .collect();
                    // An operator's drain shows where people look first.
                    let drained: Vec<String> = h
                        .services
                        .iter()
                        .filter(|s| s.drained)
                        .map(|s| {
                            if s.stopped {
                                format!("{} stopped", s.service)
                            } else {
                                s.service.clone()
                            }
                        })
                        .collect();
                    let state = if drained.is_empty() {
                        h.state
                    } else {
                        format!("{}, drained: {}", h.state, drained.join(", "))
                    };
                    vec![
                        h.host_id,
                        labels::format(&labels),
                        state,
                        output::ago(h.last_seen_ms),
                        h.agent_version,
                        h.address,
                        if drifted.is_empty() {
                            "-".into()
                        } else {
                            format!("yes: {} (cutover drift)", drifted.join(", "))
                        },
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(
                    &[
                        "HOST",
                        "LABELS",
                        "STATE",
                        "LAST SEEN",
                        "AGENT",
                        "ADDRESS",
                        "DRIFT"
                    ],
                    &rows
                )
            );
        }
    }
    Ok(())
}

#[derive(Serialize)]
pub(super) struct AuditOut {
    id: i64,
    at: String,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    detail: String,
}

pub(super) async fn audit(client: &ClientArgs, limit: u32, output: Format) -> Result<()> {
    let mut c = client.connect().await?;
    // Page by page, up to `limit`.
    let mut entries = Vec::new();
    let mut page_token = String::new();
    while (entries.len() as u32) < limit {
        let page = c
            .list_audit(pb::ListAuditRequest {
                page_size: (limit - entries.len() as u32).min(1000),
                page_token,
                ..Default::default()
            })
            .await
            .map_err(status)?
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let rows: Vec<AuditOut> = entries
        .into_iter()
        .map(|e| AuditOut {
            id: e.id,
            at: output::rfc3339(e.at_ms).unwrap_or_default(),
            actor: e.actor,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            detail: e.detail,
        })
        .collect();
    match output {
        Format::Json => print!("{}", output::json(&rows)),
        Format::Table => {
            let t: Vec<Vec<String>> = rows
                .into_iter()
                .map(|a| vec![a.at, a.actor, a.action, a.target, a.outcome, a.detail])
                .collect();
            print!(
                "{}",
                output::table(
                    &["AT", "ACTOR", "ACTION", "TARGET", "OUTCOME", "DETAIL"],
                    &t
                )
            );
        }
    }
    if limit == 0 {
        bail!("--limit must be at least 1");
    }
    Ok(())
}

/// "2h 5m" from milliseconds, for people.
pub(super) fn human_ms(ms: i64) -> String {
    let secs = (ms.max(0) as u64).div_ceil(1000);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

pub(super) async fn stats(
    client: &ClientArgs,
    service: Option<String>,
    environment: Option<String>,
    since: std::time::Duration,
    output: Format,
) -> Result<()> {
    let mut c = client.connect().await?;
    let since_ms = cutover_common::time::now_ms() - since.as_millis() as i64;
    let s = c
        .get_stats(pb::StatsRequest {
            service: service.clone().unwrap_or_default(),
            environment: environment.clone().unwrap_or_default(),
            since_ms,
        })
        .await
        .map_err(status)?
        .into_inner();
    let summary = |d: &Option<pb::DurationSummary>| {
        d.as_ref()
            .map(|d| serde_json::json!({"n": d.n, "median_ms": d.median_ms, "p90_ms": d.p90_ms}))
    };
    match output {
        Format::Json => {
            let v = serde_json::json!({
                "service": service, "environment": environment,
                "since": output::rfc3339(s.since_ms), "until": output::rfc3339(s.until_ms),
                "changes": s.changes, "succeeded": s.succeeded, "failed": s.failed,
                "deployment_frequency_per_day": s.deployments_per_day,
                "lead_time": summary(&s.lead_time),
                "change_failure_rate": s.change_failure_rate,
                "time_to_restore": summary(&s.time_to_restore),
                "unrestored": s.unrestored,
                "failed_ids": s.failed_ids,
            });
            print!("{}", output::json(&v));
        }
        Format::Table => {
            let scope = format!(
                "{} in {}, last {}",
                service.as_deref().unwrap_or("every service"),
                environment.as_deref().unwrap_or("every environment"),
                humantime::format_duration(since)
            );
            let dist = |d: &Option<pb::DurationSummary>, what: &str| match d {
                Some(d) => format!(
                    "median {}, p90 {} ({} {what})",
                    human_ms(d.median_ms),
                    human_ms(d.p90_ms),
                    d.n
                ),
                None => "-".into(),
            };
            let rows = vec![
                vec![
                    "deployment frequency".to_string(),
                    format!(
                        "{:.2} per day ({} succeeded of {} changes)",
                        s.deployments_per_day, s.succeeded, s.changes
                    ),
                ],
                vec![
                    "lead time for changes".into(),
                    dist(&s.lead_time, "with a commit time"),
                ],
                vec![
                    "change failure rate".into(),
                    match s.change_failure_rate {
                        Some(r) => format!(
                            "{:.1}% ({} failed: {})",
                            r * 100.0,
                            s.failed,
                            s.failed_ids.join(", ")
                        ),
                        None => "-".into(),
                    },
                ],
                vec![
                    "time to restore".into(),
                    if s.unrestored > 0 {
                        format!(
                            "{}; {} not restored yet",
                            dist(&s.time_to_restore, "restored"),
                            s.unrestored
                        )
                    } else {
                        dist(&s.time_to_restore, "restored")
                    },
                ],
            ];
            println!("{scope}");
            print!("{}", output::table(&["MEASURE", "VALUE"], &rows));
        }
    }
    Ok(())
}

pub(super) async fn drift(client: &ClientArgs, selector: &str, output: Format) -> Result<()> {
    let r = list_hosts(client, selector).await?;
    let drifted: Vec<(String, String, String, Vec<String>)> = r
        .hosts
        .into_iter()
        .flat_map(|h| {
            let host = h.host_id.clone();
            h.services
                .into_iter()
                .filter(|s| !s.drift.is_empty())
                .map(move |s| (host.clone(), s.service, s.active_release, s.drift))
        })
        .collect();
    match output {
        Format::Json => {
            let v: Vec<serde_json::Value> = drifted
                .iter()
                .map(|(h, s, r, d)| serde_json::json!({"host": h, "service": s, "runs": r, "drift": d}))
                .collect();
            print!("{}", output::json(&v));
        }
        Format::Table if drifted.is_empty() => {
            println!("no drift: every host runs what Cutover deployed, untouched");
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = drifted
                .into_iter()
                .map(|(h, s, r, d)| vec![h, s, r, d.join("; ")])
                .collect();
            print!(
                "{}",
                output::table(&["HOST", "SERVICE", "RUNS", "WHY"], &rows)
            );
        }
    }
    Ok(())
}

/// An RFC 3339 time with any UTC offset (`Z`, `+02:00`, `-0500`), as Unix
/// ms.
pub(super) fn parse_commit_time(t: &str) -> Result<i64> {
    let t = t.trim();
    let (base, offset_s) = match t.char_indices().rev().find(|(_, c)| *c == '+' || *c == '-') {
        // An offset follows the time (after the `T...` part), not the date.
        Some((i, c)) if t[..i].contains('T') => {
            let off = t[i + 1..].replace(':', "");
            anyhow::ensure!(off.len() == 4, "bad UTC offset in `{t}`");
            let (h, m): (i64, i64) = (off[..2].parse()?, off[2..].parse()?);
            let sign = if c == '-' { -1 } else { 1 };
            (&t[..i], sign * (h * 3600 + m * 60))
        }
        _ => (t.trim_end_matches('Z'), 0),
    };
    let utc = humantime::parse_rfc3339_weak(&format!("{base}Z"))?;
    Ok(cutover_common::time::to_unix_ms(utc) - offset_s * 1000)
}

/// `cutover hosts show HOST`: one host in detail.
pub(super) async fn host_detail(client: &ClientArgs, host: &str, output: Format) -> Result<()> {
    let mut c = client.connect().await?;
    let r = c
        .list_hosts(pb::ListHostsRequest {
            host_id: host.into(),
            recent_commands: 10,
            ..Default::default()
        })
        .await
        .map_err(status)?
        .into_inner();
    // A coordinator of the previous release ignores host_id: the host is
    // found among all.
    let Some(h) = r.hosts.into_iter().find(|h| h.host_id == host) else {
        anyhow::bail!("no host `{host}` in the fleet (see `cutover hosts`)");
    };
    let last_seen = h.last_seen_ms;
    let out = host_out(h);
    if output == Format::Json {
        print!("{}", output::json(&out));
        return Ok(());
    }
    println!(
        "host {} ({}, last seen {}{})",
        out.host,
        out.state,
        output::ago(last_seen),
        if out.session.is_some() {
            ", connected"
        } else {
            ", not connected"
        }
    );
    let labels: Vec<String> = out.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("labels: {}", labels.join(","));
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!(
        "agent {} at {}, certificate until {}",
        or_dash(&out.agent_version),
        or_dash(&out.address),
        out.certificate_expires.as_deref().unwrap_or("-")
    );
    println!(
        "machine: {}, {} CPU(s), {} MiB, {}, kernel {}, {}",
        or_dash(&out.hostname),
        out.cpus,
        out.memory_bytes >> 20,
        or_dash(&out.os),
        or_dash(&out.kernel),
        or_dash(&out.arch)
    );
    if out.services.is_empty() {
        println!("no service deployed here yet");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = out
        .services
        .iter()
        .map(|s| {
            vec![
                s.service.clone(),
                or_dash(&s.active_release),
                or_dash(&s.previous_release),
                or_dash(&s.status),
                s.pid.map_or("-".into(), |p| p.to_string()),
                s.restarts.to_string(),
                if s.drained { "yes".into() } else { "-".into() },
                if s.drift.is_empty() {
                    "-".into()
                } else {
                    s.drift.join("; ")
                },
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "SERVICE", "RELEASE", "PREVIOUS", "STATUS", "PID", "RESTARTS", "DRAINED", "DRIFT"
            ],
            &rows
        )
    );
    for s in &out.services {
        println!(
            "{}: {} release(s) on disk: {}",
            s.service,
            s.staged_releases.len(),
            s.staged_releases.join(", ")
        );
    }
    if let Some(cmds) = &out.recent_commands {
        println!("latest commands:");
        let rows: Vec<Vec<String>> = cmds
            .iter()
            .map(|c| {
                vec![
                    c.sent_at.clone().unwrap_or_default(),
                    c.kind.clone(),
                    c.deployment.clone().unwrap_or_else(|| c.sent_by.clone()),
                    c.outcome.clone(),
                    c.message.clone().unwrap_or_default(),
                ]
            })
            .collect();
        print!(
            "{}",
            output::table(&["SENT", "KIND", "BY", "RESULT", "MESSAGE"], &rows)
        );
    }
    Ok(())
}

/// What `cutover service NAME -o json` prints.
#[derive(Serialize)]
struct ServiceView {
    service: String,
    /// Per environment (`null`: deployments that name none), the newest
    /// deployment that succeeded there.
    live: Vec<LiveIn>,
    /// The deployment running now, if any.
    running: Option<super::json::Deployment>,
    hosts: Vec<ServiceHost>,
    /// The newest deployments, newest first.
    recent: Vec<super::json::Deployment>,
}

#[derive(Serialize)]
struct LiveIn {
    environment: Option<String>,
    version: String,
    deployment: String,
    since: Option<String>,
}

#[derive(Serialize)]
struct ServiceHost {
    host: String,
    environment: Option<String>,
    release: String,
    /// The version of that release, when a deployment of this history
    /// made it.
    version: Option<String>,
    status: String,
    drained: bool,
    drift: Vec<String>,
}

/// `cutover service NAME`: where a service runs, what is live in each
/// environment, what is running now and what happened lately.
pub(super) async fn service_view(client: &ClientArgs, service: &str, output: Format) -> Result<()> {
    let hosts = list_hosts(client, "").await?;
    let mut c = client.connect().await?;
    let list = c
        .list_deployments(pb::ListDeploymentsRequest {
            service: service.into(),
            page_size: 200,
            ..Default::default()
        })
        .await
        .map_err(status)?
        .into_inner()
        .deployments;
    let status_of = super::deploy::status_of;
    let mut versions: BTreeMap<String, String> = BTreeMap::new();
    for d in &list {
        if let Some(s) = status_of(d) {
            versions
                .entry(s.release_id.clone())
                .or_insert_with(|| d.version.clone());
        }
    }
    let mut live: Vec<LiveIn> = Vec::new();
    for d in list.iter().filter(|d| d.phase == "succeeded") {
        let env = (!d.environment.is_empty()).then(|| d.environment.clone());
        if live.iter().any(|l| l.environment == env) {
            continue;
        }
        live.push(LiveIn {
            environment: env,
            version: d.version.clone(),
            deployment: d.id.clone(),
            since: output::rfc3339(d.finished_at_ms),
        });
    }
    let running = list
        .iter()
        .find(|d| d.finished_at_ms == 0)
        .map(|d| super::json::Deployment::of(d, status_of(d).as_ref(), false));
    let hosts: Vec<ServiceHost> = hosts
        .hosts
        .into_iter()
        .filter_map(|h| {
            let env = h.labels.get("environment").cloned();
            let s = h.services.into_iter().find(|s| s.service == service)?;
            let health = s.health.clone().unwrap_or_default();
            Some(ServiceHost {
                host: h.host_id,
                environment: env,
                version: versions.get(&s.active_release).cloned(),
                release: s.active_release,
                status: if s.stopped {
                    "stopped".into()
                } else {
                    health.status
                },
                drained: s.drained,
                drift: s.drift,
            })
        })
        .collect();
    if hosts.is_empty() && list.is_empty() {
        anyhow::bail!("no service `{service}`: never deployed, and on no host");
    }
    let recent = list
        .iter()
        .take(5)
        .map(|d| super::json::Deployment::of(d, status_of(d).as_ref(), false))
        .collect();
    let view = ServiceView {
        service: service.into(),
        live,
        running,
        hosts,
        recent,
    };
    if output == Format::Json {
        print!("{}", output::json(&view));
        return Ok(());
    }
    println!("service {}", view.service);
    let rows: Vec<Vec<String>> = view
        .live
        .iter()
        .map(|l| {
            vec![
                l.environment.clone().unwrap_or_else(|| "-".into()),
                l.version.clone(),
                l.deployment.clone(),
                l.since.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["ENVIRONMENT", "LIVE VERSION", "DEPLOYMENT", "SINCE"],
            &rows
        )
    );
    match &view.running {
        Some(d) => println!(
            "running now: {} (version {}, {}{})",
            d.id,
            d.version,
            d.phase,
            d.summary
                .as_ref()
                .map(|s| format!(", {s}"))
                .unwrap_or_default()
        ),
        None => println!("no deployment running"),
    }
    let rows: Vec<Vec<String>> = view
        .hosts
        .iter()
        .map(|h| {
            vec![
                h.host.clone(),
                h.environment.clone().unwrap_or_else(|| "-".into()),
                h.version.clone().unwrap_or_else(|| "?".into()),
                h.status.clone(),
                if h.drained { "yes".into() } else { "-".into() },
                if h.drift.is_empty() {
                    "-".into()
                } else {
                    h.drift.join("; ")
                },
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "HOST",
                "ENVIRONMENT",
                "VERSION",
                "STATUS",
                "DRAINED",
                "DRIFT"
            ],
            &rows
        )
    );
    let rows: Vec<Vec<String>> = view
        .recent
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.version.clone(),
                d.environment.clone().unwrap_or_else(|| "-".into()),
                d.phase.clone(),
                d.created_at.clone().unwrap_or_default(),
            ]
        })
        .collect();
    println!("recent deployments:");
    print!(
        "{}",
        output::table(&["ID", "VERSION", "ENVIRONMENT", "PHASE", "STARTED"], &rows)
    );
    Ok(())
}

/// One service across the fleet, as `cutover services` shows it.
#[derive(Debug, Default, Serialize)]
pub(super) struct ServiceSummary {
    service: String,
    /// Hosts that run it (or ran it: it has a release there).
    hosts: usize,
    /// Active release -> how many hosts run it.
    releases: BTreeMap<String, usize>,
    drained: Vec<String>,
    stopped: Vec<String>,
    drifted: Vec<String>,
}

/// Every service's summary from the hosts' reports, by name.
pub(super) fn summarize(hosts: &[pb::HostInfo]) -> Vec<ServiceSummary> {
    let mut by: BTreeMap<String, ServiceSummary> = BTreeMap::new();
    for h in hosts {
        for s in &h.services {
            let e = by
                .entry(s.service.clone())
                .or_insert_with(|| ServiceSummary {
                    service: s.service.clone(),
                    ..Default::default()
                });
            e.hosts += 1;
            let release = if s.active_release.is_empty() {
                "(none)".to_string()
            } else {
                s.active_release.clone()
            };
            *e.releases.entry(release).or_default() += 1;
            if s.drained {
                e.drained.push(h.host_id.clone());
            }
            if s.stopped {
                e.stopped.push(h.host_id.clone());
            }
            if !s.drift.is_empty() {
                e.drifted.push(h.host_id.clone());
            }
        }
    }
    by.into_values().collect()
}

pub(super) async fn services(client: &ClientArgs, output: Format) -> Result<()> {
    let all = list_hosts(client, "").await?;
    let summary = summarize(&all.hosts);
    match output {
        Format::Json => print!("{}", output::json(&summary)),
        Format::Table => {
            if summary.is_empty() {
                println!("no service runs on any host yet");
                return Ok(());
            }
            println!(
                "{:<20} {:>5}  {:<40} {:<8} {:<8} DRIFTED",
                "SERVICE", "HOSTS", "RELEASES (HOSTS)", "DRAINED", "STOPPED"
            );
            let names = |v: &Vec<String>| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.join(",")
                }
            };
            for s in &summary {
                let releases: Vec<String> = s
                    .releases
                    .iter()
                    .map(|(r, n)| format!("{r} ({n})"))
                    .collect();
                println!(
                    "{:<20} {:>5}  {:<40} {:<8} {:<8} {}",
                    s.service,
                    s.hosts,
                    releases.join(", "),
                    names(&s.drained),
                    names(&s.stopped),
                    names(&s.drifted)
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod services_tests {
    use super::*;

    #[test]
    fn services_are_summed_up_across_hosts_with_their_releases_and_troubles() {
        let svc = |name: &str, release: &str, drained: bool, drift: bool| pb::HostService {
            service: name.into(),
            active_release: release.into(),
            drained,
            drift: if drift {
                vec!["bin/web changed".into()]
            } else {
                vec![]
            },
            ..Default::default()
        };
        let host = |id: &str, services: Vec<pb::HostService>| pb::HostInfo {
            host_id: id.into(),
            services,
            ..Default::default()
        };
        let s = summarize(&[
            host(
                "web-1",
                vec![
                    svc("web", "2-aa", false, false),
                    svc("db", "", false, false),
                ],
            ),
            host("web-2", vec![svc("web", "2-aa", true, false)]),
            host("web-3", vec![svc("web", "1-bb", false, true)]),
        ]);
        assert_eq!(s.len(), 2);
        let web = s.iter().find(|x| x.service == "web").unwrap();
        assert_eq!(web.hosts, 3);
        assert_eq!(web.releases.get("2-aa"), Some(&2));
        assert_eq!(web.releases.get("1-bb"), Some(&1));
        assert_eq!(web.drained, ["web-2"]);
        assert_eq!(web.drifted, ["web-3"]);
        let db = s.iter().find(|x| x.service == "db").unwrap();
        assert_eq!(db.releases.get("(none)"), Some(&1));
    }
}
