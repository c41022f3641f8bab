//! Builds the aarch64 images with Debian's toolchain and `-Zbuild-std`, then flattens the guest
//! ELFs into raw images QEMU's loader places at each VM's base.

use crate::tools::{root, CARGO, RUSTC};
use crate::{elf, Opts};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target triple: strict alignment (Rust runs before the MMU is on) and no FP/SIMD
/// registers (the hypervisor never has to save a VM's FP state).
pub const TARGET: &str = "aarch64-unknown-none-softfloat";
/// Shared by both images so core/alloc are built once. Position-independent code lets one guest
/// image serve every VM; the hypervisor is still linked at a fixed address (see hyp/build.rs).
const RUSTFLAGS: &str = "-C linker=rust-lld -C relocation-model=pie -C force-frame-pointers=yes";

/// The built images.
#[derive(Debug)]
pub struct Images {
    /// The hypervisor ELF.
    pub hyp: PathBuf,
    /// Flat guest images by binary name.
    pub guests: Vec<(String, PathBuf)>,
    /// The host's virtio disk image.
    pub disk: PathBuf,
}

impl Images {
    /// The flat image of guest binary `name`.
    pub fn guest(&self, name: &str) -> Result<&Path, String> {
        self.guests
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.as_path())
            .ok_or_else(|| format!("guest image `{name}` was not built"))
    }
}

/// Builds everything.
pub fn build(opts: &Opts) -> Result<Images, String> {
    let root = root();
    let target_dir = root.join("target/aarch64");
    let mut cmd = Command::new(CARGO);
    cmd.current_dir(&root)
        .args(["build", "--release", "--target", TARGET])
        .args(["-Zbuild-std=core,alloc", "-Zbuild-std-features=compiler-builtins-mem"])
        .args(["-p", "hyp", "--features", "hyp/el2"])
        .args(["-p", "guest-tests", "--features", "guest-tests/guest", "--bins"]);
    // Nothing of the rustup cargo that runs xtask may leak into Debian's cargo.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CARGO")
            || k.starts_with("RUSTUP")
            || k.starts_with("RUSTC")
            || k == "RUSTFLAGS"
            || k == "RUSTDOCFLAGS"
        {
            cmd.env_remove(&k);
        }
    }
    cmd.env("RUSTC", RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", RUSTFLAGS);
    if opts.verbose {
        println!(
            "+ RUSTC={RUSTC} RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR={} RUSTFLAGS=\"{RUSTFLAGS}\" {CARGO} {}",
            target_dir.display(),
            cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
        );
    }
    let status = cmd.status().map_err(|e| format!("cannot run {CARGO}: {e}"))?;
    if !status.success() {
        return Err(format!("building the aarch64 images failed ({status})"));
    }
    let out = target_dir.join(TARGET).join("release");
    let hyp = out.join("hyp");
    if !hyp.exists() {
        return Err(format!("{} was not produced", hyp.display()));
    }
    let mut guests = Vec::new();
    for name in guest_bins(&root)? {
        let elf_path = out.join(&name);
        let bin = out.join(format!("{name}.bin"));
        let data = std::fs::read(&elf_path).map_err(|e| format!("{}: {e}", elf_path.display()))?;
        let flat = elf::flatten(&data).map_err(|e| format!("{}: {e}", elf_path.display()))?;
        std::fs::write(&bin, &flat).map_err(|e| format!("{}: {e}", bin.display()))?;
        if opts.verbose {
            println!(
                "xtask: flattened {} -> {} ({} bytes)",
                elf_path.display(),
                bin.display(),
                flat.len()
            );
        }
        guests.push((name, bin));
    }
    let disk = host_disk(&root)?;
    Ok(Images { hyp, guests, disk })
}

/// Size of the host's test disk.
pub const DISK_SIZE: usize = 4 << 20;

/// The bytes of the host's test disk: every 512-byte sector starts with its own number in
/// words (`smmu-hyp test disk sector N`), so a reader can tell which sector it got.
pub fn disk_contents() -> Vec<u8> {
    let mut d = vec![0u8; DISK_SIZE];
    for (i, sector) in d.chunks_mut(512).enumerate() {
        let tag = format!("smmu-hyp test disk sector {i}\n");
        sector[..tag.len()].copy_from_slice(tag.as_bytes());
    }
    d
}

/// Writes the host's disk image (`target/xtask/host-disk.img`) unless it is already right.
fn host_disk(root: &Path) -> Result<PathBuf, String> {
    let path = root.join("target/xtask/host-disk.img");
    let want = disk_contents();
    if std::fs::read(&path).ok().as_deref() != Some(&want[..]) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(&path, &want).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(path)
}

/// Binary names of the guest crate: `guest-tests` (src/main.rs) and every `src/bin/*.rs`.
fn guest_bins(root: &Path) -> Result<Vec<String>, String> {
    let mut names = vec!["guest-tests".to_string()];
    let dir = root.join("tests/guest/src/bin");
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "rs") {
                if let Some(stem) = p.file_stem() {
                    names.push(stem.to_string_lossy().into_owned());
                }
            }
        }
    }
    names.sort();
    Ok(names)
}
