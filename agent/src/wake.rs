//! Waking the runtime's supervision pass when something needs acting on at
//! once (an instance exited, a probe changed its verdict, a restart's
//! backoff ended), instead of at its next periodic pass.
//!
//! A handle, not process-global state: it is cloned into the tasks that
//! watch instances and probes, and two runtimes in one process (tests) do
//! not wake each other.

use std::sync::Arc;

use tokio::sync::Notify;

/// Wakes one runtime's supervision. Spurious wakes are harmless (a pass
/// finds nothing to do).
#[derive(Debug, Clone, Default)]
pub struct Supervision(Arc<Notify>);

impl Supervision {
    /// Asks for a supervision pass now.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Until a pass is asked for (a wake before this is not lost).
    pub async fn woken(&self) {
        self.0.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wake_reaches_its_own_runtime_only_and_is_not_lost() {
        let (a, b) = (Supervision::default(), Supervision::default());
        a.wake();
        // Asked before anyone waited: still delivered.
        tokio::time::timeout(std::time::Duration::from_secs(1), a.woken())
            .await
            .expect("woken");
        b.wake();
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(1), a.woken())
                .await
                .is_err(),
            "another runtime's wake reached this one"
        );
    }
}
