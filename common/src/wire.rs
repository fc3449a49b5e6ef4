//! Names and bounds the coordinator and the agent (and API clients) agree
//! on beyond the proto: response headers of several coordinators, and the
//! bounds of `cutover logs`.

/// A standby's refusal names the leader's URL in this header.
pub const LEADER_HEADER: &str = "cutover-leader";

/// A client names a leader it could not reach in this header: a standby
/// then answers once another leads.
pub const DEAD_LEADER_HEADER: &str = "cutover-dead-leader";

/// The most lines of output a `LogsRequest` may ask for first.
pub const LOGS_MAX_TAIL: u32 = 5000;

/// Longer lines of output are cut at this many bytes.
pub const LOGS_MAX_LINE: usize = 4096;
