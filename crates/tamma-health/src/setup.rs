//! Building a [`HealthChecker`] from the `monitoring.healthChecks` section.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tamma_core::{Check, CheckFuture};

use crate::checker::{CheckOptions, HealthChecker};
use crate::config::{CheckDefinition, CheckKind, HealthChecksConfig};
use crate::error::{Error, Result};
use crate::net::{HttpCheck, TcpCheck, http_client};
use crate::sysfs::SystemReader;
use crate::system::{CpuCheck, DiskCheck, MemoryCheck};

/// What the runtime hands in when the checker is built from config: the service identity, the data
/// directory, and the checks only code can build (`database` checks over the store's own pool,
/// `custom` checks).
#[derive(Clone)]
pub struct CheckContext {
    version: String,
    release_id: Option<String>,
    data_dir: Option<PathBuf>,
    system: SystemReader,
    registered: HashMap<String, Arc<dyn Check>>,
    databases: HashMap<String, Arc<dyn Check>>,
}

impl std::fmt::Debug for CheckContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckContext")
            .field("version", &self.version)
            .field("data_dir", &self.data_dir)
            .field("registered", &self.registered.keys().collect::<Vec<_>>())
            .field("databases", &self.databases.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl CheckContext {
    /// A context for a service at `version`, reading this machine's cgroups.
    pub fn new(version: impl Into<String>) -> Self {
        Self {
            version: version.into(),
            release_id: None,
            data_dir: None,
            system: SystemReader::live(),
            registered: HashMap::new(),
            databases: HashMap::new(),
        }
    }

    /// The `releaseId` of reports.
    #[must_use]
    pub fn release_id(mut self, release_id: impl Into<String>) -> Self {
        self.release_id = Some(release_id.into());
        self
    }

    /// The data directory: the built-in disk check measures its filesystem, and so does a `disk` check
    /// without a path.
    #[must_use]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Reads cgroups and `/proc` below `reader`'s root instead of `/`.
    #[must_use]
    pub fn system(mut self, reader: SystemReader) -> Self {
        self.system = reader;
        self
    }

    /// Makes `check` available to `custom` definitions under its [`Check::name`].
    #[must_use]
    pub fn register(mut self, check: Arc<dyn Check>) -> Self {
        self.registered.insert(check.name().to_owned(), check);
        self
    }

    /// Makes `check` (a ping over the store's existing pool) available to `database` definitions
    /// naming `store`.
    #[must_use]
    pub fn database(mut self, store: impl Into<String>, check: Arc<dyn Check>) -> Self {
        self.databases.insert(store.into(), check);
        self
    }
}

/// A check under another name (the definition's).
struct Named {
    name: String,
    inner: Arc<dyn Check>,
}

impl Check for Named {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        self.inner.check()
    }
}

fn named(name: &str, inner: &Arc<dyn Check>) -> Arc<dyn Check> {
    if inner.name() == name {
        Arc::clone(inner)
    } else {
        Arc::new(Named {
            name: name.to_owned(),
            inner: Arc::clone(inner),
        })
    }
}

impl HealthChecker {
    /// A checker with the section's defaults, its configured checks and (when `systemChecks` is on)
    /// the built-in `memory:utilization`, `cpu:utilization` and `disk:utilization` checks, each
    /// unless a check of that type is configured; the disk one only when a data directory is given.
    /// Call [`start_monitoring`](Self::start_monitoring) to run them in the background.
    ///
    /// The section should have been validated ([`tamma_core::Validate`]) first.
    ///
    /// # Errors
    /// [`Error::MissingProvider`] when a `database` or `custom` check names nothing registered,
    /// [`Error::MissingDiskPath`], [`Error::HttpClient`], and the errors of
    /// [`add_check`](Self::add_check).
    pub fn from_config(config: &HealthChecksConfig, context: &CheckContext) -> Result<Self> {
        let mut builder = Self::builder(context.version.clone())
            .interval(config.interval.as_duration())
            .timeout(config.timeout.as_duration())
            .fresh_min_interval(config.fresh_min_interval.as_duration());
        if let Some(r) = &context.release_id {
            builder = builder.release_id(r.clone());
        }
        let checker = builder.build();
        let mut client: Option<reqwest::Client> = None;
        for def in &config.checks {
            let check = build_check(def, context, &mut client)?;
            checker.add_check(check, definition_options(def))?;
        }
        if config.system_checks {
            let has = |t: &str| config.checks.iter().any(|d| d.kind.type_name() == t);
            if !has("memory") {
                let check = MemoryCheck::new("memory:utilization", context.system.clone());
                checker.add_check(Arc::new(check), MemoryCheck::default_options())?;
            }
            if !has("cpu") {
                let window =
                    std::time::Duration::from_millis(250).min(config.timeout.as_duration() / 2);
                let check = CpuCheck::new("cpu:utilization", context.system.clone(), window);
                checker.add_check(Arc::new(check), CpuCheck::default_options())?;
            }
            if !has("disk")
                && let Some(dir) = &context.data_dir
            {
                let check = DiskCheck::new("disk:utilization", dir.clone());
                checker.add_check(Arc::new(check), DiskCheck::default_options())?;
            }
        }
        Ok(checker)
    }
}

fn definition_options(def: &CheckDefinition) -> CheckOptions {
    let (component_type, measurement) = match &def.kind {
        CheckKind::Http(_) | CheckKind::Tcp(_) => ("component", "responseTime"),
        CheckKind::Database(_) => ("datastore", "status"),
        CheckKind::Custom(_) => ("component", "status"),
        CheckKind::Memory(_) | CheckKind::Cpu(_) | CheckKind::Disk(_) => ("system", "utilization"),
    };
    let mut opts = CheckOptions::new()
        .critical(def.is_critical())
        .groups(def.groups.iter().cloned())
        .component_type(component_type)
        .measurement(measurement);
    if let Some(t) = def.effective_thresholds() {
        opts = opts.thresholds(t);
    }
    if let Some(i) = def.interval {
        opts = opts.interval(i.as_duration());
    }
    if let Some(t) = def.timeout {
        opts = opts.timeout(t.as_duration());
    }
    opts
}

fn build_check(
    def: &CheckDefinition,
    context: &CheckContext,
    client: &mut Option<reqwest::Client>,
) -> Result<Arc<dyn Check>> {
    let name = def.name.as_str();
    Ok(match &def.kind {
        CheckKind::Http(http) => {
            let shared = match client {
                Some(c) => c.clone(),
                None => client.insert(http_client()?).clone(),
            };
            Arc::new(HttpCheck::new(name, http.clone(), shared)?)
        }
        CheckKind::Tcp(tcp) => Arc::new(TcpCheck::new(name, tcp)),
        CheckKind::Database(db) => {
            let inner = context
                .databases
                .get(&db.store)
                .ok_or_else(|| Error::MissingProvider {
                    name: name.to_owned(),
                    kind: "database",
                    registered: db.store.clone(),
                })?;
            named(name, inner)
        }
        CheckKind::Custom(custom) => {
            let key = custom.registered.as_deref().unwrap_or(name);
            let inner = context
                .registered
                .get(key)
                .ok_or_else(|| Error::MissingProvider {
                    name: name.to_owned(),
                    kind: "custom",
                    registered: key.to_owned(),
                })?;
            named(name, inner)
        }
        CheckKind::Memory(_) => Arc::new(MemoryCheck::new(name, context.system.clone())),
        CheckKind::Cpu(cpu) => Arc::new(CpuCheck::new(
            name,
            context.system.clone(),
            cpu.window.as_duration(),
        )),
        CheckKind::Disk(disk) => {
            let path = disk
                .path
                .clone()
                .or_else(|| context.data_dir.clone())
                .ok_or_else(|| Error::MissingDiskPath(name.to_owned()))?;
            Arc::new(DiskCheck::new(name, path))
        }
    })
}
