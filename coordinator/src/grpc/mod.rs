//! The coordinator's gRPC edge: the services agents and operators call.
//! Handlers are thin: authenticate, convert, hand to the domain, convert
//! back. Prost types do not leave this module.

pub mod agent;
pub mod auth;
pub mod control;
pub mod deploy;
pub mod enroll;
pub mod idempotency;

/// The service a command is for.
pub fn command_service(k: &cutover_proto::v1::command::Kind) -> &str {
    use cutover_proto::v1::command::Kind as K;
    match k {
        K::Stage(c) => &c.service,
        K::Activate(c) => &c.service,
        K::Rollback(c) => &c.service,
        K::Drain(c) => &c.service,
        K::Undrain(c) => &c.service,
        K::Stop(c) => &c.service,
        K::RunHook(c) => &c.service,
    }
}

/// The name of a command kind, for logs, audit and metrics.
pub fn command_kind_name(k: &cutover_proto::v1::command::Kind) -> &'static str {
    use cutover_proto::v1::command::Kind as K;
    match k {
        K::Stage(_) => "stage",
        K::Activate(_) => "activate",
        K::Rollback(_) => "rollback",
        K::Drain(_) => "drain",
        K::Undrain(_) => "undrain",
        K::Stop(_) => "stop",
        K::RunHook(_) => "run_hook",
    }
}

/// Checks a name argument of a call (a service or host id): required ones
/// may not be empty, and none may be malformed; the error names the field.
pub fn check_name_arg(field: &str, value: &str, required: bool) -> Result<(), tonic::Status> {
    if value.is_empty() && !required {
        return Ok(());
    }
    if value.is_empty() {
        return Err(tonic::Status::invalid_argument(format!(
            "{field}: expected a name, found nothing"
        )));
    }
    cutover_common::identity::check_name(value)
        .map_err(|e| tonic::Status::invalid_argument(format!("{field}: {e}")))
}

/// A caller's request id: empty (none), or 1 to 128 characters of
/// `A-Z a-z 0-9 . _ : -` (a UUID, a CI run id).
pub fn check_request_id(id: &str) -> Result<Option<String>, tonic::Status> {
    if id.is_empty() {
        return Ok(None);
    }
    let ok = id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if !ok {
        return Err(tonic::Status::invalid_argument(
            "request_id: expected 1 to 128 characters of A-Z, a-z, 0-9, `.`, `_`, `:`, `-`",
        ));
    }
    Ok(Some(id.to_string()))
}
