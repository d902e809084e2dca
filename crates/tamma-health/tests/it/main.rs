//! Integration tests of `tamma-health`: the checker over real checks, the health+json schema, cgroup
//! fixture trees and the live machine, http/tcp checks against real local listeners, building from
//! config.

mod checker;
mod config_build;
mod health_json;
mod net;
mod support;
mod sysfs;
