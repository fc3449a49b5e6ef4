//! `request_id` on mutating control calls: the same caller sending the
//! same request id again (after a deadline, a cut connection) gets the
//! answer of the first call, which is not run twice. The same id with
//! another call or other arguments is refused (ALREADY_EXISTS). Answers
//! are kept as long as commands (`[retention] commands`).
//!
//! `SubmitDeployment` keeps its request id with the deployment it stored
//! (rollout.rs); `SendCommand` has its `command_id`, which agents answer
//! from their journal.

use prost::Message;
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::app::App;
use crate::store::{self, Claim};

/// Runs `call` once per (`actor`, `request_id`); empty `request_id`: no
/// key, it just runs. `request` is what makes two calls the same (its
/// canonical bytes: a protobuf message without map fields encodes the same
/// way every time).
pub async fn once<R>(
    app: &App,
    actor: &str,
    method: &'static str,
    request_id: &str,
    request: &[u8],
    call: impl Future<Output = Result<R, Status>>,
) -> Result<R, Status>
where
    R: Message + Default + Clone,
{
    once_with(app, actor, method, request_id, request, call, R::clone, Ok).await
}

/// [`once`], keeping `keep(answer)` (say, without a secret) and answering a
/// retry with `replay(kept)`.
#[allow(clippy::too_many_arguments)]
pub async fn once_with<R>(
    app: &App,
    actor: &str,
    method: &'static str,
    request_id: &str,
    request: &[u8],
    call: impl Future<Output = Result<R, Status>>,
    keep: impl FnOnce(&R) -> R,
    replay: impl FnOnce(R) -> Result<R, Status>,
) -> Result<R, Status>
where
    R: Message + Default,
{
    let Some(rid) = super::check_request_id(request_id)? else {
        return call.await;
    };
    let digest = Sha256::new()
        .chain_update(method.as_bytes())
        .chain_update([0])
        .chain_update(request)
        .finalize()
        .to_vec();
    let internal = |e: store::StoreError| Status::internal(e.to_string());
    let (a, r) = (actor.to_string(), rid.clone());
    let now = cutover_common::time::now_ms();
    let claim = app
        .store
        .call(move |c| store::claim_request(c, &a, &r, method, &digest, now))
        .await
        .map_err(internal)?;
    match claim {
        Claim::Done(answer) => replay(R::decode(&answer[..]).map_err(|e| {
            Status::internal(format!("the stored answer to request_id `{rid}`: {e}"))
        })?),
        Claim::Running => Err(Status::aborted(format!(
            "request_id `{rid}` is still being handled (a retry raced the first try): try again in a moment"
        ))),
        Claim::Other { method: m } => Err(Status::already_exists(format!(
            "request_id `{rid}` was already used for {} with other arguments; use a new request id for a new request",
            if m == method {
                format!("another {m}")
            } else {
                format!("a {m}")
            }
        ))),
        Claim::New => {
            let result = call.await;
            let answer = result.as_ref().ok().map(|r| keep(r).encode_to_vec());
            let (a, r) = (actor.to_string(), rid.clone());
            // Not recorded: a retry runs again (a failure is not kept).
            if let Err(e) = app
                .store
                .call(move |c| store::finish_request(c, &a, &r, answer.as_deref()))
                .await
            {
                tracing::error!(request_id = %rid, error = %e, "recording a request's answer failed");
            }
            result
        }
    }
}
