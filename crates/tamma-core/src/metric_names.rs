//! The metric-name catalogue: every metric any tamma crate records, in one place.
//!
//! Names follow `tamma_<subsystem>_<name>_<unit>[_total]`. Labels are bounded: never an event id, a user
//! id or any other value with unbounded cardinality. [`CATALOGUE`] lists each name with its kind and help
//! text so the exporter can describe them.

/// The kind of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic counter.
    Counter,
    /// Value that goes up and down.
    Gauge,
    /// Distribution of observations.
    Histogram,
}

macro_rules! catalogue {
    ($( $(#[$doc:meta])* $ident:ident = $name:literal, $kind:ident, $help:literal; )*) => {
        $( $(#[$doc])* pub const $ident: &str = $name; )*
        /// Every metric: name, kind, help text.
        pub const CATALOGUE: &[(&str, Kind, &str)] = &[ $( ($name, Kind::$kind, $help), )* ];
    };
}

catalogue! {
    /// Config reloads by `outcome` (`success`, `failure`).
    CONFIG_RELOADS_TOTAL = "tamma_config_reloads_total", Counter, "Config reloads by outcome.";
    /// Config reloads that failed validation and were rolled back.
    CONFIG_RELOAD_FAILURES_TOTAL = "tamma_config_reload_failures_total", Counter, "Config reloads rejected and rolled back.";
    /// Retries by `operation` and error `category`.
    RESILIENCE_RETRIES_TOTAL = "tamma_resilience_retries_total", Counter, "Retries by operation and error category.";
    /// Breaker state by `breaker`: 0 closed, 1 open, 2 half-open, 3 isolated.
    RESILIENCE_BREAKER_STATE = "tamma_resilience_breaker_state", Gauge, "Circuit breaker state (0 closed, 1 open, 2 half-open, 3 isolated).";
    /// Breaker transitions by `breaker`, `from`, `to`.
    RESILIENCE_BREAKER_TRANSITIONS_TOTAL = "tamma_resilience_breaker_transitions_total", Counter, "Circuit breaker state transitions.";
    /// Calls rejected by an open breaker, by `breaker`.
    RESILIENCE_BREAKER_REJECTED_TOTAL = "tamma_resilience_breaker_rejected_total", Counter, "Calls rejected by an open circuit breaker.";
    /// Escalations by `severity`.
    RESILIENCE_ESCALATIONS_TOTAL = "tamma_resilience_escalations_total", Counter, "Escalations delivered to notifiers, by severity.";
    /// Log lines written by `output`.
    LOG_LINES_TOTAL = "tamma_log_lines_total", Counter, "Log lines written, by output.";
    /// Log lines dropped by `output` (queue full under drop_newest).
    LOG_DROPPED_TOTAL = "tamma_log_dropped_total", Counter, "Log lines dropped because an output queue was full.";
    /// Log output write errors by `output`.
    LOG_ERRORS_TOTAL = "tamma_log_errors_total", Counter, "Log output write errors.";
    /// Current depth of each log output's queue.
    LOG_QUEUE_DEPTH = "tamma_log_queue_depth", Gauge, "Lines waiting in a log output's queue.";
    /// Events appended, by `store`.
    EVENTS_APPENDED_TOTAL = "tamma_events_appended_total", Counter, "Events appended to the store.";
    /// Appends rejected, by `reason` (`condition_failed`, `duplicate_event_id`, `invalid`).
    EVENTS_APPEND_REJECTED_TOTAL = "tamma_events_append_rejected_total", Counter, "Appends rejected, by reason.";
    /// Events read, by `store`.
    EVENTS_READ_TOTAL = "tamma_events_read_total", Counter, "Events returned by reads.";
    /// Events delivered to subscriptions.
    EVENTS_SUBSCRIBED_TOTAL = "tamma_events_subscribed_total", Counter, "Events delivered to subscriptions.";
    /// Events per group commit.
    EVENTS_BATCH_SIZE = "tamma_events_batch_size", Histogram, "Events per group commit.";
    /// Time to commit a group, seconds.
    EVENTS_COMMIT_SECONDS = "tamma_events_commit_seconds", Histogram, "Time to commit one group of appends.";
    /// Each durable sync of the embedded store's write-ahead log (one per group commit), seconds.
    EVENTS_WAL_SYNC_SECONDS = "tamma_events_wal_sync_seconds", Histogram, "Time of each durable sync (fdatasync) of the embedded store's write-ahead log.";
    /// Store errors by error `category`.
    EVENTS_STORE_ERRORS_TOTAL = "tamma_events_store_errors_total", Counter, "Event store errors by class.";
    /// Events removed by retention.
    EVENTS_RETENTION_REMOVED_TOTAL = "tamma_events_retention_removed_total", Counter, "Events removed by retention.";
    /// Emitter pending events.
    EMITTER_PENDING = "tamma_emitter_pending", Gauge, "Events accepted by the emitter and not yet stored.";
    /// Emitter flush latency, seconds.
    EMITTER_FLUSH_SECONDS = "tamma_emitter_flush_seconds", Histogram, "Emitter flush latency.";
    /// Events the emitter accepted and could not store, by `reason` (the error code).
    EMITTER_FAILED_TOTAL = "tamma_emitter_failed_total", Counter, "Events the emitter accepted and could not store, by reason.";
    /// Subscriber lag in events, by `subscriber`.
    EMITTER_SUBSCRIBER_LAG = "tamma_emitter_subscriber_lag", Gauge, "Events a subscriber is behind the head.";
    /// HTTP requests by `route`, `method`, `status`.
    HTTP_REQUESTS_TOTAL = "tamma_http_requests_total", Counter, "HTTP requests by route, method and status.";
    /// HTTP request latency by `route`, seconds.
    HTTP_REQUEST_DURATION_SECONDS = "tamma_http_request_duration_seconds", Histogram, "HTTP request latency.";
    /// Health check duration by `check`, seconds.
    HEALTH_CHECK_DURATION_SECONDS = "tamma_health_check_duration_seconds", Histogram, "Health check run time.";
    /// Health check status by `check`: 0 healthy, 1 degraded, 2 unhealthy.
    HEALTH_CHECK_STATUS = "tamma_health_check_status", Gauge, "Health check status (0 healthy, 1 degraded, 2 unhealthy).";
    /// Process resident memory, bytes.
    PROCESS_RESIDENT_MEMORY_BYTES = "tamma_process_resident_memory_bytes", Gauge, "Resident memory of the process.";
    /// Process CPU time, seconds.
    PROCESS_CPU_SECONDS_TOTAL = "tamma_process_cpu_seconds_total", Counter, "CPU time used by the process.";
    /// Open file descriptors.
    PROCESS_OPEN_FDS = "tamma_process_open_fds", Gauge, "Open file descriptors.";
    /// Seconds since the process started.
    PROCESS_UPTIME_SECONDS = "tamma_process_uptime_seconds", Gauge, "Seconds since start.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for (name, kind, help) in CATALOGUE {
            assert!(name.starts_with("tamma_"), "{name}");
            assert!(seen.insert(name), "duplicate {name}");
            assert!(!help.is_empty());
            if *kind == Kind::Counter {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
    }
}
