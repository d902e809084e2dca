//! Breakers by `component.operation`, their health check, and the per-operation facade.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use parking_lot::RwLock;
use tamma_core::{Check, CheckFuture, CheckResult, Validate};

use crate::breaker::{BreakerSnapshot, BreakerState, CircuitBreaker, TransitionListener};
use crate::class::Classify;
use crate::clock::Clock;
use crate::config::ResilienceConfig;
use crate::error::{Error, Result};
use crate::escalation::Escalator;
use crate::handler::ErrorHandler;
use crate::retry::RetryPolicy;

/// Circuit breakers by name (`component.operation`), created on first use with the configured
/// settings (defaults plus the operation's override). Callers keep the returned `Arc` handle: the
/// name lookup is not meant for the hot path.
///
/// It is also the health check `resilience:breakers`: healthy when every breaker is closed, degraded
/// (naming them) when any is open, half-open or isolated.
pub struct BreakerRegistry {
    config: ResilienceConfig,
    clock: Arc<dyn Clock>,
    breakers: RwLock<BTreeMap<String, Arc<CircuitBreaker>>>,
    listeners: Vec<TransitionListener>,
}

impl fmt::Debug for BreakerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("breakers", &self.breakers.read().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BreakerRegistry {
    /// A registry whose breakers take their settings from `config` (`breaker` and `operations`).
    #[must_use]
    pub fn new(config: &ResilienceConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config: config.clone(),
            clock,
            breakers: RwLock::new(BTreeMap::new()),
            listeners: Vec::new(),
        }
    }

    /// The same registry, attaching `listener` to every breaker it creates.
    #[must_use]
    pub fn with_listener(mut self, listener: TransitionListener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// The breaker named `name`, created if it does not exist yet.
    pub fn get(&self, name: &str) -> Arc<CircuitBreaker> {
        if let Some(b) = self.breakers.read().get(name) {
            return Arc::clone(b);
        }
        let mut map = self.breakers.write();
        Arc::clone(map.entry(name.to_owned()).or_insert_with(|| {
            let b = CircuitBreaker::new(
                name,
                &self.config.breaker_for(name),
                Arc::clone(&self.clock),
            );
            for l in &self.listeners {
                b.on_transition(Arc::clone(l));
            }
            Arc::new(b)
        }))
    }

    /// The breaker of `component.operation`, created if needed.
    pub fn get_for(&self, component: &str, operation: &str) -> Arc<CircuitBreaker> {
        self.get(&format!("{component}.{operation}"))
    }

    /// The breaker named `name`, if it exists.
    #[must_use]
    pub fn find(&self, name: &str) -> Option<Arc<CircuitBreaker>> {
        self.breakers.read().get(name).cloned()
    }

    /// Snapshots of every breaker, by name.
    #[must_use]
    pub fn snapshots(&self) -> Vec<BreakerSnapshot> {
        let all: Vec<Arc<CircuitBreaker>> = self.breakers.read().values().cloned().collect();
        all.iter().map(|b| b.snapshot()).collect()
    }
}

impl Check for BreakerRegistry {
    fn name(&self) -> &'static str {
        "resilience:breakers"
    }

    fn check(&self) -> CheckFuture<'_> {
        let snaps = self.snapshots();
        let not_closed: Vec<&BreakerSnapshot> = snaps
            .iter()
            .filter(|s| s.state != BreakerState::Closed)
            .collect();
        let mut result = if not_closed.is_empty() {
            CheckResult::healthy()
        } else {
            let names: Vec<String> = not_closed
                .iter()
                .map(|s| format!("{} ({})", s.name, s.state))
                .collect();
            CheckResult::degraded(format!("circuit breakers not closed: {}", names.join(", ")))
        };
        result = result.observed(not_closed.len(), "breakers");
        for s in &snaps {
            result = result.detail(
                s.name.to_string(),
                serde_json::to_value(s).unwrap_or_default(),
            );
        }
        Box::pin(std::future::ready(result))
    }
}

/// Everything one operation needs: its retry policy and its breaker.
#[derive(Clone, Debug)]
pub struct Operation {
    /// The retry policy.
    pub retry: RetryPolicy,
    /// The circuit breaker.
    pub breaker: Arc<CircuitBreaker>,
}

impl Operation {
    /// Runs `op` with retry around the breaker: each attempt asks the breaker first (an open breaker
    /// rejects at once without calling `op`, and the retry waits for its `retry_after` only if that
    /// fits the time budget), and only retryable errors are retried or count as breaker failures.
    pub fn call<'a, T, E, Fut, F>(&'a self, mut op: F) -> impl Future<Output = Result<T, E>> + 'a
    where
        F: FnMut() -> Fut + 'a,
        Fut: Future<Output = Result<T, E>> + 'a,
        E: Classify + fmt::Display + From<Error> + 'a,
        T: 'a,
    {
        let breaker: &'a CircuitBreaker = &self.breaker;
        self.retry.retry(move || {
            // Ask the breaker when the attempt starts; build the operation's future only if admitted.
            let attempt = match breaker.try_acquire() {
                Ok(permit) => Ok((permit, op())),
                Err(e) => Err(e),
            };
            async move {
                let (permit, fut) = attempt.map_err(E::from)?;
                let out = fut.await;
                permit.record(&out);
                out
            }
        })
    }
}

/// The resilience toolkit built from the `resilience` config section: breakers, the handler
/// registry and the escalator, wired together (breakers opening escalate; handler `Escalate`
/// actions are delivered).
#[derive(Debug, Clone)]
pub struct Resilience {
    config: ResilienceConfig,
    breakers: Arc<BreakerRegistry>,
    handlers: Arc<ErrorHandler>,
    escalator: Arc<Escalator>,
}

impl Resilience {
    /// Builds everything from a validated config.
    ///
    /// # Errors
    /// [`Error::Config`] listing every problem when the config is invalid.
    pub fn new(config: ResilienceConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        let mut problems = Vec::new();
        config.validate("resilience", &mut problems);
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(Error::Config(list.join("; ")));
        }
        let escalator = Arc::new(Escalator::from_config(
            &config.escalation,
            Arc::clone(&clock),
        )?);
        let breakers = Arc::new(
            BreakerRegistry::new(&config, clock).with_listener(escalator.breaker_listener()),
        );
        let handlers =
            Arc::new(ErrorHandler::with_defaults().with_escalator(Arc::clone(&escalator)));
        Ok(Self {
            config,
            breakers,
            handlers,
            escalator,
        })
    }

    /// The retry policy and breaker of `name` (`component.operation`). Call once and keep it.
    #[must_use]
    pub fn operation(&self, name: &str) -> Operation {
        Operation {
            retry: RetryPolicy::new(name, &self.config.retry_for(name)),
            breaker: self.breakers.get(name),
        }
    }

    /// The breaker registry (also the `resilience:breakers` health check).
    #[must_use]
    pub fn breakers(&self) -> &Arc<BreakerRegistry> {
        &self.breakers
    }

    /// The handler registry.
    #[must_use]
    pub fn handlers(&self) -> &Arc<ErrorHandler> {
        &self.handlers
    }

    /// The escalator.
    #[must_use]
    pub fn escalator(&self) -> &Arc<Escalator> {
        &self.escalator
    }

    /// The config it was built from.
    #[must_use]
    pub fn config(&self) -> &ResilienceConfig {
        &self.config
    }
}
