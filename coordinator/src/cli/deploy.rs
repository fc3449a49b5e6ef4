//! Deployment commands: plan, deploy (and follow it live), status,
//! history, promote/pause/resume/abort/rollback, drain.

use anyhow::{Context, Result, bail};
use cutover_proto::v1 as pb;

use crate::client::ClientArgs;
use crate::output::{self, Format};

use super::*;

/// How a followed deployment ended, as a process exit code.
#[derive(Debug)]
pub struct DeployOutcome {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for DeployOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeployOutcome {}

pub(super) fn spec_request(file: &std::path::Path) -> Result<pb::SpecRequest> {
    // Check locally first: the same errors, without a round trip.
    cutover_common::deploy::DeploySpec::load(file)?;
    Ok(pb::SpecRequest {
        spec_toml: std::fs::read_to_string(file)
            .with_context(|| format!("reading {}", file.display()))?,
        file_name: file.display().to_string(),
        ..Default::default()
    })
}

pub(super) async fn plan(
    client: &ClientArgs,
    file: &std::path::Path,
    include_drained: bool,
    output: Format,
) -> Result<()> {
    let mut req = spec_request(file)?;
    req.include_drained = include_drained;
    let mut c = client.connect().await?;
    let mut p = c.plan_deployment(req).await.map_err(status)?.into_inner();
    if p.batches.is_empty() && !p.plan_json.is_empty() {
        // A coordinator of the previous release sends only the JSON.
        let old: crate::engine::Plan =
            serde_json::from_str(&p.plan_json).context("reading the plan")?;
        p = crate::grpc::convert::plan(&old);
    }
    match output {
        Format::Json => {
            let v = serde_json::json!({
                "batches": p.batches.iter().map(|b| serde_json::json!({
                    "hosts": b.hosts.iter().map(|h| serde_json::json!({
                        "host": h.host_id,
                        "runs_now": (!h.runs_now.is_empty()).then_some(&h.runs_now),
                    })).collect::<Vec<_>>(),
                    "pause_ms": b.pause.as_ref().map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000),
                    "promote": b.promote,
                    "analysis": b.analysis,
                    "switch": b.switch_traffic,
                })).collect::<Vec<_>>(),
                "skipped": p.skipped.iter().map(|s| serde_json::json!({
                    "host": s.host_id, "reason": s.reason,
                })).collect::<Vec<_>>(),
                "max_failed": p.max_failed,
                "group": (!p.group.is_empty()).then_some(&p.group),
                "old_group": (!p.old_group.is_empty()).then_some(&p.old_group),
            });
            print!("{}", output::json(&v));
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = p
                .batches
                .iter()
                .enumerate()
                .flat_map(|(i, b)| {
                    b.hosts.iter().map(move |h| {
                        vec![
                            format!("{}", i + 1),
                            h.host_id.clone(),
                            if h.runs_now.is_empty() {
                                "-".into()
                            } else {
                                h.runs_now.clone()
                            },
                        ]
                    })
                })
                .collect();
            print!("{}", output::table(&["BATCH", "HOST", "RUNS NOW"], &rows));
            for s in &p.skipped {
                println!("skipped {}: {}", s.host_id, s.reason);
            }
            println!(
                "{} batch(es), {} host(s); rolls back after more than {} failed host(s)",
                p.batches.len(),
                p.batches.iter().map(|b| b.hosts.len()).sum::<usize>(),
                p.max_failed
            );
        }
    }
    Ok(())
}

/// `cutover deploy` flags.
pub(super) struct DeployOptions {
    pub(super) version: Option<String>,
    pub(super) artifact: Option<String>,
    pub(super) sha256: Option<String>,
    pub(super) commit_time: Option<String>,
    pub(super) require_success_in: Vec<String>,
    pub(super) include_drained: bool,
    pub(super) request_id: Option<String>,
    pub(super) outside_window: Option<String>,
    pub(super) watch: bool,
    pub(super) output: Format,
}

pub(super) async fn deploy(
    client: &ClientArgs,
    file: &std::path::Path,
    o: DeployOptions,
) -> Result<()> {
    let DeployOptions {
        version,
        artifact,
        sha256,
        commit_time,
        require_success_in,
        include_drained,
        request_id,
        outside_window,
        watch,
        output,
    } = o;
    let mut spec = spec_request(file)?;
    spec.require_success_in = require_success_in;
    spec.include_drained = include_drained;
    spec.version = version.unwrap_or_default();
    spec.artifact_url = artifact.unwrap_or_default();
    spec.artifact_sha256 = sha256.unwrap_or_default();
    let commit_time_ms = match commit_time {
        Some(t) => parse_commit_time(&t)
            .context("--commit-time: expected RFC 3339, e.g. 2026-11-22T10:00:00Z or git's %cI")?,
        None => 0,
    };
    let mut c = client.connect().await?;
    let d = c
        .submit_deployment(pb::SubmitDeploymentRequest {
            spec: Some(spec),
            commit_time_ms,
            request_id: request_id.unwrap_or_default(),
            outside_window_reason: outside_window.unwrap_or_default(),
        })
        .await
        .map_err(status)?
        .into_inner();
    started(&mut c, &d, output, watch, || {
        format!(
            "deployment {} of {} version {} started",
            d.id, d.service, d.version
        )
    })
    .await
}

/// After a deployment was started (deploy, rollback): says so, as text or
/// as the deployment in JSON, then follows it when asked (JSON lines).
pub(super) async fn started(
    c: &mut crate::client::Control,
    d: &pb::DeploymentInfo,
    output: Format,
    watch: bool,
    text: impl FnOnce() -> String,
) -> Result<()> {
    match (output, watch) {
        (Format::Table, _) => println!("{}", text()),
        // The watch's first line is this deployment.
        (Format::Json, true) => {}
        (Format::Json, false) => print!(
            "{}",
            output::json(&super::json::Deployment::of(
                d,
                status_of(d).as_ref(),
                false
            ))
        ),
    }
    if watch {
        follow_as(c, &d.id, None, output).await
    } else {
        Ok(())
    }
}

pub(super) fn rollout_of(d: &pb::DeploymentInfo) -> Option<crate::engine::Rollout> {
    serde_json::from_str(&d.rollout_json).ok()
}

/// A deployment's typed progress; from a coordinator of the previous
/// release (which sends none), made here from its rollout.
pub(super) fn status_of(d: &pb::DeploymentInfo) -> Option<pb::DeploymentStatus> {
    d.status.clone().or_else(|| {
        rollout_of(d).map(|r| crate::grpc::convert::status(&r, cutover_common::time::now_ms()))
    })
}

/// A host phase's name, as `cutover status` shows it (`done`, `failed`).
pub(super) fn host_phase_name(p: i32) -> String {
    pb::HostPhase::try_from(p)
        .map(|p| {
            p.as_str_name()
                .trim_start_matches("HOST_PHASE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// A wire timestamp as Unix ms (0: none).
pub(super) fn ms_of(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref()
        .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
        .unwrap_or(0)
}

/// How often a deployment that waits (a bake, a promote) says so when
/// nothing else happens and the output is not a terminal.
const STILL_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Prints a deployment's story as it happens; fails with the outcome's
/// exit code unless it succeeded.
pub async fn follow(c: &mut crate::client::Control, id: &str) -> Result<()> {
    follow_with(c, id, None).await
}

/// [`follow`], also showing `traffic()` (live request counts) every second.
pub async fn follow_with(
    c: &mut crate::client::Control,
    id: &str,
    traffic: Option<&(dyn Fn() -> String + Send + Sync)>,
) -> Result<()> {
    follow_as(c, id, traffic, Format::Table).await
}

/// [`follow_with`]; with `Format::Json`, each state the deployment goes
/// through is one line of JSON on stdout (the `status -o json` schema),
/// and the outcome's line goes to stderr.
pub async fn follow_as(
    c: &mut crate::client::Control,
    id: &str,
    traffic: Option<&(dyn Fn() -> String + Send + Sync)>,
    output: Format,
) -> Result<()> {
    let json = output == Format::Json;
    // A watch cut short (the coordinator restarting, a dropped
    // connection) is opened again from the last revision seen, for up to
    // a minute without news.
    let reopen = |e: &tonic::Status| {
        matches!(
            e.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        )
    };
    let mut after = 0u64;
    let mut retries = 0u32;
    let mut stream = c
        .watch_deployment(pb::GetDeploymentRequest {
            id: id.into(),
            after_revision: 0,
        })
        .await
        .map_err(status)?
        .into_inner();
    let mut printed = 0;
    let mut last: Option<pb::DeploymentInfo> = None;
    // On a terminal: a live bar of hosts on the new release under the
    // story; otherwise (CI logs) plain timestamped lines only.
    let bar = (!json && std::io::IsTerminal::is_terminal(&std::io::stdout())).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} hosts on the new release [{bar:30}] {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        b
    });
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut blocked = String::new();
    // When the story last said something (for the "still" lines).
    let mut quiet_since = std::time::Instant::now();
    let mut bake_until: Option<i64> = None;
    loop {
        let d = tokio::select! {
            m = stream.message() => match m {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) if reopen(&e) && retries < 60 => {
                    if retries == 0 {
                        let line = format!("          lost the watch ({}); following again", e.message());
                        match &bar {
                            Some(b) => b.println(line),
                            None if json => eprintln!("{}", line.trim_start()),
                            None => println!("{line}"),
                        }
                    }
                    loop {
                        retries += 1;
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        // Connected afresh: several coordinators, another
                        // may lead now (a standby's answer is followed).
                        if let Some(fresh) = crate::client::reconnect().await {
                            *c = fresh;
                        }
                        match c
                            .watch_deployment(pb::GetDeploymentRequest {
                                id: id.into(),
                                after_revision: after,
                            })
                            .await
                        {
                            Ok(s) => {
                                stream = s.into_inner();
                                break;
                            }
                            Err(e) if reopen(&e) && retries < 60 => {}
                            Err(e) => return Err(status(e)),
                        }
                    }
                    continue;
                }
                Err(e) => return Err(status(e)),
            },
            _ = tick.tick(), if traffic.is_some() || (bar.is_none() && !json) => {
                if let Some(f) = traffic {
                    let t = f();
                    match &bar {
                        Some(b) => b.set_message(format!("{blocked} | {t}")),
                        None => println!("          clients: {t}"),
                    }
                } else if !blocked.is_empty() && quiet_since.elapsed() >= STILL_EVERY {
                    // Not on a terminal (a CI log): a long bake or a wait
                    // for promote says it is still there, now and then.
                    let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
                    // A bake's "waiting Ns more" is counted again from
                    // its end, not repeated from the last state.
                    let what = match bake_until {
                        Some(end) => format!(
                            "baking: {}s more",
                            ((end - cutover_common::time::now_ms()) / 1000).max(0)
                        ),
                        None => blocked.clone(),
                    };
                    println!("{}  {id}  still {what}", &t[11..19]);
                    quiet_since = std::time::Instant::now();
                }
                continue;
            }
        };
        retries = 0;
        after = after.max(d.revision);
        if json {
            let s = status_of(&d);
            println!(
                "{}",
                serde_json::to_string(&super::json::Deployment::of(&d, s.as_ref(), true))
                    .expect("serializable")
            );
            last = Some(d);
            continue;
        }
        blocked = d.blocked_on.clone();
        let st = status_of(&d);
        bake_until = st
            .as_ref()
            .map(|s| ms_of(&s.waiting_until))
            .filter(|ms| *ms > 0);
        if let Some(r) = st {
            if r.notes.len() > printed {
                quiet_since = std::time::Instant::now();
            }
            for n in r.notes.iter().skip(printed) {
                let t = humantime::format_rfc3339_seconds(cutover_common::time::from_unix_ms(
                    ms_of(&n.at),
                ))
                .to_string();
                let line = format!("{}  {}  {}", &t[11..19], d.id, n.message);
                match &bar {
                    Some(b) => b.println(line),
                    None => println!("{line}"),
                }
            }
            printed = r.notes.len();
            if let Some(b) = &bar {
                b.set_length(r.hosts.len() as u64);
                let done = r
                    .hosts
                    .iter()
                    .filter(|h| {
                        matches!(
                            pb::HostPhase::try_from(h.phase),
                            Ok(pb::HostPhase::Done | pb::HostPhase::Skipped)
                        )
                    })
                    .count();
                b.set_position(done as u64);
                match traffic {
                    Some(f) => b.set_message(format!("{blocked} | {}", f())),
                    None => b.set_message(blocked.clone()),
                }
            }
        }
        last = Some(d);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let d = last.context("the coordinator sent nothing")?;
    let r = status_of(&d);
    let summary = r.as_ref().map(|r| r.summary.clone()).unwrap_or_default();
    let (code, what) = match d.phase.as_str() {
        "succeeded" => (0, "succeeded"),
        "rolled_back" => (3, "rolled back"),
        "aborted" => (4, "aborted"),
        "failed" => (2, "failed"),
        _ => (2, "ended without a result"),
    };
    let reason = match r.map(|r| r.reason) {
        Some(reason) if !reason.is_empty() && code != 0 => format!(": {reason}"),
        _ => String::new(),
    };
    let message = format!("deployment {} {what}{reason} ({summary})", d.id);
    if code == 0 {
        if json {
            eprintln!("{message}");
        } else {
            println!("{message}");
        }
        Ok(())
    } else {
        Err(DeployOutcome { code, message }.into())
    }
}

pub(super) async fn status_cmd(client: &ClientArgs, id: String, output: Format) -> Result<()> {
    let mut c = client.connect().await?;
    let d = c
        .get_deployment(pb::GetDeploymentRequest {
            id,
            ..Default::default()
        })
        .await
        .map_err(status)?
        .into_inner();
    match output {
        Format::Json => {
            let s = status_of(&d);
            print!(
                "{}",
                output::json(&super::json::Deployment::of(&d, s.as_ref(), true))
            );
        }
        Format::Table => {
            println!(
                "deployment {}: {} version {} — {}",
                d.id, d.service, d.version, d.phase
            );
            if let Some(s) = status_of(&d) {
                println!(
                    "release {}, {} batch(es), started by {}",
                    s.release_id, s.batches, d.created_by
                );
                if !d.blocked_on.is_empty() {
                    println!("now: {}", d.blocked_on);
                }
                if !s.reason.is_empty() {
                    println!("why: {}", s.reason);
                }
                let rows: Vec<Vec<String>> = s
                    .hosts
                    .iter()
                    .map(|h| {
                        vec![
                            h.host_id.clone(),
                            (h.batch + 1).to_string(),
                            host_phase_name(h.phase),
                            h.reason.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    output::table(&["HOST", "BATCH", "STATE", "DETAIL"], &rows)
                );
            }
        }
    }
    Ok(())
}

pub(super) async fn history(
    client: &ClientArgs,
    service: &str,
    limit: u32,
    output: Format,
) -> Result<()> {
    let mut c = client.connect().await?;
    // Page by page, up to `limit`.
    let mut list = Vec::new();
    let mut page_token = String::new();
    while (list.len() as u32) < limit {
        let page = c
            .list_deployments(pb::ListDeploymentsRequest {
                service: service.into(),
                page_size: (limit - list.len() as u32).min(1000),
                page_token,
                ..Default::default()
            })
            .await
            .map_err(status)?
            .into_inner();
        list.extend(page.deployments);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let fmt_ts = |ms: i64| {
        if ms == 0 {
            "-".to_string()
        } else {
            humantime::format_rfc3339_seconds(cutover_common::time::from_unix_ms(ms)).to_string()
        }
    };
    match output {
        Format::Json => {
            let v: Vec<super::json::Deployment> = list
                .iter()
                .map(|d| super::json::Deployment::of(d, status_of(d).as_ref(), false))
                .collect();
            print!("{}", output::json(&v));
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|d| {
                    vec![
                        d.id.clone(),
                        d.version.clone(),
                        if d.environment.is_empty() {
                            "-".into()
                        } else {
                            d.environment.clone()
                        },
                        if d.rollback_of.is_empty() {
                            d.phase.clone()
                        } else {
                            format!("{} (rollback of {})", d.phase, d.rollback_of)
                        },
                        d.created_by.clone(),
                        fmt_ts(d.created_at_ms),
                        status_of(d).map(|r| r.summary).unwrap_or_default(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(
                    &["ID", "VERSION", "ENV", "OUTCOME", "BY", "STARTED", "HOSTS"],
                    &rows
                )
            );
        }
    }
    Ok(())
}

pub(super) async fn control(
    client: &ClientArgs,
    id: &str,
    action: &str,
    output: Format,
) -> Result<()> {
    let mut c = client.connect().await?;
    let d = c
        .control_deployment(pb::ControlDeploymentRequest {
            request_id: String::new(),
            id: id.into(),
            action: action.into(),
        })
        .await
        .map_err(status)?
        .into_inner();
    if output == Format::Json {
        // The deployment after the action, as `status -o json` shows it.
        let s = status_of(&d);
        print!(
            "{}",
            output::json(&super::json::Deployment::of(&d, s.as_ref(), true))
        );
        return Ok(());
    }
    println!(
        "deployment {}: {} ({})",
        d.id,
        d.phase,
        if d.blocked_on.is_empty() {
            action
        } else {
            &d.blocked_on
        }
    );
    Ok(())
}

/// `drain` (with `stop` given) or `undrain` (without) of services on a host.
pub(super) async fn drain(
    client: &ClientArgs,
    host: &str,
    mut services: Vec<String>,
    stop: Option<bool>,
    output: Format,
) -> Result<()> {
    let mut c = client.connect().await?;
    if services.is_empty() {
        // The one host (a whole fleet is more than one page).
        let hosts = c
            .list_hosts(pb::ListHostsRequest {
                host_id: host.into(),
                ..Default::default()
            })
            .await
            .map_err(status)?
            .into_inner()
            .hosts;
        let h = hosts
            .into_iter()
            .find(|h| h.host_id == host)
            .with_context(|| format!("no host `{host}`"))?;
        services = h.services.into_iter().map(|s| s.service).collect();
        if services.is_empty() {
            bail!("host `{host}` runs no service");
        }
    }
    let mut failed = 0;
    for service in services {
        let kind = match stop {
            Some(stop) => pb::command::Kind::Drain(pb::DrainCommand {
                service: service.clone(),
                stop,
            }),
            None => pb::command::Kind::Undrain(pb::UndrainCommand {
                service: service.clone(),
            }),
        };
        let mut events = c
            .send_command(pb::SendCommandRequest {
                host_id: host.into(),
                command: Some(pb::Command {
                    kind: Some(kind),
                    ..Default::default()
                }),
                timeout_ms: 0,
            })
            .await
            .map_err(status)?
            .into_inner();
        while let Some(ev) = events.message().await.map_err(status)? {
            let json = output == Format::Json;
            match ev.event {
                Some(pb::command_event::Event::Progress(p)) if json => println!(
                    "{}",
                    serde_json::json!({"host": host, "service": service, "event": "progress", "phase": p.phase, "message": p.message})
                ),
                Some(pb::command_event::Event::Progress(p)) => {
                    println!("{host}/{service}: {}: {}", p.phase, p.message)
                }
                Some(pb::command_event::Event::Result(r)) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"host": host, "service": service, "event": "result", "ok": r.ok, "message": r.message})
                        );
                    } else {
                        println!(
                            "{host}/{service}: {} {}",
                            if r.ok { "ok:" } else { "FAILED:" },
                            r.message
                        );
                    }
                    if !r.ok {
                        failed += 1;
                    }
                }
                None => {}
            }
        }
    }
    if failed > 0 {
        bail!("{failed} service(s) failed");
    }
    Ok(())
}
