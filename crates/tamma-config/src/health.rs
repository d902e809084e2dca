//! The config reload status as a health check.

use tamma_core::{Check, CheckFuture, CheckResult};

use crate::manager::{ConfigManager, ConfigRoot};

/// A health check that is degraded while the last config reload failed (the old config is still in
/// force) and names the problems; healthy otherwise.
pub struct ConfigCheck<T> {
    manager: ConfigManager<T>,
}

impl<T: ConfigRoot> ConfigCheck<T> {
    /// A check over `manager`.
    #[must_use]
    pub fn new(manager: ConfigManager<T>) -> Self {
        Self { manager }
    }
}

impl<T: ConfigRoot> Check for ConfigCheck<T> {
    fn name(&self) -> &str {
        "config:reload"
    }

    fn check(&self) -> CheckFuture<'_> {
        let st = self.manager.reload_status();
        Box::pin(async move {
            let result = match &st.last_error {
                Some(problems) => CheckResult::degraded(format!(
                    "last config reload rejected ({} problem{}); previous config still in force",
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" }
                ))
                .detail("problems", problems.clone()),
                None => CheckResult::healthy(),
            };
            let result = result
                .observed(st.generation, "generation")
                .detail("failures", st.failures);
            if st.restart_required.is_empty() {
                result
            } else {
                result.detail("restartRequired", st.restart_required.clone())
            }
        })
    }
}
