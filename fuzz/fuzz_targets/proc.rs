//! The /proc parsers: a file of /proc (or a --path.procfs that is not one) may hold anything;
//! every parser takes every input without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stack_exporter::proc;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = proc::parse_meminfo(&text).used();
    let _ = proc::parse_stat(&text);
    let _ = proc::parse_loadavg(&text);
    let _ = proc::parse_mounts(&text);
    let _ = proc::parse_pid_stat(&text);
    let _ = proc::parse_smaps_rollup(&text);
    let _ = proc::parse_cmdline(data);
    let _ = proc::parse_effective_capabilities(&text);
    let _ = proc::parse_vmstat(&text);
    let _ = proc::parse_pressure(&text);
    let _ = proc::parse_diskstats(&text);
    let _ = proc::parse_net_dev(&text);
    let _ = proc::parse_sockstat_tcp_sockets(&text);
    let _ = proc::snmp_counter(&text, "TcpExt", "ListenOverflows");
    let _ = proc::snmp_counter(&text, "Tcp", "RetransSegs");
});
