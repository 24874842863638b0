//! Every system but Linux (Windows first): the host, filesystem and services collectors on
//! sysinfo (`collector/portable/`), the same metric names as on Linux; no sockets collector.

use crate::collector::portable;
use crate::collector::{Context, Work};

pub fn host(_c: &mut Context) -> Option<Work> {
    log::info!(
        "host collector: on sysinfo: memory, swap, CPU busy and idle, cores and boot time; per-mode \
         CPU, load, pressure, disk and network I/O exist only on Linux"
    );
    Some(Work::blocking(portable::host::Host::new(), |h, _| {
        h.collect()
    }))
}

pub fn filesystem(_c: &mut Context) -> Option<Work> {
    Some(Work::blocking(
        portable::filesystem::Filesystem::new(),
        |f, _| f.collect(),
    ))
}

pub fn sockets(_c: &mut Context) -> Option<Work> {
    log::info!(
        "sockets collector: off on this system: listen queues and connections per service are read \
         from Linux's sock_diag"
    );
    None
}

pub fn services(c: &mut Context) -> Option<Work> {
    log::info!(
        "services collector: on sysinfo: memory is each process's resident set (the working set \
         on Windows), published as PSS too; PSS, swap per service and OOM kills exist only on Linux"
    );
    let services = portable::services::Services::new(
        c.config.profile.clone(),
        c.config.plan.clone(),
        c.config.services.clone(),
    );
    Some(Work::blocking(services, |s, _| s.collect()))
}
