//! A Linux guest1 (`cargo xtask run --guest1 linux`): the same Debian kernel as the host, with
//! an initramfs of its own (busybox, the paravirtual IOMMU driver `smmu_pviommu`, `virtio_blk`,
//! `tests/linux/init/guest.sh`) and a device tree written from
//! `platform::linux::HostTree::guest` with its paravirtual IOMMU node (the description the
//! hypervisor checks it against), laid out in guest1's RAM like the host's.

use super::debs::Artifacts;
use super::modules::modules;
use super::{kernel_in, Placed};
use crate::initscript::{InitFiles, Params, COMMON};
use crate::qemu::LinuxFiles;
use platform::linux::{dtgen, HostTree, Layout};
use platform::qemu_virt::{BOARD, MANIFEST};

/// Which VM the Linux guest is.
pub const GUEST: usize = 1;

/// Its `/init`.
const INIT: &str = include_str!("../../../tests/linux/init/guest.sh");
/// Its `/init` in `cargo xtask bench`'s guest run: the host's 4 KiB direct-I/O measurement on
/// its own disk (see [`bench_init_files`]).
const BENCH_INIT: &str = include_str!("../../../tests/linux/init/guest-bench.sh");

/// Its kernel command line: the emulated PL011 is its console from the first instruction on
/// (`earlycon`, then `ttyAMA0`); `panic=-1` as the host's; `cma=0`: Debian's kernel reserves
/// 64 MiB for its contiguous allocator by default, half of guest1's RAM, and then runs out of
/// memory before `/init` (nothing of the guest's needs it); `deferred_probe_timeout=-1`: its
/// PCI functions wait for their IOMMU (a module `/init` loads) however long that takes, instead
/// of probing without it after the default 10 s (their streams would be blocked);
/// `iomem=relaxed`: its test programs its edu's registers with `devmem` while a driver holds it;
/// with `passthrough`, `iommu.passthrough=1`: its default domains are identity domains.
pub fn bootargs(passthrough: bool) -> String {
    format!(
        "console=ttyAMA0 earlycon=pl011,{:#x} panic=-1 cma=0 deferred_probe_timeout=-1 iomem=relaxed rdinit=/init{}",
        BOARD.uart.base,
        if passthrough { " iommu.passthrough=1" } else { "" }
    )
}

/// Where in its device tree's header its edu writes once `smmu_pviommu` is unloaded (bytes
/// 32..39: `size_dt_strings`, `size_dt_struct`, which nothing reads after boot): the write must
/// land nowhere.
pub const UNLOADED_DMA_OFFSET: u64 = 32;

/// The stream and the device address of its edu's DMA after the unload (QEMU's trace must show
/// it aborted: `crate::report::linux_guest_unload_check`).
pub fn unloaded_dma() -> (u32, u64) {
    let vm = &MANIFEST.vms[GUEST];
    let dtb = Layout::for_vm(vm).map(|l| l.dtb.base).unwrap_or_default();
    (vm.devices[0].rid(), dtb + UNLOADED_DMA_OFFSET)
}

/// What its driver logs for a stream attached to a DMA domain and to an identity domain.
const DMA_LINE: &str = "DMA domain (SET_STE stage 1";
const IDENTITY_LINE: &str = "identity domain (SET_STE bypass";

/// The first line its `/init` prints (xtask checks that it appears as a `[guest1]` line).
pub const HELLO: &str = "Linux guest: /init reached";

/// The modules its initramfs carries and loads (with their dependencies): its disk's driver,
/// and the generic driver its edu is bound to (a function with no driver has no IOMMU group,
/// so its stream stays blocked and its DMA aborts without an event).
pub const MODULES: &[&str] = &["virtio_blk", "uio_pci_generic"];

/// Its `/init` and what it sources, for `mods` (the kernel's module names, in load order; the
/// paravirtual IOMMU's is loaded before them), booted with `iommu.passthrough=1` if
/// `passthrough`.
pub fn init_files(mods: &[String], passthrough: bool) -> InitFiles {
    let vm = &MANIFEST.vms[GUEST];
    let dtb = Layout::for_vm(vm).map(|l| l.dtb.base).unwrap_or_default();
    // Its default domain type, and the other one its disk is rebound in.
    let (default, other) = if passthrough {
        (("identity", IDENTITY_LINE), ("DMA", DMA_LINE))
    } else {
        (("DMA", DMA_LINE), ("identity", IDENTITY_LINE))
    };
    let functions: Vec<String> = vm
        .devices
        .iter()
        .map(|d| format!("{:04x}:{:02x}:{:02x}.{}", 0, d.bus, d.dev, d.func))
        .collect();
    // edu and virtio-blk (modern): what each slot of its holds in every run (`crate::qemu`).
    let ids: Vec<String> = vm
        .devices
        .iter()
        .zip(&functions)
        .map(|(d, name)| {
            let id =
                if d.dev == platform::qemu_virt::GUEST1_DISK_SLOT { "0x1042" } else { "0x11e8" };
            let vendor = if id == "0x1042" { "0x1af4" } else { "0x1234" };
            format!("{name}={vendor}:{id}")
        })
        .collect();
    let mut p = Params::default();
    p.set("GUEST_HELLO", HELLO)
        .set("FUNCTIONS", functions.join(" "))
        .set("IDS", ids.join(" "))
        .set("PVIOMMU", crate::kmod::PVIOMMU_MODULE)
        // Its driver's name, and its platform device's (the tree's node `pviommu`).
        .set("PVIOMMU_DRIVER", "smmu-pviommu")
        .set("PVIOMMU_DEV", "pviommu")
        .set("VOTE_PARAM", format!("/sys/module/{}/parameters/vote", crate::kmod::PVIOMMU_MODULE))
        .set("DISK_FN", &functions[1])
        .set("EDU_FN", &functions[0])
        .set("EDU_IDS", "1234 11e8")
        .set("EDU_SID", format!("{:#x}", vm.devices[0].rid()))
        // Inside its DMA domains' 39-bit IOVA space, where Linux's DMA layer maps nothing (it
        // allocates from the top of the device's 32-bit mask down).
        .set("UNMAPPED_IOVA", "0x7f000000")
        // The host's RAM, guest2's and the hypervisor's image: no DMA of guest1's may land there.
        .set(
            "FOREIGN",
            format!(
                "{:#x} {:#x} {:#x}",
                MANIFEST.vms[0].mem.base + 0x10_0000,
                MANIFEST.vms[2].mem.base + 0x10_0000,
                platform::qemu_virt::HYP_LOAD_ADDR
            ),
        )
        .set("DISK_SID", format!("{:#x}", vm.devices[1].rid()))
        // Debian's default: translated DMA domains, strict invalidation; or identity domains.
        .set("DOMAIN_TYPE", default.0)
        .set("ATTACH_LINE", default.1)
        .set("OTHER_TYPE", other.0)
        .set("OTHER_LINE", other.1)
        // Where the hypervisor put its device tree (`/sys/firmware/fdt` reads it there).
        .set("DTB_IPA", format!("{dtb:#x}"))
        .set("UNLOADED_DMA_OFFSET", UNLOADED_DMA_OFFSET)
        .set("MODULES", mods.join(" "));
    InitFiles { init: INIT, libs: vec![COMMON], params: p }
}

/// Its bench `/init` (`tests/linux/init/guest-bench.sh`) and its values, for `mods` (the
/// kernel's module names, in load order, the paravirtual IOMMU's loaded before them): the
/// host's bench's pairs of `dd` runs ([`crate::initscript::LINUX_IO_BLOCKS`] and twice as many
/// 4 KiB blocks, [`crate::initscript::LINUX_IO_REPS`] times), one `dd` at a time (guest1 has
/// one CPU), reads then writes, with the driver's hypercall counts around each.
pub fn bench_init_files(mods: &[String]) -> InitFiles {
    let vm = &MANIFEST.vms[GUEST];
    let disk = vm
        .devices
        .iter()
        .find(|d| d.dev == platform::qemu_virt::GUEST1_DISK_SLOT)
        .expect("guest1 has its disk");
    let (n, reps) = (crate::initscript::LINUX_IO_BLOCKS, crate::initscript::LINUX_IO_REPS);
    let mut p = Params::default();
    p.set("PVIOMMU", crate::kmod::PVIOMMU_MODULE)
        .set("MODULES", mods.join(" "))
        .set("DISK_FN", format!("{:04x}:{:02x}:{:02x}.{}", 0, disk.bus, disk.dev, disk.func))
        .set("N", n)
        .set("N2", 2 * n)
        .set("REPS", reps)
        .set("IOS", reps * 3 * n);
    InitFiles { init: BENCH_INIT, libs: vec![crate::initscript::BENCH_LIB], params: p }
}

/// The modules guest1's bench initramfs carries and loads: its disk's driver.
pub const BENCH_MODULES: &[&str] = &["virtio_blk"];

/// Builds guest1's initramfs and device tree under `target/linux/` (booted with
/// `iommu.passthrough=1` if `passthrough`) and returns where QEMU's loader puts the kernel, the
/// initramfs and the tree in guest1's RAM.
pub fn prepare(
    opts: &crate::Opts,
    art: &Artifacts,
    passthrough: bool,
) -> Result<LinuxFiles, String> {
    prepare_with(opts, art, passthrough, false)
}

/// [`prepare`]; with `bench`, its `/init` is the bench's ([`bench_init_files`]) and its
/// initramfs carries the bench's instruction counter (`/bin/icount`).
pub fn prepare_with(
    opts: &crate::Opts,
    art: &Artifacts,
    passthrough: bool,
    bench: bool,
) -> Result<LinuxFiles, String> {
    let pviommu = crate::kmod::build_pviommu_module(opts, &art.abi)?;
    let vm = &MANIFEST.vms[GUEST];
    let layout = Layout::for_vm(vm).map_err(|e| e.to_string())?;
    let kernel = kernel_in(art, &layout)?;
    let mods = modules(art, if bench { BENCH_MODULES } else { MODULES })?;
    let names: Vec<String> = mods.iter().map(|(n, _)| n.clone()).collect();
    let init = if bench { bench_init_files(&names) } else { init_files(&names, passthrough) };
    let mut c = super::initramfs::base(art, &init, &mods)?;
    if bench {
        let icount = crate::kmod::build_helper(opts, "icount")?;
        let bin = std::fs::read(&icount).map_err(|e| format!("{}: {e}", icount.display()))?;
        c.file("bin/icount", 0o755, &bin);
    }
    let ko = std::fs::read(&pviommu).map_err(|e| format!("{}: {e}", pviommu.display()))?;
    c.file(&format!("lib/modules/{}.ko", crate::kmod::PVIOMMU_MODULE), 0o644, &ko);
    let cpio = c.finish();
    let initrd = layout.initrd(kernel, cpio.len() as u64).map_err(|e| e.to_string())?;
    let args = bootargs(passthrough);
    let tree = HostTree { pv_iommu: true, ..HostTree::guest(&BOARD, vm, &args, Some(initrd)) };
    let dtb = dtgen::write(&tree).map_err(|e| format!("writing guest1's device tree: {e}"))?;
    let placed = Placed { layout: &layout, kernel, initrd, cpio: &cpio, dtb: &dtb };
    let name = if bench { "guest1-bench" } else { "guest1" };
    placed.write(art, &format!("{name}-initramfs.cpio"), &format!("{name}.dtb"), opts.verbose)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_init_is_given_every_value_it_uses() {
        let mods = ["virtio_blk".to_string(), "uio".into(), "uio_pci_generic".into()];
        for passthrough in [false, true] {
            let f = init_files(&mods, passthrough);
            let (unset, unused) = f.unset_and_unused();
            assert!(unset.is_empty(), "unset: {unset:?}");
            assert!(unused.is_empty(), "unused: {unused:?}");
            let want = if passthrough { "identity" } else { "DMA" };
            assert_eq!(f.params.get("DOMAIN_TYPE"), Some(want));
            assert_ne!(f.params.get("OTHER_TYPE"), Some(want));
        }
        let f = init_files(&mods, false);
        assert_eq!(f.params.get("DTB_IPA"), Some("0x5be00000"));
        assert_eq!(f.params.get("FUNCTIONS"), Some("0000:00:03.0 0000:00:07.0"));
        assert_eq!(
            f.params.get("IDS"),
            Some("0000:00:03.0=0x1234:0x11e8 0000:00:07.0=0x1af4:0x1042")
        );
        crate::initscript::sh_n(INIT).unwrap();
    }

    #[test]
    fn its_bench_init_is_given_every_value_it_uses() {
        let f = bench_init_files(&["virtio_blk".to_string()]);
        let (unset, unused) = f.unset_and_unused();
        assert!(unset.is_empty(), "unset: {unset:?}");
        assert!(unused.is_empty(), "unused: {unused:?}");
        assert_eq!(f.params.get("DISK_FN"), Some("0000:00:07.0"));
        assert_eq!((f.params.get("N"), f.params.get("N2")), (Some("256"), Some("512")));
        let s = f.init;
        // The host's measurement: the same library, the same `measure`.
        let lib = crate::initscript::BENCH_LIB;
        assert!(s.contains("c=$(measure $op $n)") && f.libs.iter().any(|l| l.name == lib.name));
        assert!(s.contains("linuxbench hypercalls $op $before $(calls) $IOS"));
        crate::initscript::sh_n(s).unwrap();
    }

    #[test]
    fn its_console_is_the_emulated_pl011() {
        assert!(bootargs(false).contains("console=ttyAMA0"));
        assert!(bootargs(false).contains("earlycon=pl011,0x9000000"));
        assert!(bootargs(false).contains("deferred_probe_timeout=-1"));
        assert!(!bootargs(false).contains("iommu.passthrough"));
        assert!(bootargs(true).ends_with(" iommu.passthrough=1"));
    }
}
