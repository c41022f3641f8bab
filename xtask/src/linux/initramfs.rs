//! The initramfs: busybox, the kernel's modules, `smmu_hyp.ko`, the test modules and static
//! helpers, and `/init` (a newc archive written by [`crate::cpio`]).

use super::debs::Artifacts;
use super::init::{init_files, ScriptFacts};
use super::modules::{modules, MODULES};
use super::Variant;
use crate::cpio::Cpio;
use crate::initscript::{InitFiles, LIB_DIR};
use crate::Opts;
use std::path::{Path, PathBuf};

/// Built programs the initramfs carries besides the kernel's own modules and busybox.
pub struct Extras {
    /// `smmu_hyp.ko` (to `/lib/modules/`).
    pub kmod: PathBuf,
    /// Static helpers (to `/bin/`).
    pub helpers: Vec<PathBuf>,
    /// Test modules (to `/lib/modules/`).
    pub test_modules: Vec<PathBuf>,
}

impl Extras {
    /// Builds them for kernel `abi`.
    pub fn build(opts: &Opts, abi: &str) -> Result<Self, String> {
        Ok(Self {
            kmod: crate::kmod::build_module(opts, abi)?,
            helpers: vec![
                crate::kmod::build_helper(opts, "icount")?,
                crate::kmod::build_helper(opts, "smmu-attack")?,
            ],
            test_modules: vec![
                crate::kmod::build_sgi_module(opts, abi)?,
                crate::kmod::build_psci_module(opts, abi)?,
                crate::kmod::build_edu_module(opts, abi)?,
            ],
        })
    }
}

/// Builds the initramfs: busybox, the attack helper, the bench's counter, `/init`,
/// `/dev/console`, the kernel's modules and `smmu_hyp.ko`.
pub fn build(
    art: &Artifacts,
    extras: &Extras,
    variant: Variant,
) -> Result<(Vec<u8>, ScriptFacts), String> {
    let mods = modules(art, MODULES)?;
    let facts = ScriptFacts::for_variant(variant, mods.iter().map(|(n, _)| n.clone()).collect());
    let mut c = base(art, &init_files(variant, &facts), &mods)?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    c.file(&format!("lib/modules/{}.ko", crate::kmod::MODULE), 0o644, &read(&extras.kmod)?);
    for m in &extras.test_modules {
        let name = m.file_name().unwrap_or_default().to_string_lossy();
        c.file(&format!("lib/modules/{name}"), 0o644, &read(m)?);
    }
    for h in &extras.helpers {
        let name = h.file_name().unwrap_or_default().to_string_lossy();
        c.file(&format!("bin/{name}"), 0o755, &read(h)?);
    }
    Ok((c.finish(), facts))
}

/// What every Linux VM's initramfs holds: the directories, `/dev/console` and `/dev/null`,
/// busybox as `/bin/sh`, `/init` with its parameters and the scripts it sources, and the
/// kernel's modules `mods` (to `/lib/modules/`).
pub fn base(art: &Artifacts, init: &InitFiles, mods: &[(String, Vec<u8>)]) -> Result<Cpio, String> {
    let busybox =
        std::fs::read(&art.busybox).map_err(|e| format!("{}: {e}", art.busybox.display()))?;
    let mut c = Cpio::new();
    for d in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "lib",
        "lib/modules",
        "etc",
        LIB_DIR,
    ] {
        c.dir(d);
    }
    c.char_dev("dev/console", 0o600, 5, 1);
    c.char_dev("dev/null", 0o666, 1, 3);
    c.file("bin/busybox", 0o755, &busybox);
    c.symlink("bin/sh", "busybox");
    // `/init` (checked in), its parameters (this run's) and the scripts it sources.
    for (path, text) in init.files() {
        c.file(&path, if path == "init" { 0o755 } else { 0o644 }, text.as_bytes());
    }
    for (name, ko) in mods {
        c.file(&format!("lib/modules/{name}.ko"), 0o644, ko);
    }
    Ok(c)
}
