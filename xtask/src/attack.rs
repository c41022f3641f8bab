//! The Linux host's attack helper, `tests/host-attack/smmu-attack.c`: built static for arm64
//! with Debian's cross compiler (`gcc-aarch64-linux-gnu`, `libc6-dev-arm64-cross`, installed
//! by `cargo xtask setup`) and put into the host's initramfs as `/bin/smmu-attack`, where the
//! host's test script runs it as root.

use crate::tools::root;
use std::path::PathBuf;
use std::process::Command;

/// The cross compiler.
pub const CC: &str = "aarch64-linux-gnu-gcc";
/// The Debian packages that provide it and a static C library for arm64.
pub const PACKAGES: &[&str] = &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"];

/// The helper's source.
pub fn source() -> PathBuf {
    root().join("tests/host-attack/smmu-attack.c")
}

/// Whether the cross compiler can build a static arm64 program here.
pub fn compiler_present() -> bool {
    Command::new(CC).arg("--version").output().is_ok_and(|o| o.status.success())
        && std::path::Path::new("/usr/aarch64-linux-gnu/lib/libc.a").exists()
}

/// Compiles the helper (warnings are errors) and returns the static binary.
pub fn build() -> Result<Vec<u8>, String> {
    let out = root().join("target/linux/smmu-attack");
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let src = source();
    let r = Command::new(CC)
        .args(["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .map_err(|e| {
            format!(
                "{CC}: {e}: the cross compiler is missing; run `cargo xtask setup` (it installs {})",
                PACKAGES.join(" ")
            )
        })?;
    if !r.status.success() {
        return Err(format!(
            "building {} failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&r.stderr)
        ));
    }
    std::fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))
}
