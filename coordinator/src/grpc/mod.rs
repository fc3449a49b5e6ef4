//! The coordinator's gRPC edge: the services agents and operators call.
//! Handlers are thin: authenticate, convert, hand to the domain, convert
//! back. Prost types do not leave this module.

pub mod agent;
pub mod auth;
pub mod control;
pub mod convert;
pub mod deploy;
pub mod enroll;
pub mod idempotency;
pub mod spec;

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

/// One page of a list: at most `size` items after the item keyed `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub size: u32,
    pub after: Option<String>,
}

/// Reads a list request's paging: `page_size` (else the older `limit`,
/// else `default`; at most 1000) and `page_token`, which must be one this
/// list (`kind`) gave out.
pub fn page(
    kind: &str,
    page_size: u32,
    limit: u32,
    token: &str,
    default: u32,
) -> Result<Page, tonic::Status> {
    let size = match (page_size, limit) {
        (0, 0) => default,
        (0, n) | (n, _) => n,
    }
    .min(1000);
    if token.is_empty() {
        return Ok(Page { size, after: None });
    }
    let bad = || {
        tonic::Status::invalid_argument(format!(
            "page_token: not a next_page_token of this list ({kind}); start again without one"
        ))
    };
    let hexed = token
        .strip_prefix(kind)
        .and_then(|t| t.strip_prefix('.'))
        .ok_or_else(bad)?;
    let key = hex::decode(hexed)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    Ok(Page {
        size,
        after: Some(key),
    })
}

/// The next_page_token of a list (`kind`) whose last item is keyed `key`.
pub fn page_token(kind: &str, key: &str) -> String {
    format!("{kind}.{}", hex::encode(key))
}

impl Page {
    /// The key to continue after, for lists keyed by a number (newest
    /// first: the items before it).
    pub fn before(&self) -> Result<Option<i64>, tonic::Status> {
        self.after
            .as_deref()
            .map(|k| {
                k.parse::<i64>().map_err(|_| {
                    tonic::Status::invalid_argument(
                        "page_token: not a next_page_token of this list",
                    )
                })
            })
            .transpose()
    }

    /// Cuts `rows` (fetched as `size + 1`) to the page, with the token of
    /// the next page (empty on the last), keyed by `key`.
    pub fn finish<T>(
        &self,
        kind: &str,
        mut rows: Vec<T>,
        key: impl Fn(&T) -> String,
    ) -> (Vec<T>, String) {
        let more = rows.len() > self.size as usize;
        rows.truncate(self.size as usize);
        let next = match rows.last() {
            Some(last) if more => page_token(kind, &key(last)),
            _ => String::new(),
        };
        (rows, next)
    }
}

#[cfg(test)]
mod paging {
    use super::*;

    #[test]
    fn a_page_token_goes_back_to_its_own_list_only() {
        let t = page_token("deployments", "42");
        assert_eq!(
            page("deployments", 10, 0, &t, 50).unwrap(),
            Page {
                size: 10,
                after: Some("42".into())
            }
        );
        assert!(page("hosts", 10, 0, &t, 50).is_err());
        assert!(page("deployments", 10, 0, "deployments.zz", 50).is_err());
        // Sizes: page_size, else the older limit, else the default; capped.
        assert_eq!(page("x", 0, 0, "", 50).unwrap().size, 50);
        assert_eq!(page("x", 0, 7, "", 50).unwrap().size, 7);
        assert_eq!(page("x", 5000, 0, "", 50).unwrap().size, 1000);
    }
}
