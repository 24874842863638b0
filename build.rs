// Records the compiler version for stack_exporter_build_info, and lays out the binary's code in
// the order of link/hot-functions.rustc-VERSION.txt where this toolchain's linker takes it.
fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=STACK_EXPORTER_RUSTC={version}");
    println!("cargo:rerun-if-env-changed=STACK_EXPORTER_REVISION");
    order_code(&version);
}

/// The functions a scrape runs, then those start-up runs, first in the binary's code: the kernel
/// maps code 64 KB around each fault, and with them spread over 4 MB nearly all of it stays
/// resident (1.8 MB of RSS; docs/performance.md, "Code layout"). The order names functions by
/// their symbols, which depend on the compiler and the locked dependencies: a file is kept per
/// compiler version, and `scripts/check-code-layout.sh` (in the test command) says when it is
/// stale. Only where the linker is LLD, x86_64 Linux's default from Rust 1.90: GNU ld has no
/// such option. `STACK_CODE_ORDER=none` leaves the compiler's layout.
fn order_code(version: &str) {
    println!("cargo:rerun-if-env-changed=STACK_CODE_ORDER");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    let lld_by_default = target("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && target("CARGO_CFG_TARGET_OS") == "linux"
        && target("CARGO_CFG_TARGET_ENV") == "gnu"
        && at_least(version, (1, 90));
    let linker_chosen = std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
        || target("CARGO_ENCODED_RUSTFLAGS").contains("link");
    if !lld_by_default || linker_chosen || target("STACK_CODE_ORDER") == "none" {
        return;
    }
    let order = format!("link/hot-functions.rustc-{version}.txt");
    println!("cargo:rerun-if-changed={order}");
    if !std::path::Path::new(&order).exists() {
        println!(
            "cargo:warning=no {order}: the code keeps the compiler's layout, about 1.8 MB more \
             RSS (scripts/order-hot-functions.sh writes it)"
        );
        return;
    }
    let path =
        std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(&order);
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        path.display()
    );
    // Functions of other builds (tests, another profile) are simply not found: no warning each.
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// Whether a `rustc --version` number such as 1.95.0 is at least `major.minor`.
fn at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}
