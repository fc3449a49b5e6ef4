//! The typed spec (`spec.proto`) at the edge. A typed spec becomes TOML,
//! which the usual parse checks (one set of rules, one error format) and
//! the store keeps; a parsed spec becomes the typed message with every
//! default filled in (`ParseSpec`).

use std::time::Duration;

use cutover_common::deploy::{Amount, DeploySpec, StrategyKind};
use cutover_common::service::{Check, DrainWait, Hook, Probe, SwapMode, Target};
use cutover_proto::v1 as pb;
use toml::{Table, Value};

/// Why a typed spec cannot be written as TOML: the field, and what is
/// wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field}: {why}")]
pub struct TypedSpecError {
    pub field: String,
    pub why: String,
}

fn err(field: &str, why: impl Into<String>) -> TypedSpecError {
    TypedSpecError {
        field: field.into(),
        why: why.into(),
    }
}

/// The TOML of a typed spec: the fields it sets, nothing else (the parse
/// fills in the defaults and checks every value).
pub fn to_toml(s: &pb::DeploySpec) -> Result<String, TypedSpecError> {
    let mut t = Table::new();
    put_str(&mut t, "service", &s.service);
    put_str(&mut t, "version", &s.version);
    if let Some(a) = &s.artifact {
        let mut x = Table::new();
        x.insert("url".into(), a.url.clone().into());
        x.insert("sha256".into(), a.sha256.clone().into());
        if let Some(n) = a.max_bytes {
            x.insert("max_bytes".into(), int(n, "artifact.max_bytes")?);
        }
        t.insert("artifact".into(), x.into());
    }
    if let Some(r) = &s.run {
        let mut x = Table::new();
        x.insert("command".into(), strings(&r.command));
        if !r.env.is_empty() {
            let env: Table = r
                .env
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect();
            x.insert("env".into(), env.into());
        }
        if !r.env_files.is_empty() {
            x.insert("env_files".into(), strings(&r.env_files));
        }
        put_str(&mut x, "user", &r.user);
        put_str(&mut x, "working_dir", &r.working_dir);
        put_str(&mut x, "output", &r.output);
        t.insert("run".into(), x.into());
    }
    if !s.listen.is_empty() {
        let l: Vec<Value> = s
            .listen
            .iter()
            .map(|l| {
                let mut x = Table::new();
                x.insert("name".into(), l.name.clone().into());
                x.insert("address".into(), l.address.clone().into());
                x.into()
            })
            .collect();
        t.insert("listen".into(), l.into());
    }
    if let Some(w) = &s.swap {
        let mut x = Table::new();
        let mode = match pb::SwapMode::try_from(w.mode) {
            Ok(pb::SwapMode::Unspecified) => None,
            Ok(pb::SwapMode::Handover) => Some("handover"),
            Ok(pb::SwapMode::Reuseport) => Some("reuseport"),
            Ok(pb::SwapMode::Restart) => Some("restart"),
            Err(_) => return Err(err("swap.mode", format!("unknown mode {}", w.mode))),
        };
        if let Some(m) = mode {
            x.insert("mode".into(), m.into());
        }
        put_dur(&mut x, "min_ready", &w.min_ready, "swap")?;
        put_dur(&mut x, "grace", &w.grace, "swap")?;
        put_str(&mut x, "stop_signal", &w.stop_signal);
        put_dur(&mut x, "ready_timeout", &w.ready_timeout, "swap")?;
        t.insert("swap".into(), x.into());
    }
    if let Some(p) = &s.probes {
        let mut x = Table::new();
        for (name, probe) in [
            ("startup", &p.startup),
            ("readiness", &p.readiness),
            ("liveness", &p.liveness),
        ] {
            if let Some(probe) = probe {
                x.insert(
                    name.into(),
                    probe_toml(probe, &format!("probes.{name}"))?.into(),
                );
            }
        }
        t.insert("probes".into(), x.into());
    }
    if let Some(h) = &s.hooks {
        let mut x = Table::new();
        for (name, hook) in [
            ("before_start", &h.before_start),
            ("after_start", &h.after_start),
            ("validate", &h.validate),
            ("pre_drain", &h.pre_drain),
            ("post_drain", &h.post_drain),
        ] {
            if let Some(hook) = hook {
                x.insert(
                    name.into(),
                    hook_toml(hook, &format!("hooks.{name}"))?.into(),
                );
            }
        }
        t.insert("hooks".into(), x.into());
    }
    if let Some(d) = &s.drain {
        let mut x = Table::new();
        match pb::DrainWait::try_from(d.wait_for) {
            Ok(pb::DrainWait::Unspecified) => {}
            Ok(pb::DrainWait::Balancers) => {
                x.insert("wait_for".into(), "balancers".into());
            }
            Ok(pb::DrainWait::Delay) => {
                x.insert("wait_for".into(), "delay".into());
            }
            Err(_) => {
                return Err(err(
                    "drain.wait_for",
                    format!("unknown value {}", d.wait_for),
                ));
            }
        }
        if let Some(n) = d.balancer_fall {
            x.insert("balancer_fall".into(), n.into());
        }
        put_dur(&mut x, "balancer_timeout", &d.balancer_timeout, "drain")?;
        put_dur(
            &mut x,
            "deregistration_delay",
            &d.deregistration_delay,
            "drain",
        )?;
        t.insert("drain".into(), x.into());
    }
    if let Some(r) = &s.restart {
        let mut x = Table::new();
        if let Some(b) = r.on_failure {
            x.insert("on_failure".into(), b.into());
        }
        put_dur(&mut x, "backoff_initial", &r.backoff_initial, "restart")?;
        put_dur(&mut x, "backoff_max", &r.backoff_max, "restart")?;
        t.insert("restart".into(), x.into());
    }
    if let Some(l) = &s.logs {
        let mut x = Table::new();
        if let Some(n) = l.max_bytes {
            x.insert("max_bytes".into(), int(n, "logs.max_bytes")?);
        }
        if let Some(n) = l.keep {
            x.insert("keep".into(), n.into());
        }
        t.insert("logs".into(), x.into());
    }
    if let Some(m) = &s.metrics {
        let mut x = Table::new();
        put_target(&mut x, &m.target);
        put_str(&mut x, "path", &m.path);
        put_str(&mut x, "requests", &m.requests);
        put_str(&mut x, "status_label", &m.status_label);
        put_str(&mut x, "latency", &m.latency);
        put_dur(&mut x, "interval", &m.interval, "metrics")?;
        t.insert("metrics".into(), x.into());
    }
    if let Some(st) = &s.strategy {
        let mut x = Table::new();
        let kind = match pb::Strategy::try_from(st.kind) {
            Ok(pb::Strategy::Unspecified) => None,
            Ok(pb::Strategy::Rolling) => Some("rolling"),
            Ok(pb::Strategy::Recreate) => Some("recreate"),
            Ok(pb::Strategy::Canary) => Some("canary"),
            Ok(pb::Strategy::BlueGreen) => Some("blue_green"),
            Err(_) => return Err(err("strategy.kind", format!("unknown kind {}", st.kind))),
        };
        if let Some(k) = kind {
            x.insert("kind".into(), k.into());
        }
        if let Some(a) = &st.max_unavailable {
            x.insert(
                "max_unavailable".into(),
                amount(a, "strategy.max_unavailable")?,
            );
        }
        if let Some(n) = st.max_parallel {
            x.insert("max_parallel".into(), n.into());
        }
        put_dur(&mut x, "healthy_deadline", &st.healthy_deadline, "strategy")?;
        put_dur(
            &mut x,
            "progress_deadline",
            &st.progress_deadline,
            "strategy",
        )?;
        if !st.steps.is_empty() {
            let mut steps = Vec::new();
            for (i, step) in st.steps.iter().enumerate() {
                let f = format!("strategy.steps[{i}]");
                let mut y = Table::new();
                let hosts = step
                    .hosts
                    .as_ref()
                    .ok_or_else(|| err(&format!("{f}.hosts"), "expected a host count or share"))?;
                y.insert("hosts".into(), amount(hosts, &format!("{f}.hosts"))?);
                put_str(&mut y, "pause", &step.pause);
                if step.analysis {
                    y.insert("analysis".into(), true.into());
                }
                steps.push(Value::from(y));
            }
            x.insert("steps".into(), steps.into());
        }
        put_str(&mut x, "group_label", &st.group_label);
        if !st.groups.is_empty() {
            x.insert("groups".into(), strings(&st.groups));
        }
        put_dur(&mut x, "keep_old", &st.keep_old, "strategy")?;
        if let Some(h) = &st.switch {
            x.insert("switch".into(), hook_toml(h, "strategy.switch")?.into());
        }
        t.insert("strategy".into(), x.into());
    }
    if let Some(r) = &s.rollback {
        let mut x = Table::new();
        if let Some(b) = r.auto {
            x.insert("auto".into(), b.into());
        }
        if let Some(a) = &r.max_failed {
            x.insert("max_failed".into(), amount(a, "rollback.max_failed")?);
        }
        t.insert("rollback".into(), x.into());
    }
    if let Some(p) = s.analysis.as_ref().and_then(|a| a.prometheus.as_ref()) {
        let mut x = Table::new();
        x.insert("url".into(), p.url.clone().into());
        put_dur(&mut x, "timeout", &p.timeout, "analysis.prometheus")?;
        let q: Vec<Value> = p
            .queries
            .iter()
            .map(|q| {
                let mut y = Table::new();
                y.insert("name".into(), q.name.clone().into());
                y.insert("query".into(), q.query.clone().into());
                y.insert("max_increase".into(), q.max_increase.into());
                y.into()
            })
            .collect();
        x.insert("queries".into(), q.into());
        let mut a = Table::new();
        a.insert("prometheus".into(), x.into());
        t.insert("analysis".into(), a.into());
    }
    if let Some(g) = &s.targets {
        let mut x = Table::new();
        x.insert("selector".into(), g.selector.clone().into());
        put_str(&mut x, "environment", &g.environment);
        if !g.requires_success_in.is_empty() {
            x.insert(
                "requires_success_in".into(),
                strings(&g.requires_success_in),
            );
        }
        if g.include_drained {
            x.insert("include_drained".into(), true.into());
        }
        if g.approval {
            x.insert("approval".into(), true.into());
        }
        if !g.windows.is_empty() {
            x.insert("windows".into(), strings(&g.windows));
        }
        t.insert("targets".into(), x.into());
    }
    toml::to_string(&t).map_err(|e| err("", e.to_string()))
}

fn put_str(t: &mut Table, key: &str, v: &str) {
    if !v.is_empty() {
        t.insert(key.into(), v.into());
    }
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| Value::from(s.clone())).collect())
}

fn int(n: u64, field: &str) -> Result<Value, TypedSpecError> {
    i64::try_from(n)
        .map(Value::from)
        .map_err(|_| err(field, format!("{n} is too large")))
}

/// A duration as the spec writes it ("1m 30s", "250ms").
fn put_dur(
    t: &mut Table,
    key: &str,
    d: &Option<prost_types::Duration>,
    table: &str,
) -> Result<(), TypedSpecError> {
    let Some(d) = d else { return Ok(()) };
    let std = Duration::try_from(*d).map_err(|_| {
        err(
            &format!("{table}.{key}"),
            "expected a duration of 0 or more",
        )
    })?;
    t.insert(
        key.into(),
        humantime::format_duration(std).to_string().into(),
    );
    Ok(())
}

fn amount(a: &pb::SpecAmount, field: &str) -> Result<Value, TypedSpecError> {
    match a.amount {
        Some(pb::spec_amount::Amount::Count(n)) => Ok(n.into()),
        Some(pb::spec_amount::Amount::Percent(p)) => Ok(format!("{p}%").into()),
        None => Err(err(field, "expected a count or a percent")),
    }
}

fn put_target(t: &mut Table, target: &Option<pb::SpecTarget>) {
    if let Some(g) = target {
        put_str(t, "listener", &g.listener);
        if g.port != 0 {
            t.insert("port".into(), g.port.into());
        }
    }
}

fn hook_toml(h: &pb::SpecHook, field: &str) -> Result<Table, TypedSpecError> {
    let mut x = Table::new();
    x.insert("command".into(), strings(&h.command));
    put_dur(&mut x, "timeout", &h.timeout, field)?;
    Ok(x)
}

fn probe_toml(p: &pb::SpecProbe, field: &str) -> Result<Table, TypedSpecError> {
    use pb::spec_probe::Check as C;
    let mut x = Table::new();
    let (kind, body) = match &p.check {
        Some(C::Notify(_)) => ("notify", Table::new()),
        Some(C::Http(h)) => {
            let mut y = Table::new();
            put_target(&mut y, &h.target);
            put_str(&mut y, "path", &h.path);
            if let Some(n) = h.status_min {
                y.insert("status_min".into(), n.into());
            }
            if let Some(n) = h.status_max {
                y.insert("status_max".into(), n.into());
            }
            if let Some(b) = &h.body {
                y.insert("body".into(), b.clone().into());
            }
            ("http", y)
        }
        Some(C::Tcp(g)) => {
            let mut y = Table::new();
            put_target(&mut y, &Some(g.clone()));
            ("tcp", y)
        }
        Some(C::Exec(e)) => {
            let mut y = Table::new();
            y.insert("command".into(), strings(&e.command));
            ("exec", y)
        }
        Some(C::Grpc(g)) => {
            let mut y = Table::new();
            put_target(&mut y, &g.target);
            put_str(&mut y, "service", &g.service);
            ("grpc", y)
        }
        None => {
            return Err(err(
                &format!("{field}.check"),
                "expected one of notify, http, tcp, exec, grpc",
            ));
        }
    };
    x.insert(kind.into(), body.into());
    put_dur(&mut x, "initial_delay", &p.initial_delay, field)?;
    put_dur(&mut x, "interval", &p.interval, field)?;
    put_dur(&mut x, "timeout", &p.timeout, field)?;
    if let Some(n) = p.success_threshold {
        x.insert("success_threshold".into(), n.into());
    }
    if let Some(n) = p.failure_threshold {
        x.insert("failure_threshold".into(), n.into());
    }
    Ok(x)
}

fn dur(d: Duration) -> Option<prost_types::Duration> {
    prost_types::Duration::try_from(d).ok()
}

fn amount_pb(a: Amount) -> pb::SpecAmount {
    pb::SpecAmount {
        amount: Some(match a {
            Amount::Count(n) => pb::spec_amount::Amount::Count(n),
            Amount::Percent(p) => pb::spec_amount::Amount::Percent(p),
        }),
    }
}

fn target_pb(t: &Target) -> pb::SpecTarget {
    pb::SpecTarget {
        listener: t.listener.clone().unwrap_or_default(),
        port: t.port.map(u32::from).unwrap_or(0),
    }
}

fn hook_pb(h: &Hook) -> pb::SpecHook {
    pb::SpecHook {
        command: h.command.clone(),
        timeout: dur(h.timeout),
    }
}

fn probe_pb(p: &Probe) -> pb::SpecProbe {
    use pb::spec_probe::Check as C;
    let check = match &p.check {
        Check::Notify {} => C::Notify(true),
        Check::Http {
            target,
            path,
            status_min,
            status_max,
            body,
        } => C::Http(pb::SpecHttpCheck {
            target: Some(target_pb(target)),
            path: path.clone(),
            status_min: Some((*status_min).into()),
            status_max: Some((*status_max).into()),
            body: body.clone(),
        }),
        Check::Tcp { target } => C::Tcp(target_pb(target)),
        Check::Exec { command } => C::Exec(pb::SpecExecCheck {
            command: command.clone(),
        }),
        Check::Grpc { target, service } => C::Grpc(pb::SpecGrpcCheck {
            target: Some(target_pb(target)),
            service: service.clone(),
        }),
    };
    pb::SpecProbe {
        check: Some(check),
        initial_delay: dur(p.initial_delay),
        interval: dur(p.interval),
        timeout: dur(p.timeout),
        success_threshold: Some(p.success_threshold),
        failure_threshold: Some(p.failure_threshold),
    }
}

/// A parsed spec as typed fields, every default filled in.
pub fn from_spec(s: &DeploySpec) -> pb::DeploySpec {
    pb::DeploySpec {
        service: s.service.clone(),
        version: s.version.clone().unwrap_or_default(),
        artifact: s.artifact.as_ref().map(|a| pb::SpecArtifact {
            url: a.url.clone(),
            sha256: a.sha256.clone(),
            max_bytes: a.max_bytes,
        }),
        run: Some(pb::SpecRun {
            command: s.run.command.clone(),
            env: s.run.env.clone().into_iter().collect(),
            env_files: s
                .run
                .env_files
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            user: s.run.user.clone().unwrap_or_default(),
            working_dir: s.run.working_dir.clone().unwrap_or_default(),
            output: match s.run.output {
                cutover_common::service::Output::File => String::new(),
                cutover_common::service::Output::Journal => "journal".into(),
            },
        }),
        listen: s
            .listen
            .iter()
            .map(|l| pb::SpecListen {
                name: l.name.clone(),
                address: l.address.to_string(),
            })
            .collect(),
        swap: Some(pb::SpecSwap {
            mode: match s.swap.mode {
                SwapMode::Handover => pb::SwapMode::Handover,
                SwapMode::Reuseport => pb::SwapMode::Reuseport,
                SwapMode::Restart => pb::SwapMode::Restart,
            } as i32,
            min_ready: dur(s.swap.min_ready),
            grace: dur(s.swap.grace),
            stop_signal: s.swap.stop_signal.clone(),
            ready_timeout: dur(s.swap.ready_timeout),
        }),
        probes: Some(pb::SpecProbes {
            startup: s.probes.startup.as_ref().map(probe_pb),
            readiness: s.probes.readiness.as_ref().map(probe_pb),
            liveness: s.probes.liveness.as_ref().map(probe_pb),
        }),
        hooks: Some(pb::SpecHooks {
            before_start: s.hooks.before_start.as_ref().map(hook_pb),
            after_start: s.hooks.after_start.as_ref().map(hook_pb),
            validate: s.hooks.validate.as_ref().map(hook_pb),
            pre_drain: s.hooks.pre_drain.as_ref().map(hook_pb),
            post_drain: s.hooks.post_drain.as_ref().map(hook_pb),
        }),
        drain: Some(pb::SpecDrain {
            wait_for: match s.drain.wait_for {
                DrainWait::Balancers => pb::DrainWait::Balancers,
                DrainWait::Delay => pb::DrainWait::Delay,
            } as i32,
            balancer_fall: Some(s.drain.balancer_fall),
            balancer_timeout: dur(s.drain.balancer_timeout),
            deregistration_delay: dur(s.drain.deregistration_delay),
        }),
        restart: Some(pb::SpecRestart {
            on_failure: Some(s.restart.on_failure),
            backoff_initial: dur(s.restart.backoff_initial),
            backoff_max: dur(s.restart.backoff_max),
        }),
        logs: Some(pb::SpecLogs {
            max_bytes: Some(s.logs.max_bytes),
            keep: Some(s.logs.keep),
        }),
        metrics: s.metrics.as_ref().map(|m| pb::SpecMetrics {
            target: Some(target_pb(&m.target())),
            path: m.path.clone(),
            requests: m.requests.clone(),
            status_label: m.status_label.clone(),
            latency: m.latency.clone().unwrap_or_default(),
            interval: dur(m.interval),
        }),
        strategy: Some(pb::SpecStrategy {
            kind: match s.strategy.kind {
                StrategyKind::Rolling => pb::Strategy::Rolling,
                StrategyKind::Recreate => pb::Strategy::Recreate,
                StrategyKind::Canary => pb::Strategy::Canary,
                StrategyKind::BlueGreen => pb::Strategy::BlueGreen,
            } as i32,
            max_unavailable: Some(amount_pb(s.strategy.max_unavailable)),
            max_parallel: s.strategy.max_parallel,
            healthy_deadline: dur(s.strategy.healthy_deadline),
            progress_deadline: dur(s.strategy.progress_deadline),
            steps: s
                .strategy
                .steps
                .iter()
                .map(|c| pb::SpecCanaryStep {
                    hosts: Some(amount_pb(c.hosts)),
                    pause: c.pause.clone().unwrap_or_default(),
                    analysis: c.analysis,
                })
                .collect(),
            group_label: s.strategy.group_label.clone(),
            groups: s.strategy.groups.clone(),
            keep_old: dur(s.strategy.keep_old),
            switch: s.strategy.switch.as_ref().map(hook_pb),
        }),
        rollback: Some(pb::SpecRollback {
            auto: Some(s.rollback.auto),
            max_failed: Some(amount_pb(s.rollback.max_failed)),
        }),
        analysis: Some(pb::SpecAnalysis {
            prometheus: s.analysis.prometheus.as_ref().map(|p| pb::SpecPrometheus {
                url: p.url.clone(),
                timeout: dur(p.timeout),
                queries: p
                    .queries
                    .iter()
                    .map(|q| pb::SpecPromQuery {
                        name: q.name.clone(),
                        query: q.query.clone(),
                        max_increase: q.max_increase,
                    })
                    .collect(),
            }),
        }),
        targets: Some(pb::SpecTargets {
            selector: s.targets.selector.clone(),
            environment: s.targets.environment.clone().unwrap_or_default(),
            requires_success_in: s.targets.requires_success_in.clone(),
            include_drained: s.targets.include_drained,
            approval: s.targets.approval,
            windows: s.targets.windows.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/specs/good");
        let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.display().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        out.sort();
        assert!(out.len() >= 3, "{out:?}");
        out
    }

    #[test]
    fn every_spec_of_the_corpus_survives_typed_and_back_unchanged() {
        for (file, text) in corpus() {
            let spec = DeploySpec::parse(&text, &file).unwrap();
            let typed = from_spec(&spec);
            let again = to_toml(&typed).unwrap();
            let back = DeploySpec::parse(&again, "typed")
                .unwrap_or_else(|e| panic!("{file}: {e}\n{again}"));
            assert_eq!(back, spec, "{file}:\n{again}");
            // And typed again: the same message.
            assert_eq!(from_spec(&back), typed, "{file}");
            // ParseSpec's TOML, every default written out, reads back the same.
            let full = toml::to_string(&spec).unwrap();
            assert_eq!(
                DeploySpec::parse(&full, "full").unwrap(),
                spec,
                "{file}:\n{full}"
            );
        }
    }

    #[test]
    fn a_typed_spec_with_only_what_it_needs_gets_the_defaults_of_toml() {
        let typed = pb::DeploySpec {
            service: "web".into(),
            run: Some(pb::SpecRun {
                command: vec!["bin/web".into()],
                ..Default::default()
            }),
            targets: Some(pb::SpecTargets {
                selector: "role=web".into(),
                ..Default::default()
            }),
            strategy: Some(pb::SpecStrategy {
                kind: pb::Strategy::Canary as i32,
                steps: vec![pb::SpecCanaryStep {
                    hosts: Some(amount_pb(Amount::Percent(100))),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = DeploySpec::parse(&to_toml(&typed).unwrap(), "typed").unwrap();
        let toml = DeploySpec::parse(
            "service = \"web\"\n[run]\ncommand = [\"bin/web\"]\n[targets]\nselector = \"role=web\"\n\
             [strategy]\nkind = \"canary\"\nsteps = [ { hosts = \"100%\" } ]\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(spec, toml);
    }

    #[test]
    fn a_bad_typed_value_is_named_by_its_field() {
        let mut typed = pb::DeploySpec {
            service: "web".into(),
            swap: Some(pb::SpecSwap {
                min_ready: Some(prost_types::Duration {
                    seconds: -1,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = to_toml(&typed).unwrap_err();
        assert_eq!(e.field, "swap.min_ready", "{e}");
        typed.swap = None;
        typed.probes = Some(pb::SpecProbes {
            readiness: Some(pb::SpecProbe::default()),
            ..Default::default()
        });
        assert_eq!(to_toml(&typed).unwrap_err().field, "probes.readiness.check");
        // Values the parse refuses are refused with its message and field.
        typed.probes = None;
        typed.run = Some(pb::SpecRun {
            command: vec!["bin/web".into()],
            ..Default::default()
        });
        typed.targets = Some(pb::SpecTargets {
            selector: "role=web".into(),
            ..Default::default()
        });
        typed.strategy = Some(pb::SpecStrategy {
            max_unavailable: Some(amount_pb(Amount::Percent(250))),
            ..Default::default()
        });
        let e = DeploySpec::parse(&to_toml(&typed).unwrap(), "typed").unwrap_err();
        assert_eq!(e.field, "strategy.max_unavailable", "{e}");
    }
}
