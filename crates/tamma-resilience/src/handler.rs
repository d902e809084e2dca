//! The handler registry: what to do about an error, decided by patterns (the seed's `ErrorHandler`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use regex::Regex;
use serde::Serialize;

use crate::class::{
    Category, Classify, ErrorClass, Severity, classify_message, known_classify,
    retry_after_from_message,
};
use crate::error::{Error, Result};
use crate::escalation::{Escalation, Escalator};

/// Where an error happened: the seed's `ErrorContext`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorContext {
    /// The component (`forwarder`, `events`, `health`).
    pub component: String,
    /// The operation within it (`ship`, `append`).
    pub operation: String,
    /// The request being served, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The user on whose behalf it ran, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Anything else worth logging.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl ErrorContext {
    /// A context for `component.operation`.
    pub fn new(component: impl Into<String>, operation: impl Into<String>) -> Self {
        Self {
            component: component.into(),
            operation: operation.into(),
            ..Self::default()
        }
    }

    /// Adds the request id.
    #[must_use]
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Adds the user id.
    #[must_use]
    pub fn with_user_id(mut self, id: impl Into<String>) -> Self {
        self.user_id = Some(id.into());
        self
    }

    /// Adds one metadata entry.
    #[must_use]
    pub fn with_metadata(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// `component.operation`: the key of breakers and config overrides.
    #[must_use]
    pub fn key(&self) -> String {
        format!("{}.{}", self.component, self.operation)
    }
}

/// What to do about an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Try the operation again after `delay`, at most `max_retries` more times.
    Retry {
        /// Wait before the next try.
        #[serde(serialize_with = "ser_ms")]
        delay: Duration,
        /// Retries allowed for this error.
        max_retries: u32,
    },
    /// Nothing to do beyond reporting the error to the caller (e.g. invalid input): not retried,
    /// not escalated.
    Ignore,
    /// Tell an operator, at this level (the error goes to the escalation notifiers).
    Escalate {
        /// How urgent.
        level: Severity,
    },
    /// The handler repaired the situation (refreshed a token, reconnected, used a fallback): the
    /// caller may continue without retrying the failed call and without reporting it as a failure.
    Recover,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A handler's answer: the action and an optional message for logs (and users, if the class is
/// user visible).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Why, in a sentence.
    pub message: Option<String>,
}

impl Decision {
    /// A decision with no message.
    #[must_use]
    pub const fn new(action: Action) -> Self {
        Self {
            action,
            message: None,
        }
    }

    /// The same decision with a message.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// The outcome of [`ErrorHandler::handle`].
#[derive(Clone, Debug, PartialEq)]
pub struct Handling {
    /// What to do.
    pub action: Action,
    /// The error's class (after any classification override).
    pub class: ErrorClass,
    /// The name of the handler that decided; `None` when the default rules did.
    pub handler: Option<Arc<str>>,
    /// The decision's message, if any.
    pub message: Option<String>,
}

/// What the registry knows about one error: what patterns match against.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorSubject<'a> {
    /// The Rust type name (`std::io::error::Error`); for a `dyn Error`, the first known type in its
    /// source chain, else `"dyn Error"`.
    pub type_name: &'a str,
    /// The machine code ([`Classify::code`]).
    pub code: Option<&'a str>,
    /// The kind name ([`Classify::kind_name`]).
    pub kind_name: Option<&'a str>,
    /// The error's message (`Display`).
    pub message: String,
    /// The error's class.
    pub class: ErrorClass,
}

impl<'a> ErrorSubject<'a> {
    /// The subject of a typed error.
    pub fn of<E: Classify + fmt::Display + 'static>(error: &'a E) -> Self {
        Self {
            type_name: std::any::type_name::<E>(),
            code: error.code(),
            kind_name: error.kind_name(),
            message: error.to_string(),
            class: error.class(),
        }
    }

    /// The subject of any error: the first error in its source chain with a known class supplies
    /// type, code, kind and class; otherwise the message is classified like the seed does.
    pub fn of_dyn(error: &'a (dyn std::error::Error + 'static)) -> Self {
        let message = error.to_string();
        let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = current {
            if let Some(known) = known_classify(e) {
                return Self {
                    type_name: known_type_name(e),
                    code: known.code(),
                    kind_name: known.kind_name(),
                    class: known.class(),
                    message,
                };
            }
            current = e.source();
        }
        let class = classify_message(&message);
        Self {
            type_name: "dyn Error",
            code: None,
            kind_name: None,
            message,
            class,
        }
    }
}

fn known_type_name(e: &(dyn std::error::Error + 'static)) -> &'static str {
    if e.is::<std::io::Error>() {
        std::any::type_name::<std::io::Error>()
    } else if e.is::<Error>() {
        std::any::type_name::<Error>()
    } else if e.is::<reqwest::Error>() {
        std::any::type_name::<reqwest::Error>()
    } else {
        std::any::type_name::<tokio::time::error::Elapsed>()
    }
}

/// Which errors a handler (or a classification override) applies to. Every criterion given must
/// match; a pattern with none matches every error.
#[derive(Clone, Debug)]
pub struct ErrorPattern {
    /// The pattern's unique name (handlers are added and removed by it).
    pub name: String,
    /// The error's Rust type: its full path (`std::io::error::Error`) or last segment (`Error`,
    /// `io::Error`).
    pub error_type: Option<String>,
    /// The error's code ([`Classify::code`]), exactly.
    pub code: Option<String>,
    /// The error's kind name ([`Classify::kind_name`]), exactly.
    pub kind_name: Option<String>,
    /// A regex the error's message must match.
    pub message: Option<Regex>,
    /// The error's severity.
    pub severity: Option<Severity>,
    /// The error's category.
    pub category: Option<Category>,
}

impl ErrorPattern {
    /// A pattern named `name` that matches every error until criteria are added.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            error_type: None,
            code: None,
            kind_name: None,
            message: None,
            severity: None,
            category: None,
        }
    }

    /// Also require this Rust type.
    #[must_use]
    pub fn error_type(mut self, t: impl Into<String>) -> Self {
        self.error_type = Some(t.into());
        self
    }

    /// Also require this code.
    #[must_use]
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Also require this kind name.
    #[must_use]
    pub fn kind_name(mut self, kind: impl Into<String>) -> Self {
        self.kind_name = Some(kind.into());
        self
    }

    /// Also require the message to match `regex`.
    ///
    /// # Errors
    /// [`Error::InvalidPattern`] when the regex does not compile.
    pub fn message(mut self, regex: &str) -> Result<Self> {
        self.message = Some(Regex::new(regex).map_err(|source| Error::InvalidPattern {
            name: self.name.clone(),
            source,
        })?);
        Ok(self)
    }

    /// Also require this severity.
    #[must_use]
    pub fn severity(mut self, s: Severity) -> Self {
        self.severity = Some(s);
        self
    }

    /// Also require this category.
    #[must_use]
    pub fn category(mut self, c: Category) -> Self {
        self.category = Some(c);
        self
    }

    /// Whether `subject` matches every criterion given.
    #[must_use]
    pub fn matches(&self, subject: &ErrorSubject<'_>) -> bool {
        if let Some(t) = &self.error_type {
            let full = subject.type_name;
            let ok = full == t || full.ends_with(&format!("::{t}")) || short_io_name(full, t);
            if !ok {
                return false;
            }
        }
        if self
            .code
            .as_deref()
            .is_some_and(|c| subject.code != Some(c))
        {
            return false;
        }
        if self
            .kind_name
            .as_deref()
            .is_some_and(|k| subject.kind_name != Some(k))
        {
            return false;
        }
        if self.severity.is_some_and(|s| subject.class.severity != s) {
            return false;
        }
        if self.category.is_some_and(|c| subject.class.category != c) {
            return false;
        }
        if self
            .message
            .as_ref()
            .is_some_and(|re| !re.is_match(&subject.message))
        {
            return false;
        }
        true
    }
}

/// `io::Error` names `std::io::error::Error` (the module path is private).
fn short_io_name(full: &str, wanted: &str) -> bool {
    wanted == "io::Error" && full == "std::io::error::Error"
}

/// The future a [`Handler`] returns.
pub type HandlerFuture<'a> = Pin<
    Box<
        dyn Future<Output = std::result::Result<Decision, Box<dyn std::error::Error + Send + Sync>>>
            + Send
            + 'a,
    >,
>;

/// Decides what to do about an error matched by its pattern. Object safe and async (a handler may
/// repair things: refresh a token, reconnect) through a boxed future; for a plain function use
/// [`handler_fn`]. A handler that fails is logged and the default rules decide instead.
pub trait Handler: Send + Sync + 'static {
    /// Decides.
    fn handle<'a>(
        &'a self,
        error: &'a ErrorSubject<'a>,
        context: &'a ErrorContext,
    ) -> HandlerFuture<'a>;
}

struct FnHandler<F>(F);

impl<F> Handler for FnHandler<F>
where
    F: Fn(&ErrorSubject<'_>, &ErrorContext) -> Decision + Send + Sync + 'static,
{
    fn handle<'a>(
        &'a self,
        error: &'a ErrorSubject<'a>,
        context: &'a ErrorContext,
    ) -> HandlerFuture<'a> {
        let d = (self.0)(error, context);
        Box::pin(async move { Ok(d) })
    }
}

/// A [`Handler`] from a synchronous function.
pub fn handler_fn<F>(f: F) -> Arc<dyn Handler>
where
    F: Fn(&ErrorSubject<'_>, &ErrorContext) -> Decision + Send + Sync + 'static,
{
    Arc::new(FnHandler(f))
}

#[derive(Clone)]
struct Entry {
    pattern: ErrorPattern,
    handler: Arc<dyn Handler>,
}

/// The registry of error handlers (the seed's `ErrorHandler`).
///
/// [`handle`](Self::handle) classifies the error (applying any classification override), logs it at
/// its severity's level, and asks the handlers whose pattern matches — the most recently added
/// first, so an added handler overrides a default one — falling back to the default rules:
/// retryable → retry after 1 s up to 3 times; escalation required → escalate at the error's
/// severity; otherwise ignore. An `Escalate` action is delivered to the [`Escalator`], if one is
/// attached.
///
/// [`with_defaults`](Self::with_defaults) installs the seed's handlers: `network_timeout` (timeouts:
/// retry after 1 s, 3 times), `network_connection_refused` (retry after 5 s, twice), `rate_limit`
/// (retry after the server's retry-after, else 60 s, once), `authentication_failed` (escalate,
/// medium) and `validation_error` (ignore).
pub struct ErrorHandler {
    entries: RwLock<Vec<Entry>>,
    classifications: RwLock<Vec<(ErrorPattern, ErrorClass)>>,
    escalator: Option<Arc<Escalator>>,
}

impl fmt::Debug for ErrorHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorHandler")
            .field("handlers", &self.names())
            .field("classifications", &self.classifications.read().len())
            .field("escalator", &self.escalator.is_some())
            .finish()
    }
}

impl Default for ErrorHandler {
    fn default() -> Self {
        Self::with_defaults()
    }
}

/// The seed's delay for a rate limit without a retry-after.
pub const RATE_LIMIT_DEFAULT_DELAY: Duration = Duration::from_secs(60);

impl ErrorHandler {
    /// A registry with no handlers: only the default rules decide.
    #[must_use]
    pub fn empty() -> Self {
        Self {
            entries: RwLock::new(Vec::new()),
            classifications: RwLock::new(Vec::new()),
            escalator: None,
        }
    }

    /// A registry with the seed's default handlers.
    #[must_use]
    pub fn with_defaults() -> Self {
        let h = Self::empty();
        h.add(
            ErrorPattern::named("network_timeout").category(Category::Timeout),
            handler_fn(|_, _| {
                Decision::new(Action::Retry {
                    delay: Duration::from_secs(1),
                    max_retries: 3,
                })
            }),
        );
        h.add(
            ErrorPattern::named("network_connection_refused")
                .message(r"(?i)econnrefused|connection refused")
                // A literal pattern: compiling it cannot fail.
                .expect("static regex"),
            handler_fn(|_, _| {
                Decision::new(Action::Retry {
                    delay: Duration::from_secs(5),
                    max_retries: 2,
                })
            }),
        );
        h.add(
            ErrorPattern::named("rate_limit").category(Category::RateLimit),
            handler_fn(|e, _| {
                let delay = e
                    .class
                    .retry_after
                    .or_else(|| retry_after_from_message(&e.message))
                    .unwrap_or(RATE_LIMIT_DEFAULT_DELAY);
                Decision::new(Action::Retry {
                    delay,
                    max_retries: 1,
                })
            }),
        );
        h.add(
            ErrorPattern::named("authentication_failed").category(Category::Authentication),
            handler_fn(|_, _| {
                Decision::new(Action::Escalate {
                    level: Severity::Medium,
                })
                .with_message("Authentication failed - check credentials")
            }),
        );
        h.add(
            ErrorPattern::named("validation_error").category(Category::Validation),
            handler_fn(|_, _| {
                Decision::new(Action::Ignore).with_message("Validation error - user input invalid")
            }),
        );
        h
    }

    /// The same registry, delivering `Escalate` actions to `escalator`.
    #[must_use]
    pub fn with_escalator(mut self, escalator: Arc<Escalator>) -> Self {
        self.escalator = Some(escalator);
        self
    }

    /// Adds a handler; one with the same pattern name is replaced. The newest handler is asked first.
    pub fn add(&self, pattern: ErrorPattern, handler: Arc<dyn Handler>) {
        let mut entries = self.entries.write();
        entries.retain(|e| e.pattern.name != pattern.name);
        tracing::debug!(target: "tamma_resilience::handler", pattern = %pattern.name, "error handler added");
        entries.push(Entry { pattern, handler });
    }

    /// Removes the handler named `name`; returns whether there was one.
    pub fn remove(&self, name: &str) -> bool {
        let mut entries = self.entries.write();
        let before = entries.len();
        entries.retain(|e| e.pattern.name != name);
        let removed = entries.len() != before;
        if removed {
            tracing::debug!(target: "tamma_resilience::handler", pattern = name, "error handler removed");
        }
        removed
    }

    /// The handlers' pattern names, newest first (the order they are asked in).
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.entries
            .read()
            .iter()
            .rev()
            .map(|e| e.pattern.name.clone())
            .collect()
    }

    /// Overrides the class of errors matching `pattern` (replacing one with the same name); checked
    /// newest first, before any handler sees the error.
    pub fn add_classification(&self, pattern: ErrorPattern, class: ErrorClass) {
        let mut c = self.classifications.write();
        c.retain(|(p, _)| p.name != pattern.name);
        c.push((pattern, class));
    }

    /// Removes a classification override; returns whether there was one.
    pub fn remove_classification(&self, name: &str) -> bool {
        let mut c = self.classifications.write();
        let before = c.len();
        c.retain(|(p, _)| p.name != name);
        c.len() != before
    }

    /// The class of `subject`, after classification overrides.
    #[must_use]
    pub fn classify(&self, subject: &ErrorSubject<'_>) -> ErrorClass {
        let c = self.classifications.read();
        c.iter()
            .rev()
            .find(|(p, _)| p.matches(subject))
            .map_or(subject.class, |(_, class)| {
                // Keep a server's retry-after: an override describes the kind of error, not this instance.
                ErrorClass {
                    retry_after: class.retry_after.or(subject.class.retry_after),
                    ..*class
                }
            })
    }

    /// The default rules (the seed's `getDefaultHandling`).
    #[must_use]
    pub fn default_action(class: &ErrorClass) -> Action {
        if class.retryable {
            Action::Retry {
                delay: class.retry_after.unwrap_or(Duration::from_secs(1)),
                max_retries: 3,
            }
        } else if class.escalation_required {
            Action::Escalate {
                level: class.severity,
            }
        } else {
            Action::Ignore
        }
    }

    /// Decides what to do about a typed error.
    pub async fn handle<E: Classify + fmt::Display + 'static>(
        &self,
        error: &E,
        context: &ErrorContext,
    ) -> Handling {
        self.handle_subject(&ErrorSubject::of(error), context).await
    }

    /// Decides what to do about any error (errors from outside tamma).
    pub async fn handle_dyn(
        &self,
        error: &(dyn std::error::Error + 'static),
        context: &ErrorContext,
    ) -> Handling {
        self.handle_subject(&ErrorSubject::of_dyn(error), context)
            .await
    }

    /// Decides what to do about an error described by `subject`.
    pub async fn handle_subject(
        &self,
        subject: &ErrorSubject<'_>,
        context: &ErrorContext,
    ) -> Handling {
        let class = self.classify(subject);
        let subject = ErrorSubject {
            class,
            ..subject.clone()
        };
        log_error(&subject, context);
        let found = {
            let entries = self.entries.read();
            entries
                .iter()
                .rev()
                .find(|e| e.pattern.matches(&subject))
                .cloned()
        };
        let handling = match found {
            Some(entry) => match entry.handler.handle(&subject, context).await {
                Ok(d) => Handling {
                    action: d.action,
                    class,
                    handler: Some(entry.pattern.name.as_str().into()),
                    message: d.message,
                },
                Err(e) => {
                    tracing::error!(
                        target: "tamma_resilience::handler",
                        handler = %entry.pattern.name,
                        original_error = %subject.message,
                        handler_error = %e,
                        component = %context.component,
                        operation = %context.operation,
                        "error handler failed; default rules decide"
                    );
                    Handling {
                        action: Self::default_action(&class),
                        class,
                        handler: None,
                        message: None,
                    }
                }
            },
            None => Handling {
                action: Self::default_action(&class),
                class,
                handler: None,
                message: None,
            },
        };
        if let (Action::Escalate { level }, Some(escalator)) = (handling.action, &self.escalator) {
            let esc = Escalation::new(
                context.key(),
                level,
                handling
                    .message
                    .clone()
                    .unwrap_or_else(|| subject.message.clone()),
            )
            .with_class(class)
            .with_context(context);
            // Delivery problems are logged by the escalator; the decision stands either way.
            let _ = escalator.escalate(esc).await;
        }
        handling
    }
}

fn log_error(s: &ErrorSubject<'_>, ctx: &ErrorContext) {
    macro_rules! emit {
        ($level:ident) => {
            tracing::$level!(
                target: "tamma_resilience::handler",
                component = %ctx.component,
                operation = %ctx.operation,
                request_id = ctx.request_id.as_deref(),
                error = %s.message,
                error_type = s.type_name,
                code = s.code,
                severity = s.class.severity.as_str(),
                category = s.class.category.as_str(),
                retryable = s.class.retryable,
                "error occurred"
            )
        };
    }
    match s.class.severity {
        Severity::Low => emit!(info),
        Severity::Medium => emit!(warn),
        Severity::High | Severity::Critical => emit!(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_all_criteria() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let s = ErrorSubject::of(&io);
        assert!(ErrorPattern::named("a").error_type("io::Error").matches(&s));
        assert!(
            ErrorPattern::named("a")
                .error_type("std::io::error::Error")
                .matches(&s)
        );
        assert!(
            ErrorPattern::named("a")
                .code("ECONNREFUSED")
                .kind_name("ConnectionRefused")
                .matches(&s)
        );
        assert!(
            !ErrorPattern::named("a")
                .code("ECONNREFUSED")
                .category(Category::Timeout)
                .matches(&s)
        );
        assert!(
            ErrorPattern::named("a")
                .message("(?i)refused")
                .unwrap()
                .matches(&s)
        );
        assert!(ErrorPattern::named("a").message("(").is_err());
    }

    #[test]
    fn add_replaces_and_remove_removes() {
        let h = ErrorHandler::with_defaults();
        assert_eq!(h.names().len(), 5);
        h.add(
            ErrorPattern::named("rate_limit"),
            handler_fn(|_, _| Decision::new(Action::Ignore)),
        );
        assert_eq!(h.names().len(), 5);
        assert_eq!(h.names()[0], "rate_limit");
        assert!(h.remove("rate_limit"));
        assert!(!h.remove("rate_limit"));
        assert_eq!(h.names().len(), 4);
    }
}
