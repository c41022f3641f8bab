//! A Linux guest1 (`cargo xtask run --guest1 linux`): the same Debian kernel as the host, with
//! an initramfs of its own (busybox, the paravirtual IOMMU driver `smmu_pviommu`, `virtio_blk`,
//! `tests/linux/init/guest.sh`) and a device tree written from
//! `platform::linux::HostTree::guest` with its paravirtual IOMMU node (the description the
//! hypervisor checks it against), laid out in guest1's RAM like the host's.

use super::debs::Artifacts;
use super::modules::modules;
use crate::cpio::Cpio;
use crate::initscript::{InitFiles, Params, COMMON, LIB_DIR};
use crate::qemu::LinuxFiles;
use crate::tools::linux_dir;
use platform::linux::{dtgen, image_header, HostTree, Layout, IMAGE_HEADER_SIZE};
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
/// `iomem=relaxed`: its test programs its edu's registers with `devmem` while a driver holds it.
pub fn bootargs() -> String {
    format!(
        "console=ttyAMA0 earlycon=pl011,{:#x} panic=-1 cma=0 deferred_probe_timeout=-1 iomem=relaxed rdinit=/init",
        BOARD.uart.base
    )
}

/// The first line its `/init` prints (xtask checks that it appears as a `[guest1]` line).
pub const HELLO: &str = "Linux guest: /init reached";

/// The modules its initramfs carries and loads (with their dependencies): its disk's driver,
/// and the generic driver its edu is bound to (a function with no driver has no IOMMU group,
/// so its stream stays blocked and its DMA aborts without an event).
pub const MODULES: &[&str] = &["virtio_blk", "uio_pci_generic"];

/// Its `/init` and what it sources, for `mods` (the kernel's module names, in load order; the
/// paravirtual IOMMU's is loaded before them).
pub fn init_files(mods: &[String]) -> InitFiles {
    let vm = &MANIFEST.vms[GUEST];
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
        // Debian's default: translated DMA domains, strict invalidation.
        .set("DOMAIN_TYPE", "DMA")
        .set("ATTACH_LINE", "DMA domain (SET_STE stage 1")
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
    InitFiles { init: BENCH_INIT, libs: Vec::new(), params: p }
}

/// The modules guest1's bench initramfs carries and loads: its disk's driver.
pub const BENCH_MODULES: &[&str] = &["virtio_blk"];

/// Builds guest1's initramfs and device tree under `target/linux/` and returns where QEMU's
/// loader puts the kernel, the initramfs and the tree in guest1's RAM.
pub fn prepare(opts: &crate::Opts, art: &Artifacts) -> Result<LinuxFiles, String> {
    prepare_with(opts, art, false)
}

/// [`prepare`]; with `bench`, its `/init` is the bench's ([`bench_init_files`]) and its
/// initramfs carries the bench's instruction counter (`/bin/icount`).
pub fn prepare_with(
    opts: &crate::Opts,
    art: &Artifacts,
    bench: bool,
) -> Result<LinuxFiles, String> {
    let verbose = opts.verbose;
    let pviommu = crate::kmod::build_pviommu_module(opts, &art.abi)?;
    let vm = &MANIFEST.vms[GUEST];
    let layout = Layout::for_vm(vm).map_err(|e| e.to_string())?;
    let image = std::fs::read(&art.image).map_err(|e| format!("{}: {e}", art.image.display()))?;
    let head = image.get(..IMAGE_HEADER_SIZE).ok_or("truncated kernel Image")?;
    let header = image_header(head)
        .ok_or_else(|| format!("{} is not an arm64 Image", art.image.display()))?;
    let kernel = layout.kernel(&header).map_err(|e| e.to_string())?;
    let mods = modules(art, if bench { BENCH_MODULES } else { MODULES })?;
    let names: Vec<String> = mods.iter().map(|(n, _)| n.clone()).collect();
    let busybox =
        std::fs::read(&art.busybox).map_err(|e| format!("{}: {e}", art.busybox.display()))?;
    let mut c = Cpio::new();
    for d in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "lib"] {
        c.dir(d);
    }
    for d in ["lib/modules", "etc", LIB_DIR] {
        c.dir(d);
    }
    c.char_dev("dev/console", 0o600, 5, 1);
    c.char_dev("dev/null", 0o666, 1, 3);
    c.file("bin/busybox", 0o755, &busybox);
    c.symlink("bin/sh", "busybox");
    let init = if bench { bench_init_files(&names) } else { init_files(&names) };
    if bench {
        let icount = crate::kmod::build_helper(opts, "icount")?;
        let bin = std::fs::read(&icount).map_err(|e| format!("{}: {e}", icount.display()))?;
        c.file("bin/icount", 0o755, &bin);
    }
    for (path, text) in init.files() {
        c.file(&path, if path == "init" { 0o755 } else { 0o644 }, text.as_bytes());
    }
    for (name, ko) in &mods {
        c.file(&format!("lib/modules/{name}.ko"), 0o644, ko);
    }
    let ko = std::fs::read(&pviommu).map_err(|e| format!("{}: {e}", pviommu.display()))?;
    c.file(&format!("lib/modules/{}.ko", crate::kmod::PVIOMMU_MODULE), 0o644, &ko);
    let cpio = c.finish();
    let initrd = layout.initrd(kernel, cpio.len() as u64).map_err(|e| e.to_string())?;
    let args = bootargs();
    let tree = HostTree { pv_iommu: true, ..HostTree::guest(&BOARD, vm, &args, Some(initrd)) };
    let dtb = dtgen::write(&tree).map_err(|e| format!("writing guest1's device tree: {e}"))?;
    let d = linux_dir();
    let name = if bench { "guest1-bench" } else { "guest1" };
    let (initrd_path, dtb_path) =
        (d.join(format!("{name}-initramfs.cpio")), d.join(format!("{name}.dtb")));
    std::fs::write(&initrd_path, &cpio).map_err(|e| e.to_string())?;
    std::fs::write(&dtb_path, &dtb).map_err(|e| e.to_string())?;
    if verbose {
        println!(
            "xtask: guest1 (Linux): kernel at {:#x}, initramfs {} bytes at {:#x}, device tree at {:#x}",
            kernel.base,
            cpio.len(),
            initrd.base,
            layout.dtb.base
        );
    }
    Ok(LinuxFiles {
        image: art.image.clone(),
        image_addr: kernel.base,
        initrd: initrd_path,
        initrd_addr: initrd.base,
        dtb: dtb_path,
        dtb_addr: layout.dtb.base,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_init_is_given_every_value_it_uses() {
        let f = init_files(&["virtio_blk".to_string(), "uio".into(), "uio_pci_generic".into()]);
        let (unset, unused) = f.unset_and_unused();
        assert!(unset.is_empty(), "unset: {unset:?}");
        assert!(unused.is_empty(), "unused: {unused:?}");
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
        assert!(s.contains("icount run dd if=/dev/vda of=/dev/null bs=4096 count=$n iflag=direct"));
        assert!(s.contains("icount run dd if=/dev/zero of=/dev/vda bs=4096 count=$n oflag=direct"));
        assert!(s.contains("linuxbench hypercalls $op $before $(calls) $IOS"));
        crate::initscript::sh_n(s).unwrap();
    }

    #[test]
    fn its_console_is_the_emulated_pl011() {
        assert!(bootargs().contains("console=ttyAMA0"));
        assert!(bootargs().contains("earlycon=pl011,0x9000000"));
        assert!(bootargs().contains("deferred_probe_timeout=-1"));
    }
}
