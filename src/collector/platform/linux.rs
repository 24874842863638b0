//! Linux: the /proc, sysfs and sock_diag collectors.

use std::sync::Arc;

use crate::collector::{filesystem as fs, host as proc_host, services as proc_services};
use crate::collector::{sockets as diag, Context, Work};

pub fn host(c: &mut Context) -> Option<Work> {
    Some(Work::blocking(
        proc_host::Host::new(c.procfs.clone()),
        |h, _| h.collect(),
    ))
}

pub fn filesystem(c: &mut Context) -> Option<Work> {
    let filesystem = fs::Filesystem::new(c.procfs.clone(), c.rootfs.clone());
    Some(Work::blocking(filesystem, |f, d| f.collect(d.into_std())))
}

pub fn sockets(c: &mut Context) -> Option<Work> {
    let sockets = diag::Sockets::new(c.procfs.clone(), shared_services(c), c.connections_max_age);
    Some(Work::blocking(sockets, |s, d| s.collect(d)))
}

pub fn services(c: &mut Context) -> Option<Work> {
    Some(Work::blocking(shared_services(c), |s, d| s.collect(d)))
}

/// The matcher, built by the first collector that asks for it: the services and sockets
/// collectors share its instances, each process matched once per scrape.
fn shared_services(c: &mut Context) -> Arc<proc_services::Services> {
    let Context {
        procfs,
        sysfs,
        pss_max_age,
        config,
        services,
        ..
    } = c;
    services
        .get_or_insert_with(|| {
            Arc::new(proc_services::Services::new(
                procfs.clone(),
                sysfs.join("fs/cgroup"),
                config.profile.clone(),
                config.plan.clone(),
                config.services.clone(),
                *pss_max_age,
            ))
        })
        .clone()
}
