//! Where things are: the workspace root and the programs xtask runs (their paths only;
//! `setup.rs` installs what is missing).

use std::path::{Path, PathBuf};

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
