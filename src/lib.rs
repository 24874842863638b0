//! stack_exporter as a library: the binary (`main.rs`) parses flags and wires these modules
//! together; the fuzz targets and benchmarks call the parsers directly.

pub mod accesslog;
pub mod collector;
pub mod config;
pub mod config_error;
pub mod http;
pub mod lane;
pub mod logging;
pub mod metrics;
pub mod proc;
pub mod refresh;
pub mod scrape;
/// sock_diag netlink exists only on Linux: the sockets collector is off elsewhere, with a start-up
/// line (collector/platform/).
#[cfg(target_os = "linux")]
pub mod sockdiag;
pub mod status;
pub mod values;

pub const DEFAULT_PORT: u16 = 9488;

/// The version every page and `stack_exporter_build_info` show.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
