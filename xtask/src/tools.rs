//! Where things are: the workspace root and the programs xtask runs (their paths only;
//! `setup.rs` installs what is missing).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's compiler (rustup's comes first in PATH, so it is named explicitly).
pub const RUSTC: &str = "/usr/bin/rustc";
/// Debian's cargo.
pub const CARGO: &str = "/usr/bin/cargo";
/// QEMU.
pub const QEMU: &str = "qemu-system-aarch64";

/// The workspace root (xtask lives in `<root>/xtask`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Where the Linux host's downloads and derived files live.
pub fn linux_dir() -> PathBuf {
    root().join("target/linux")
}

/// Runs `cmd` with `sh -c` (noninteractive apt), returning its stdout.
pub fn sh(cmd: &str, cwd: Option<&Path>, verbose: bool) -> Result<String, String> {
    if verbose {
        println!("+ {cmd}");
    }
    let mut c = Command::new("sh");
    c.arg("-c").arg(cmd).env("DEBIAN_FRONTEND", "noninteractive");
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let out = c.output().map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{cmd}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
