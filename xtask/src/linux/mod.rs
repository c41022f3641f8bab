//! The Linux host: Debian's arm64 kernel and busybox (fetched by `cargo xtask setup` with
//! `apt-get download` into `target/linux/`: nothing is downloaded when a VM runs), the busybox
//! initramfs whose `/init` runs the host's tests, the host's device tree (written from
//! `platform::linux::HostTree`, the description the hypervisor checks it against), and where
//! each piece is loaded.
//!
//! - [`debs`]: the pinned kernel and busybox packages, fetched and unpacked by setup;
//! - [`modules`]: the kernel modules the initramfs carries, with their dependencies,
//!   decompressed;
//! - [`init`]: what the host's `/init` tests check, and the script itself;
//! - [`initramfs`]: the initramfs (busybox, modules, helpers, `/init`);
//! - here: the runs ([`Variant`]), and [`prepare`], which lays kernel, initramfs and device
//!   tree out in the host's RAM for QEMU's loader.

pub mod debs;
pub mod guest;
pub mod init;
pub mod initramfs;
pub mod modules;
pub mod stress;

pub use debs::{artifacts, fetch, fetch_commands, Artifacts, PINNED_ABI};
pub use init::{ScriptFacts, TEST_SPI};

use crate::qemu::LinuxFiles;
use crate::tools::linux_dir;
use crate::Opts;
use platform::linux::{dtgen, image_header, HostTree, Layout, IMAGE_HEADER_SIZE};
use platform::qemu_virt::{BOARD, MANIFEST};
use platform::MemRange;

/// The kernel command line. `panic=-1`: a panic resets at once (PSCI SYSTEM_RESET stops the
/// VM) instead of hanging; `iomem=relaxed`: the tests poke MMIO the host's own drivers claim
/// (the GIC distributor, ECAM) with `devmem`: the hypervisor must hold regardless.
pub const BOOTARGS: &str = "console=ttyS0 panic=-1 iomem=relaxed rdinit=/init";
/// On the command line, makes `/init` panic the kernel at once (the "Linux host panics" run).
pub const PANIC_ARG: &str = "xtask.host=panic";
/// On the host's command line in the run where every guest powers off first: its `/init` runs
/// the tests of that run only.
pub const GUESTS_OFF_ARG: &str = "xtask.host=guests-off";

/// What the Linux host does in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Runs its tests, then `poweroff`.
    Tests,
    /// Runs its tests with `iommu.passthrough=1`: the host's driver asks for bypass STEs, which
    /// the hypervisor turns into its stage 2 alone (identity over the host's own memory).
    Passthrough,
    /// Panics right after boot (`panic=-1`: PSCI SYSTEM_RESET must stop only the host).
    Panic,
    /// Its device tree gives it every CPU's redistributor (a stale or edited tree): the
    /// hypervisor must refuse to enter it.
    BadTree,
    /// Not a host at all: the same kernel and initramfs booted by QEMU alone (no hypervisor,
    /// no EL2), where the `smmu_hyp` module must refuse to load.
    Native,
    /// Runs its tests with the SMMU forced non-coherent (`smmu_coherent=0`; `cargo xtask run
    /// --host linux --smmu-noncoherent`): its tree has no `dma-coherent` on the SMMU, the
    /// emulated SMMU no COHACC, so Linux maps its SMMU structures non-cacheable and the
    /// hypervisor reads and writes them with cache maintenance. QEMU shows that this path works
    /// end to end, not that the maintenance is needed (its SMMU is coherent whatever it is told).
    NonCoherent,
    /// The stress run (`tests/linux/init/stress.sh`): both its CPUs do strict-mode direct I/O
    /// on its disk at once, its edu DMAs through the DMA API, smmu_hyp's vote cycle powers the
    /// SMMU off and on, its CPU 1 goes offline and online, all at once while the guests run
    /// their tests.
    Stress,
    /// `cargo xtask run --host linux --shell`: an interactive shell on its console
    /// (`tests/linux/init/shell.sh`), smmu_hyp loaded; `poweroff` ends the run.
    Shell,
    /// Every guest powers off first (the hypervisor's `guests_off=1`: they skip the tests that
    /// wait for the host); then the host's edu makes the SMMU fault and its driver must log the
    /// event within a bounded time without touching its SMMU otherwise: the hypervisor's SMMU
    /// interrupts are served on the host's CPUs (`cargo xtask run --host linux --guests-off`).
    GuestsOff,
    /// `cargo xtask bench`: measures its boot and 4 KiB direct disk I/O (see
    /// `crate::initscript::bench_files`), in strict DMA translation or in passthrough.
    Bench {
        /// `iommu.passthrough=1` (else `iommu.strict=1 iommu.passthrough=0`).
        passthrough: bool,
    },
    /// `cargo xtask bench`'s guest run: the host powers off at once
    /// (`tests/linux/init/host-off.sh`) and a Linux guest1 measures its 4 KiB direct disk I/O
    /// through the paravirtual IOMMU (`linux::guest::bench_init_files`).
    GuestBench,
}

impl Variant {
    /// Every variant.
    pub const ALL: [Variant; 12] = [
        Variant::Tests,
        Variant::Passthrough,
        Variant::NonCoherent,
        Variant::Stress,
        Variant::Shell,
        Variant::GuestsOff,
        Variant::Panic,
        Variant::BadTree,
        Variant::Native,
        Variant::Bench { passthrough: false },
        Variant::Bench { passthrough: true },
        Variant::GuestBench,
    ];

    /// The kernel command line.
    pub fn bootargs(self) -> String {
        match self {
            Variant::Tests => BOOTARGS.to_string(),
            Variant::Passthrough => format!("{BOOTARGS} iommu.passthrough=1"),
            Variant::Panic => format!("{BOOTARGS} {PANIC_ARG}"),
            Variant::BadTree
            | Variant::Native
            | Variant::NonCoherent
            | Variant::Shell
            | Variant::GuestBench => BOOTARGS.to_string(),
            // Strict: every unmap is invalidated (a TLBI and a CMD_SYNC) before it returns.
            Variant::Stress => format!("{BOOTARGS} iommu.strict=1 iommu.passthrough=0"),
            Variant::GuestsOff => format!("{BOOTARGS} {GUESTS_OFF_ARG}"),
            // Both of the host's CPUs, as in the native baseline (as many): the bench counts
            // every online CPU's instructions (tests/linux/icount.c).
            Variant::Bench { passthrough: false } => {
                format!("{BOOTARGS} iommu.strict=1 iommu.passthrough=0")
            }
            Variant::Bench { passthrough: true } => format!("{BOOTARGS} iommu.passthrough=1"),
        }
    }

    /// Whether the run lets the host inject SMMU power losses (`pm_inject=1`): the first
    /// Linux-host run, where the module's `inject_loss` file is tested (in the passthrough run
    /// the file must be absent).
    pub fn pm_inject(self) -> bool {
        self == Variant::Tests
    }

    /// Whether the hypervisor drives the SMMU as coherent in this run (the board's coherency,
    /// unless the run forces the non-coherent path): what its boot options say
    /// ([`Variant::hyp_append`]) and what the host's tree says (`dma-coherent`), both from here.
    pub fn smmu_coherent(self) -> bool {
        BOARD.smmu_coherent && self != Variant::NonCoherent
    }

    /// The hypervisor's boot options for this run.
    pub fn hyp_append(self) -> String {
        let mut a = String::from("gbpa_reset=abort");
        if self.pm_inject() {
            a.push_str(" pm_inject=1");
        }
        a.push_str(smmu_option(self.smmu_coherent()));
        if self == Variant::GuestsOff {
            a.push_str(" guests_off=1");
        }
        a
    }

    /// Names the run's files (`target/xtask/last-linux*.log`, `target/linux/host*.dtb`).
    pub fn tag(self) -> &'static str {
        match self {
            Variant::Tests => "linux",
            Variant::Passthrough => "linux-passthrough",
            Variant::Panic => "linux-panic",
            Variant::BadTree => "linux-bad-tree",
            Variant::Native => "linux-native",
            Variant::NonCoherent => "linux-noncoherent",
            Variant::Stress => "linux-stress",
            Variant::Shell => "linux-shell",
            Variant::GuestsOff => "linux-guests-off",
            Variant::Bench { passthrough: false } => "linux-bench-strict",
            Variant::Bench { passthrough: true } => "linux-bench-passthrough",
            Variant::GuestBench => "linux-bench-guest",
        }
    }
}

/// The hypervisor's boot option (with its leading space) that makes it drive the SMMU as
/// `coherent`: nothing for the board's own coherency, ` smmu_coherent=0` to force the
/// non-coherent path on a coherent board (` smmu_coherent=1` the other way, which the
/// hypervisor refuses unless the SMMU reports coherent access).
pub fn smmu_option(coherent: bool) -> &'static str {
    match (coherent, BOARD.smmu_coherent) {
        (c, board) if c == board => "",
        (false, _) => " smmu_coherent=0",
        (true, _) => " smmu_coherent=1",
    }
}

/// Everything the Linux host needs, written under `target/linux/`, and where each is loaded.
pub struct Prepared {
    /// The QEMU loader arguments.
    pub files: LinuxFiles,
    /// What the test script checks (xtask checks the hypervisor log against it too).
    pub facts: ScriptFacts,
    /// The fetched packages.
    pub art: Artifacts,
}

/// Builds the initramfs and the device tree and lays the pieces out in the host's RAM.
pub fn prepare(opts: &Opts, variant: Variant) -> Result<Prepared, String> {
    let art = artifacts().ok_or_else(|| {
        format!(
            "the Linux host's kernel and busybox are missing from {}. Run `cargo xtask setup` (as root), or:\n  {}",
            linux_dir().display(),
            fetch_commands(PINNED_ABI).join("\n  ")
        )
    })?;
    let host = &MANIFEST.vms[0];
    let layout = Layout::for_vm(host).map_err(|e| e.to_string())?;
    let kernel = kernel_in(&art, &layout)?;
    let extras = initramfs::Extras::build(opts, &art.abi)?;
    let (cpio, facts) = initramfs::build(&art, &extras, variant)?;
    let initrd = layout.initrd(kernel, cpio.len() as u64).map_err(|e| e.to_string())?;
    let bootargs = variant.bootargs();
    let mut tree = HostTree::new(&BOARD, host, &bootargs, Some(initrd), variant.smmu_coherent());
    if variant == Variant::BadTree {
        tree.gicr = BOARD.gicr;
    }
    let dtb = dtgen::write(&tree).map_err(|e| format!("writing the host's device tree: {e}"))?;
    let dtb_name = format!("host{}.dtb", variant.tag().trim_start_matches("linux"));
    let placed = Placed { layout: &layout, kernel, initrd, cpio: &cpio, dtb: &dtb };
    let files = placed.write(&art, "initramfs.cpio", &dtb_name, opts.verbose)?;
    Ok(Prepared { files, facts, art })
}

/// Where the kernel `Image` of `art` goes in a VM's `layout` (from its header).
pub fn kernel_in(art: &Artifacts, layout: &Layout) -> Result<MemRange, String> {
    let image = std::fs::read(&art.image).map_err(|e| format!("{}: {e}", art.image.display()))?;
    let head = image.get(..IMAGE_HEADER_SIZE).ok_or("truncated kernel Image")?;
    let header = image_header(head)
        .ok_or_else(|| format!("{} is not an arm64 Image", art.image.display()))?;
    layout.kernel(&header).map_err(|e| e.to_string())
}

/// A Linux VM's pieces laid out in its RAM: the kernel, the initramfs and the device tree.
pub struct Placed<'a> {
    /// The VM's layout (its device tree's place).
    pub layout: &'a Layout,
    /// Where the kernel goes.
    pub kernel: MemRange,
    /// Where the initramfs goes.
    pub initrd: MemRange,
    /// The initramfs.
    pub cpio: &'a [u8],
    /// The device tree blob.
    pub dtb: &'a [u8],
}

impl Placed<'_> {
    /// Writes the initramfs and the tree under `target/linux/` as `initrd_name` and
    /// `dtb_name`, and returns the QEMU loader's files and addresses.
    pub fn write(
        &self,
        art: &Artifacts,
        initrd_name: &str,
        dtb_name: &str,
        verbose: bool,
    ) -> Result<LinuxFiles, String> {
        let d = linux_dir();
        let (initrd_path, dtb_path) = (d.join(initrd_name), d.join(dtb_name));
        std::fs::write(&initrd_path, self.cpio).map_err(|e| e.to_string())?;
        std::fs::write(&dtb_path, self.dtb).map_err(|e| e.to_string())?;
        if verbose {
            println!(
                "xtask: wrote {} ({} bytes) and {} ({} bytes): kernel at {:#x}, initramfs at {:#x}, device tree at {:#x}",
                initrd_path.display(),
                self.cpio.len(),
                dtb_path.display(),
                self.dtb.len(),
                self.kernel.base,
                self.initrd.base,
                self.layout.dtb.base
            );
        }
        Ok(LinuxFiles {
            image: art.image.clone(),
            image_addr: self.kernel.base,
            initrd: initrd_path,
            initrd_addr: self.initrd.base,
            dtb: dtb_path,
            dtb_addr: self.layout.dtb.base,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_decision_gives_the_boot_option_and_the_tree() {
        // QEMU's SMMU is coherent: only the forced run says otherwise, to both sides.
        const { assert!(BOARD.smmu_coherent) };
        for v in Variant::ALL {
            let forced = v == Variant::NonCoherent;
            assert_eq!(v.smmu_coherent(), !forced, "{v:?}");
            assert_eq!(v.hyp_append().contains("smmu_coherent=0"), forced, "{v:?}");
            assert!(!v.hyp_append().contains("smmu_coherent=1"));
        }
        assert_eq!(Variant::NonCoherent.hyp_append(), "gbpa_reset=abort smmu_coherent=0");
        assert_eq!(Variant::Tests.hyp_append(), "gbpa_reset=abort pm_inject=1");
        assert_eq!(smmu_option(true), "");
        assert_eq!(smmu_option(false), " smmu_coherent=0");
        let tags: std::collections::BTreeSet<&str> = Variant::ALL.iter().map(|v| v.tag()).collect();
        assert_eq!(tags.len(), Variant::ALL.len(), "each run its own log and tree");
    }
}
