//! The collectors of systems without /proc (Windows first), on the `sysinfo` crate, publishing the
//! Linux collectors' metric names so the same rules and dashboards work (docs/windows.md).
//!
//! Each keeps one sysinfo handle across scrapes and refreshes only what it publishes: memory and
//! the CPU counters for the host, the space of the disks, and for processes their memory, CPU time,
//! parent and (once per process) command line and executable, never their threads. Built on
//! Linux too for the tests, which compare these figures with the /proc collectors'.

pub mod filesystem;
pub mod host;
pub mod services;

#[cfg(all(test, target_os = "linux"))]
mod compare;
