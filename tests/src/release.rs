//! Release tarballs of the demo service, service specs for it, and a
//! control client that sends commands to hosts as an operator would.

use std::path::{Path, PathBuf};

use cutover_common::pki::{self, TlsIdentity};
use cutover_common::service::ServiceSpec;
use cutover_common::tls::{self, ChannelOptions};
use cutover_proto::v1 as pb;
use sha2::Digest;

use crate::{Cluster, bin};

/// A release artifact on disk.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub path: PathBuf,
    pub url: String,
    pub sha256: String,
}

/// Packs the demo service binary as `bin/demo-service` into `dir/name`.
pub fn demo_tarball(dir: &Path, name: &str) -> Artifact {
    let path = dir.join(name);
    // Plain tar: the agent detects gzip by its magic bytes, and the tests
    // stay fast without compressing a binary.
    let mut b = tar::Builder::new(std::fs::File::create(&path).expect("creating tarball"));
    b.append_path_with_name(bin("cutover-demo-service"), "bin/demo-service")
        .expect("adding binary");
    b.into_inner().expect("finishing tarball");
    let bytes = std::fs::read(&path).expect("reading tarball");
    Artifact {
        url: format!("file://{}", path.display()),
        sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        path,
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A spec for the demo service on `port`, version `version`, with extra
/// demo-service arguments.
pub fn demo_spec(service: &str, port: u16, version: &str, extra: &[&str]) -> ServiceSpec {
    let mut command = vec![
        "bin/demo-service".to_string(),
        "--app-version".into(),
        version.into(),
    ];
    command.extend(extra.iter().map(|s| s.to_string()));
    let text = format!(
        r#"
service = "{service}"
[run]
command = {command:?}
[[listen]]
name = "http"
address = "127.0.0.1:{port}"
[swap]
min_ready = "300ms"
grace = "10s"
ready_timeout = "5s"
[drain]
deregistration_delay = "1s"
"#
    );
    let spec = cutover_common::service::parse_toml(&text).expect("test spec parses");
    spec.validate().expect("valid test spec");
    spec
}

fn cmd(id: &str, kind: pb::command::Kind) -> pb::Command {
    pb::Command {
        command_id: id.into(),
        deployment_id: String::new(),
        step: 0,
        epoch: 0,
        term: 0,
        kind: Some(kind),
    }
}

/// A `Stage` command.
pub fn stage(
    id: &str,
    release_id: &str,
    version: &str,
    a: &Artifact,
    spec: &ServiceSpec,
) -> pb::Command {
    cmd(
        id,
        pb::command::Kind::Stage(pb::StageCommand {
            service: spec.service.clone(),
            release_id: release_id.into(),
            version: version.into(),
            artifact_url: a.url.clone(),
            artifact_sha256: a.sha256.clone(),
            max_bytes: 256 << 20,
            service_spec_json: serde_json::to_vec(spec).unwrap(),
        }),
    )
}

/// An `Activate` command.
pub fn activate(id: &str, service: &str, release_id: &str) -> pb::Command {
    cmd(
        id,
        pb::command::Kind::Activate(pb::ActivateCommand {
            service: service.into(),
            release_id: release_id.into(),
            include_drained: false,
        }),
    )
}

/// A `Rollback` command.
pub fn rollback(id: &str, service: &str) -> pb::Command {
    cmd(
        id,
        pb::command::Kind::Rollback(pb::RollbackCommand {
            service: service.into(),
            to_release_id: String::new(),
        }),
    )
}

/// A `Drain` command.
pub fn drain(id: &str, service: &str, stop: bool) -> pb::Command {
    cmd(
        id,
        pb::command::Kind::Drain(pb::DrainCommand {
            service: service.into(),
            stop,
        }),
    )
}

/// An `Undrain` command.
pub fn undrain(id: &str, service: &str) -> pb::Command {
    cmd(
        id,
        pb::command::Kind::Undrain(pb::UndrainCommand {
            service: service.into(),
        }),
    )
}

/// An operator's control client (admin).
#[derive(Debug)]
pub struct Control {
    rt: tokio::runtime::Runtime,
    client: pb::control_service_client::ControlServiceClient<tonic::transport::Channel>,
}

impl Control {
    pub fn connect(c: &Cluster) -> Control {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let ca = pki::load_certs(&c.pki_dir().join("ca.crt")).unwrap();
        let id = TlsIdentity::load_bundle(&c.pki_dir().join("operators/admin.pem")).unwrap();
        let url = c.url();
        let client = rt.block_on(async {
            let ch = tls::connect(
                &url,
                tls::client_config(&ca, Some(&id)).unwrap(),
                ChannelOptions::default(),
            )
            .await
            .unwrap();
            pb::control_service_client::ControlServiceClient::new(ch)
        });
        Control { rt, client }
    }

    /// Sends a command and follows it; `on_progress` sees each progress
    /// event as it arrives. Returns the result.
    pub fn send_with(
        &mut self,
        host: &str,
        command: pb::Command,
        mut on_progress: impl FnMut(&pb::Progress),
    ) -> pb::CommandResult {
        let client = &mut self.client;
        self.rt.block_on(async {
            let mut stream = client
                .send_command(pb::SendCommandRequest {
                    host_id: host.into(),
                    command: Some(command),
                    timeout_ms: 60_000,
                })
                .await
                .expect("send_command")
                .into_inner();
            loop {
                let ev = stream
                    .message()
                    .await
                    .expect("command stream")
                    .expect("a result before the end");
                match ev.event {
                    Some(pb::command_event::Event::Progress(p)) => on_progress(&p),
                    Some(pb::command_event::Event::Result(r)) => return r,
                    None => {}
                }
            }
        })
    }

    /// Sends a command and waits for its result.
    pub fn send(&mut self, host: &str, command: pb::Command) -> pb::CommandResult {
        self.send_with(host, command, |_| {})
    }

    /// `SubmitDeployment`, given up by the client after `deadline` (the
    /// request is cancelled, as a client's deadline does; timed to the
    /// microsecond, finer than tokio's timers): None then.
    pub fn submit_within(
        &mut self,
        spec: pb::SpecRequest,
        request_id: &str,
        deadline: std::time::Duration,
    ) -> Option<Result<pb::DeploymentInfo, tonic::Status>> {
        let mut client = self.client.clone();
        let request_id = request_id.to_string();
        self.rt.block_on(async move {
            let req = pb::SubmitDeploymentRequest {
                spec: Some(spec),
                commit_time_ms: 0,
                request_id,
                ..Default::default()
            };
            let call =
                tokio::spawn(
                    async move { client.submit_deployment(req).await.map(|r| r.into_inner()) },
                );
            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(deadline)).await;
            if call.is_finished() {
                return call.await.ok();
            }
            call.abort();
            let _ = call.await;
            None
        })
    }

    /// Any control call, waited for: `f` gets a client of its own.
    pub fn call<T, F>(
        &mut self,
        f: impl FnOnce(pb::control_service_client::ControlServiceClient<tonic::transport::Channel>) -> F,
    ) -> Result<T, tonic::Status>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client.clone();
        self.rt
            .block_on(async move { f(client).await.map(|r| r.into_inner()) })
    }

    /// `SubmitDeployment`, waited for.
    pub fn submit(
        &mut self,
        spec: pb::SpecRequest,
        request_id: &str,
    ) -> Result<pb::DeploymentInfo, tonic::Status> {
        let mut client = self.client.clone();
        let req = pb::SubmitDeploymentRequest {
            spec: Some(spec),
            commit_time_ms: 0,
            request_id: request_id.to_string(),
            ..Default::default()
        };
        self.rt
            .block_on(async move { client.submit_deployment(req).await.map(|r| r.into_inner()) })
    }

    /// The newest deployments of `service`.
    pub fn deployments(&mut self, service: &str) -> Vec<pb::DeploymentInfo> {
        let client = &mut self.client;
        self.rt.block_on(async {
            client
                .list_deployments(pb::ListDeploymentsRequest {
                    service: service.into(),
                    limit: 100,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .deployments
        })
    }
}
