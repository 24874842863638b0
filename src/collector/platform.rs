//! Which backend builds the collectors that read the operating system itself (host, filesystem,
//! sockets, services): /proc, sysfs and sock_diag on Linux (`platform/linux.rs`), sysinfo
//! elsewhere (`platform/other.rs`, collectors in `portable/`). The table in `mod.rs` is the same on
//! every system, so flags, the landing page and the README do not change with it; a collector
//! that cannot exist on a system says so in one start-up line and is not built.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::{filesystem, host, services, sockets};

#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
pub use other::{filesystem, host, services, sockets};
