//! The start-up line that says which figures suffer when the exporter cannot read other users'
//! processes and directories.

use crate::proc::{self, ProcFs};

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;

/// The start-up warning when the exporter lacks the capabilities to read other users' processes
/// and directories, naming the collectors (of those `running`) and figures that suffer; `None`
/// when it has them.
pub fn missing_capabilities_warning(effective: u64, running: &[&str]) -> Option<String> {
    let missing: Vec<&str> = [
        (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
        (CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"),
    ]
    .into_iter()
    .filter(|(bit, _)| effective & (1u64 << bit) == 0)
    .map(|(_, name)| name)
    .collect();
    let hurt: Vec<&str> = [
        (
            "sockets",
            "the sockets collector cannot read other users' processes' /proc/PID/fd: their \
             stack_service_connections are undercounted and their listen queues (rows W3, X1) \
             absent (see stack_sockets_unreadable_processes)",
        ),
        (
            "services",
            "the services collector cannot read their smaps_rollup: their PSS is counted at RSS \
             (rows M, M1; see stack_service_pss_fallback_processes)",
        ),
        (
            "storage",
            "the storage collector cannot walk directories other users keep private: their \
             sizes and file counts are lower bounds (see stack_directory_walk_errors)",
        ),
    ]
    .into_iter()
    .filter(|(collector, _)| running.contains(collector))
    .map(|(_, what)| what)
    .collect();
    if missing.is_empty() || hurt.is_empty() {
        return None;
    }
    Some(format!(
        "missing {}: {}; run as root or grant CAP_SYS_PTRACE (other users' fd, ns and \
         smaps_rollup) and CAP_DAC_READ_SEARCH (their /proc directories and private \
         directories), as deploy/stack_exporter.service does",
        missing.join(" and "),
        hurt.join("; ")
    ))
}

/// Logs [`missing_capabilities_warning`] once, at start-up, from the exporter's own status.
pub fn log_missing_capabilities(procfs: &ProcFs, running: &[&str]) {
    let effective = procfs
        .read("self/status")
        .ok()
        .and_then(|status| proc::parse_effective_capabilities(&status));
    match effective {
        Some(effective) => {
            if let Some(warning) = missing_capabilities_warning(effective, running) {
                log::warn!("{warning}");
            }
        }
        None => log::warn!("cannot read the exporter's capabilities from self/status"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capability_warning_names_what_is_missing_and_what_it_costs() {
        let all = u64::MAX;
        let every = ["services", "sockets", "storage"];
        assert_eq!(missing_capabilities_warning(all, &every), None);
        let no_ptrace = all & !(1 << CAP_SYS_PTRACE);
        let warning = missing_capabilities_warning(no_ptrace, &every).unwrap();
        assert!(warning.starts_with("missing CAP_SYS_PTRACE:"), "{warning}");
        assert!(warning.contains("sockets collector") && warning.contains("W3, X1"));
        assert!(warning.contains("services collector") && warning.contains("rows M"));
        assert!(warning.contains("storage collector") && warning.contains("walk_errors"));
        let sockets_only = missing_capabilities_warning(0, &["sockets", "host"]).unwrap();
        assert!(sockets_only.contains("CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH"));
        assert!(!sockets_only.contains("services collector"));
        assert!(!sockets_only.contains("storage collector"));
        assert_eq!(missing_capabilities_warning(0, &["host"]), None);
    }
}
