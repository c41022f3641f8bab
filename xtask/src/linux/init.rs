//! The host's `/init` tests: what they check, from the platform description
//! ([`ScriptFacts`]), as the parameters of the checked-in scripts ([`host_params`]), and each
//! run's `/init` with what it sources ([`init_files`]).

use super::{Variant, GUESTS_OFF_ARG, PANIC_ARG};
use crate::initscript::{pci_dev, InitFiles, Params, ScriptCheck};
use platform::gic::gicd as gic;
use platform::linux::GUEST_CANARY_OFFSET;
use platform::qemu_virt::{
    BOARD, EDU_SLOTS, HOST_DISK_SLOT, HOST_SERIAL_SLOT, HYP_LOAD_ADDR, MANIFEST,
};
use platform::{MemRange, PciAddr};

/// The SPI (INTID) the host tries to route to guest1's CPU, enable and pend: no VM's, so the
/// hypervisor's distributor filter ignores every write (and logs the first SETSPI refusal).
pub const TEST_SPI: u32 = 100;
/// The real SMMU's event-queue and global-error INTIDs on QEMU `virt` (SPIs 74 and 77): the
/// hypervisor's. The host tries to steal, disable and pend them.
pub const HYP_SMMU_INTIDS: [u32; 2] = [106, 109];
/// The INTID of INTA of PCI slot `slot` on QEMU `virt`: the four INTx lines are shared by
/// every slot, swizzled (`PCI_INTX_SPI_BASE + (slot + pin) % 4`).
pub fn inta_intid(slot: u8) -> u32 {
    32 + platform::linux::PCI_INTX_SPI_BASE + slot as u32 % 4
}

/// What the test script checks, from the platform description.
pub struct ScriptFacts {
    /// Host RAM.
    pub ram: MemRange,
    /// The pages of it that hold the hypervisor's shadow CDs (reserved, `no-map`, in its tree).
    pub shadow_cds: MemRange,
    /// The host's PCI functions, as `bus:dev.fn vendor device`.
    pub functions: Vec<(PciAddr, u16, u16)>,
    /// Addresses `devmem` must not reach (each must fault at stage 2).
    pub faults: Vec<(u64, &'static str)>,
    /// ECAM addresses of functions the host does not own (read as all ones).
    pub absent_config: Vec<u64>,
    /// Where the test moves the host edu's BAR0 to (in config space only).
    pub moved_bar: u64,
    /// Modules to load, in order.
    pub modules: Vec<String>,
    /// What the `smmu_hyp` module's tests expect.
    pub kmod: crate::kmod::Facts,
    /// Where the host's attacks aim in the hypervisor's memory (its image).
    pub hyp_target: u64,
    /// The guests' canary pages (the guests check them after the host stopped).
    pub canaries: Vec<u64>,
    /// The SMMU is driven as coherent ([`Variant::smmu_coherent`]): the emulated one's IDR0 and
    /// the host tree's `dma-coherent` say so.
    pub smmu_coherent: bool,
}

fn ecam(a: PciAddr, off: u64) -> u64 {
    BOARD.pcie_ecam.base
        + ((a.bus as u64) << 20)
        + ((a.dev as u64) << 15)
        + ((a.func as u64) << 12)
        + off
}

impl ScriptFacts {
    /// The facts for this board and manifest.
    pub fn new(modules: Vec<String>) -> Self {
        let host = &MANIFEST.vms[0];
        let guests: Vec<_> = MANIFEST.vms.iter().filter(|v| v.id != 0).collect();
        let unowned_ram = MANIFEST.vms.iter().map(|v| v.mem.end()).max().unwrap_or(0);
        let mut faults = vec![
            (BOARD.hyp.base, "the hypervisor's memory (the board's device tree)"),
            (HYP_LOAD_ADDR, "the hypervisor's image"),
            (BOARD.hyp.end() - 0x1000, "the hypervisor's memory (stacks, heap)"),
        ];
        for g in &guests {
            faults.push((g.mem.base, "a guest's RAM"));
        }
        faults.extend([
            (unowned_ram, "RAM no VM owns"),
            (BOARD.gic_its.base, "the GIC ITS"),
            (BOARD.uart.base, "the PL011"),
            (
                BOARD.gicr.base
                    + MANIFEST.vms[1].first_cpu() as u64 * platform::linux::GICR_FRAME_SIZE,
                "guest1's CPU's redistributor",
            ),
        ]);
        let functions = vec![
            (PciAddr::slot(EDU_SLOTS[0], 0), 0x1234, 0x11e8),
            (PciAddr::slot(HOST_SERIAL_SLOT, 0), 0x1b36, 0x0002),
            // Modern-only virtio-blk (1af4:1042): see qemu.rs, iommu_platform.
            (PciAddr::slot(HOST_DISK_SLOT, 0), 0x1af4, 0x1042),
        ];
        let absent_config =
            [PciAddr::slot(0, 0), PciAddr::slot(EDU_SLOTS[1], 0), PciAddr::slot(EDU_SLOTS[2], 0)]
                .iter()
                .map(|a| ecam(*a, 0))
                .collect();
        let kmod = crate::kmod::Facts {
            abi: format!("{}.{}", host_abi::ABI_VERSION_MAJOR, host_abi::ABI_VERSION_MINOR),
            host,
            vm_count: MANIFEST.vms.len(),
            functions: functions.clone(),
            inject: false,
            gbpa_reset: "abort",
        };
        let canaries = guests.iter().map(|g| g.mem.base + GUEST_CANARY_OFFSET).collect();
        Self {
            ram: host.mem,
            shadow_cds: host.shadow_cds(),
            functions,
            faults,
            absent_config,
            moved_bar: 0x1050_0000,
            modules,
            kmod,
            hyp_target: HYP_LOAD_ADDR,
            canaries,
            smmu_coherent: BOARD.smmu_coherent,
        }
    }

    /// The facts of a run of `variant` that loads `modules`.
    pub fn for_variant(variant: Variant, modules: Vec<String>) -> Self {
        let mut f = Self::new(modules);
        f.kmod.inject = variant.pm_inject();
        f.smmu_coherent = variant.smmu_coherent();
        f
    }
}

/// What the host's tests (`host.sh`, and `kmod.sh` for the module) expect in this run.
pub fn host_params(f: &ScriptFacts) -> Params {
    let ram_node = format!("/sys/firmware/devicetree/base/memory@{:x}", f.ram.base);
    let ram_reg = format!("{:016x}{:016x}", f.ram.base, f.ram.size);
    // Its RAM is all System RAM but the shadow CD pages, which the tree reserves with `no-map`:
    // Linux lists them as "reserved" between the two pieces (and never maps them).
    let (sh, ram) = (f.shadow_cds, f.ram);
    let ram_iomem = format!(
        "{:08x}-{:08x} : System RAM {:08x}-{:08x} : System RAM",
        ram.base,
        sh.base - 1,
        sh.end(),
        ram.end() - 1
    );
    let shadow_iomem = format!("{:08x}-{:08x} : reserved", sh.base, sh.end() - 1);
    let pci_list: Vec<String> = f
        .functions
        .iter()
        .map(|(a, _, _)| format!("0000:{:02x}:{:02x}.{}", a.bus, a.dev, a.func))
        .collect();
    let pci_ids: Vec<String> = f
        .functions
        .iter()
        .zip(&pci_list)
        .map(|((_, v, d), name)| format!("{name}:0x{v:04x}:0x{d:04x}"))
        .collect();
    let faults: Vec<String> = f.faults.iter().map(|(a, _)| format!("{a:#x}")).collect();
    let absent: Vec<String> = f.absent_config.iter().map(|a| format!("{a:#x}")).collect();
    let guest_cmd = ecam(PciAddr::slot(EDU_SLOTS[1], 0), 4);
    let spi = TEST_SPI;
    let gicd = BOARD.gicd.base;
    let irouter = gicd + gic::irouter(spi);
    let isenabler = gicd + gic::bit_word(gic::ISENABLER, spi);
    let ispendr = gicd + gic::bit_word(gic::ISPENDR, spi);
    let setspi = gicd + gic::SETSPI_NSR;
    let gicd_ctlr = gicd + gic::CTLR;
    // Per hypervisor INTID: IROUTER, ISENABLER, ICENABLER, ISPENDR, IGROUPR, ICFGR, IPRIORITYR
    // (its byte).
    let hyp_regs: Vec<String> = HYP_SMMU_INTIDS
        .iter()
        .map(|&i| {
            format!(
                "{i}:{:#x}:{:#x}:{:#x}:{:#x}:{:#x}:{:#x}:{:#x}:{:#x}",
                gicd + gic::irouter(i),
                gicd + gic::bit_word(gic::ISENABLER, i),
                gicd + gic::bit_word(gic::ICENABLER, i),
                gicd + gic::bit_word(gic::ISPENDR, i),
                gicd + gic::bit_word(gic::IGROUPR, i),
                gicd + gic::icfgr(i),
                gicd + gic::ipriorityr(i),
                gic::bit(i),
            )
        })
        .collect();
    let own = inta_intid(HOST_SERIAL_SLOT);
    let disk_intid = inta_intid(HOST_DISK_SLOT);
    // Its serial port's and disk's lines, both in ISENABLER1.
    let own_lines = gic::bit(own) | gic::bit(disk_intid);
    let own_irouter = gicd + gic::irouter(own);
    let own_isenabler = gicd + gic::bit_word(gic::ISENABLER, own);
    let own_bit = gic::bit(own);
    // Its serial port's priority byte, and in CPU 0's SGI frame an unused PPI's (INTID 20) and
    // IGROUPR0.
    let own_ipriorityr = gicd + gic::ipriorityr(own);
    let cpu0_rd = BOARD.gicr.base;
    let sgi_ppi_ipriorityr = cpu0_rd + platform::gic::gicr::SGI_IPRIORITYR + 20;
    let sgi_igroupr0 = cpu0_rd + platform::gic::gicr::SGI_IGROUPR0;
    // What GICD_CTLR reads with the hypervisor's configuration: affinity routing, group 1.
    let ctlr_on = gic::CTLR_ARE | gic::CTLR_ENABLE_GRP1;
    let edu_sid = PciAddr::slot(EDU_SLOTS[0], 0).rid();
    let attack_targets: Vec<String> =
        [f.hyp_target].iter().chain(&f.canaries).map(|a| format!("{a:#x}")).collect();
    let smmu = BOARD.smmu.base;
    let hex = |a: &u64| format!("{a:#x}");
    // Its CPUs, the guests' (and one the board does not have): what PSCI, hotplug and the
    // distributor filter are checked against.
    let host_cpus = MANIFEST.vms[0].cpus;
    let guest_cpus: Vec<u32> =
        MANIFEST.vms.iter().filter(|v| v.id != 0).flat_map(|v| v.cpus.iter()).collect();
    let foreign: Vec<String> =
        guest_cpus.iter().chain(&[BOARD.cpu_count]).map(|c| c.to_string()).collect();
    let guest_mask: u64 = guest_cpus.iter().map(|c| 1u64 << c).sum();
    let mpidr = platform::linux::HostTree::mpidr;
    let guest_ids: Vec<String> =
        MANIFEST.vms.iter().filter(|v| v.id != 0).map(|v| v.id.to_string()).collect();
    let mut p = Params::default();
    p.set("PANIC_ARG", PANIC_ARG)
        .set("GUESTS_OFF_ARG", GUESTS_OFF_ARG)
        .set("GUEST_VM_IDS", guest_ids.join(" "))
        .set("RAM_NODE", ram_node)
        .set("RAM_REG", ram_reg)
        .set("RAM_IOMEM", ram_iomem)
        .set("SHADOW_IOMEM", shadow_iomem)
        .set("PCI_LIST", pci_list.join(" "))
        .set("PCI_IDS", pci_ids.join(" "))
        .set("ABSENT_CONFIG", absent.join(" "))
        .set("GUEST_EDU_COMMAND", hex(&guest_cmd))
        .set("EDU_DEV", pci_dev(EDU_SLOTS[0]))
        .set("MOVED_BAR", hex(&f.moved_bar))
        .set("MOVED_BAR_DWORD", format!("{:08x}", f.moved_bar))
        .set("FAULTS", faults.join(" "))
        .set("GICD_SETSPI", hex(&setspi))
        .set("TEST_SPI", spi)
        .set("TEST_SPI_IROUTER", hex(&irouter))
        .set("TEST_SPI_ISENABLER", hex(&isenabler))
        .set("TEST_SPI_ISPENDR", hex(&ispendr))
        .set("TEST_SPI_WORD", spi / 32 * 32)
        .set("HYP_SPI_REGS", hyp_regs.join(" "))
        .set("GICD_CTLR", hex(&gicd_ctlr))
        .set("GICD_CTLR_ON", format!("{ctlr_on:#x}"))
        .set("OWN_INTID", own)
        .set("OWN_ISENABLER", hex(&own_isenabler))
        .set("OWN_BIT", format!("{own_bit:#x}"))
        .set("OWN_IROUTER", hex(&own_irouter))
        .set("OWN_LINES", format!("{own_lines:#x}"))
        .set("OWN_IPRIORITYR", hex(&own_ipriorityr))
        .set("SGI_PPI_IPRIORITYR", hex(&sgi_ppi_ipriorityr))
        .set("SGI_IGROUPR0", hex(&sgi_igroupr0))
        .set("PRIORITY_FLOOR", format!("{:#x}", platform::gic::VM_PRIORITY_FLOOR))
        .set("SMMU_IOMMU", format!("smmu3.{smmu:#018x}"))
        .set("SMMU_PDEV", format!("{smmu:x}.iommu"))
        .set("SMMU_BASE", hex(&smmu))
        .set("SMMU_IDR0", format!("{:#010X}", host_abi::smmu::regs::emulated_idr0(f.smmu_coherent)))
        .set("SMMU_NODE", format!("/sys/firmware/devicetree/base/iommu@{smmu:x}"))
        .set("SMMU_DMA_COHERENT", if f.smmu_coherent { "1" } else { "0" })
        // Linux's ARM_SMMU_FEAT_COHERENCY (arm-smmu-v3.h, 6.12), in the features its probe line
        // prints: 0x304 natively on QEMU's SMMU, 0x204 here when forced non-coherent.
        .set("SMMU_FEAT_COHERENCY", "0x100")
        .set("SMMU_GBPA", hex(&(smmu + host_abi::smmu::regs::off::GBPA as u64)))
        .set("SMMU_GBPA_ABORT", format!("{:#010X}", host_abi::smmu::regs::Gbpa::ABORT))
        .set("MODULES", f.modules.join(" "))
        .set("ATTACK_TARGETS", attack_targets.join(" "))
        .set("EDU_SID", format!("{edu_sid:#x}"))
        // The first word of the event records naming the edu's stream (F_TRANSLATION, 0x10).
        .set("EDU_EVENT_SID_WORD", format!("0x{:016x}", 0x10u64 | (edu_sid as u64) << 32))
        .set("HYP_TARGET", hex(&f.hyp_target))
        .set("CANARIES", f.canaries.iter().map(hex).collect::<Vec<_>>().join(" "))
        .set("DISK_DEV", pci_dev(HOST_DISK_SLOT))
        .set("HOST_CPU_COUNT", host_cpus.count)
        .set("HOST_CPU_LIST", format!("{}-{}", host_cpus.first, host_cpus.end() - 1))
        .set(
            "HOST_CPU_NODES",
            host_cpus.iter().map(|c| format!("cpu@{:x}", mpidr(c))).collect::<Vec<_>>().join(" "),
        )
        .set("FIRST_CPU", host_cpus.first)
        .set("SECOND_CPU", host_cpus.first + 1)
        .set("SECOND_CPU_MASK", format!("{:#x}", 1u64 << (host_cpus.first + 1)))
        .set("SECOND_CPU_AFFINITY", hex(&mpidr(host_cpus.first + 1)))
        .set("GUEST1_AFFINITY", hex(&mpidr(MANIFEST.vms[1].first_cpu())))
        .set("GUEST_CPU_MASK", format!("{guest_mask:#x}"))
        .set("FOREIGN_CPUS", foreign.join(" "))
        .set("HOST_ENTRY", hex(&f.ram.base))
        .set("HOST_OUTSIDE", hex(&f.ram.end()))
        .set("PSCI_INVALID_PARAMETERS", host_abi::psci::INVALID_PARAMETERS)
        .set("PSCI_ALREADY_ON", host_abi::psci::ALREADY_ON)
        .set("PSCI_INVALID_ADDRESS", host_abi::psci::INVALID_ADDRESS)
        .set("PSCI_AFFINITY_ON", host_abi::psci::AFFINITY_ON)
        .set("PSCI_AFFINITY_OFF", host_abi::psci::AFFINITY_OFF);
    crate::kmod::params(&f.kmod, &mut p);
    p
}

/// The host's tests (`tests/linux/init/host.sh`): mounts, then the tests, each printing
/// `test NAME ... ok` or `test NAME ... FAILED: why`, then `N passed, M failed`, then
/// `poweroff -f`.
const HOST: &str = include_str!("../../../tests/linux/init/host.sh");

/// The host of the bench's guest run: it powers off at once.
const HOST_OFF: &str = include_str!("../../../tests/linux/init/host-off.sh");

/// The `/init` of a run of `variant` and what it sources.
pub fn init_files(variant: Variant, f: &ScriptFacts) -> InitFiles {
    match variant {
        Variant::Bench { .. } => crate::initscript::bench_files(&f.modules),
        Variant::Native => crate::kmod::native_files(),
        Variant::Stress => super::stress::stress_files(f),
        Variant::Shell => super::stress::shell_files(f),
        Variant::GuestBench => {
            InitFiles { init: HOST_OFF, libs: Vec::new(), params: Default::default() }
        }
        Variant::Tests
        | Variant::Passthrough
        | Variant::NonCoherent
        | Variant::GuestsOff
        | Variant::Panic
        | Variant::BadTree => InitFiles {
            init: HOST,
            libs: vec![crate::initscript::COMMON, crate::kmod::SCRIPT],
            params: host_params(f),
        },
    }
}

/// Every run's `/init` with what it sources (the Linux host's runs, the native run, the
/// bench's), for `modules`: (the runs' tags, the files), one entry per distinct set of files.
pub fn every_init(modules: &[String]) -> Vec<(Vec<&'static str>, InitFiles)> {
    let mut out: Vec<(Vec<&'static str>, InitFiles)> = Vec::new();
    for v in Variant::ALL {
        let f = init_files(v, &ScriptFacts::for_variant(v, modules.to_vec()));
        match out.iter_mut().find(|(_, g)| g.files() == f.files()) {
            Some((tags, _)) => tags.push(v.tag()),
            None => out.push((vec![v.tag()], f)),
        }
    }
    out
}

/// Checks every run's `/init` and what it sources ([`crate::initscript::check`]: `sh -n`,
/// every variable set, `shellcheck` if `shellcheck`), with the modules this kernel's
/// initramfs loads (as each run's parameters name them). The files are left in
/// `target/xtask/init/<tag>/`. One result per distinct set of files, named after its runs.
pub fn check_every_init(shellcheck: bool) -> Result<Vec<ScriptCheck>, String> {
    let art = super::artifacts()
        .ok_or("the Linux host's kernel is missing (cargo xtask setup): no module list")?;
    let mods: Vec<String> = super::modules::modules(&art, super::modules::MODULES)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let root = crate::tools::root().join("target/xtask/init");
    let mut checks: Vec<ScriptCheck> = every_init(&mods)
        .into_iter()
        .map(|(tags, f)| {
            let result = crate::initscript::check(&f, &root.join(tags[0]), shellcheck);
            ScriptCheck { name: format!("/init of {}", tags.join(", ")), result }
        })
        .collect();
    // The Linux guest's (`run --guest1 linux`), with its own modules.
    let guest_mods: Vec<String> =
        super::modules::modules(&art, super::guest::MODULES)?.into_iter().map(|(n, _)| n).collect();
    for (passthrough, tag, what) in [
        (false, "linux-guest1", "the Linux guest1"),
        (true, "linux-guest1-passthrough", "the Linux guest1, iommu.passthrough=1"),
    ] {
        let f = super::guest::init_files(&guest_mods, passthrough);
        let result = crate::initscript::check(&f, &root.join(tag), shellcheck);
        checks.push(ScriptCheck { name: format!("/init of {what}"), result });
    }
    let bench_mods: Vec<String> = super::modules::modules(&art, super::guest::BENCH_MODULES)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let f = super::guest::bench_init_files(&bench_mods);
    let result = crate::initscript::check(&f, &root.join("linux-guest1-bench"), shellcheck);
    checks.push(ScriptCheck { name: "/init of the Linux guest1 in the bench".into(), result });
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_knows_the_platform() {
        let f = ScriptFacts::new(vec!["uio".into(), "uio_pci_generic".into()]);
        let p = host_params(&f);
        let v = |n: &str| p.get(n).unwrap_or_else(|| panic!("{n} not set")).to_string();
        assert!(v("RAM_NODE").ends_with("/memory@44000000"));
        assert_eq!(v("RAM_REG"), "00000000440000000000000010000000");
        assert_eq!(v("RAM_IOMEM"), "44000000-53ffcfff : System RAM 53fff000-53ffffff : System RAM");
        assert_eq!(v("SHADOW_IOMEM"), "53ffd000-53ffefff : reserved");
        assert_eq!(v("PCI_LIST"), "0000:00:02.0 0000:00:05.0 0000:00:06.0");
        let faults: Vec<String> = v("FAULTS").split(' ').map(String::from).collect();
        for (a, _) in &f.faults {
            assert!(faults.contains(&format!("{a:#x}")), "{a:#x}");
        }
        assert!(f.faults.iter().any(|(a, _)| *a == MANIFEST.vms[1].mem.base));
        assert!(
            HOST.contains("insmod /lib/modules/$m.ko") && v("MODULES") == "uio uio_pci_generic"
        );
        // GICD_IROUTER of INTID 100 and its enable/pending registers; the hypervisor's SMMU
        // INTIDs' (IROUTER of 106, 109); IROUTER of the serial port's INTID 36.
        assert_eq!(
            [v("TEST_SPI_IROUTER"), v("TEST_SPI_ISENABLER"), v("TEST_SPI_ISPENDR")],
            ["0x8006320", "0x800010c", "0x800020c"]
        );
        assert!(v("HYP_SPI_REGS").starts_with("106:0x8006350:"));
        assert!(v("HYP_SPI_REGS").contains(" 109:0x8006368:"));
        assert_eq!(v("OWN_IROUTER"), "0x8006120");
        assert_eq!(v("OWN_LINES"), "0x30"); // 36 and 37 in ISENABLER1
        assert!(HOST.contains("$((en & $OWN_LINES))"));
        assert_eq!((inta_intid(HOST_SERIAL_SLOT), inta_intid(HOST_DISK_SLOT)), (36, 37));
        assert_eq!(v("GICD_CTLR_ON"), "0x12");
        assert!(!HOST.contains("spi_routed_to_a_guest_cpu"));
        // Two CPUs for the host; the guests' CPUs and one beyond the board are not its.
        assert_eq!((v("HOST_CPU_COUNT"), v("HOST_CPU_LIST")), ("2".into(), "0-1".into()));
        assert_eq!(v("HOST_CPU_NODES"), "cpu@0 cpu@1");
        assert_eq!((v("SECOND_CPU"), v("SECOND_CPU_MASK")), ("1".into(), "0x2".into()));
        assert_eq!((v("FOREIGN_CPUS"), v("GUEST_CPU_MASK")), ("2 3 4".into(), "0xc".into()));
        assert_eq!(v("GUEST1_AFFINITY"), "0x2");
        assert_eq!(
            [v("PSCI_INVALID_PARAMETERS"), v("PSCI_ALREADY_ON"), v("PSCI_INVALID_ADDRESS")],
            ["-2", "-4", "-9"]
        );
        assert!(f.faults.iter().any(|(a, _)| *a == BOARD.gicr.base + 0x4_0000), "CPU 2's");
        assert!(HOST.ends_with("poweroff -f\n"));
    }

    #[test]
    fn every_init_is_shell_with_its_variables_set() {
        let runs = every_init(&["uio".into(), "uio_pci_generic".into(), "virtio_blk".into()]);
        let tags: Vec<&str> = runs.iter().flat_map(|(t, _)| t.iter().copied()).collect();
        assert_eq!(tags.len(), Variant::ALL.len());
        // The first run lets the host inject power losses, the others do not; the non-coherent
        // run expects another IDR0 and no dma-coherent; native and bench runs have scripts of
        // their own.
        assert_eq!(runs.len(), 8, "{tags:?}");
        let tests = &runs[0].1;
        let nc = runs.iter().find(|(t, _)| t.contains(&"linux-noncoherent")).unwrap();
        assert_eq!(nc.0, ["linux-noncoherent"]);
        assert_eq!(nc.1.params.get("SMMU_DMA_COHERENT"), Some("0"));
        assert_eq!(tests.params.get("SMMU_DMA_COHERENT"), Some("1"));
        let idr0 =
            |f: &InitFiles| u32::from_str_radix(&f.params.get("SMMU_IDR0").unwrap()[2..], 16);
        assert_eq!(idr0(tests), Ok(host_abi::smmu::regs::EMULATED_IDR0));
        assert_eq!(idr0(&nc.1), Ok(host_abi::smmu::regs::emulated_idr0(false)));
        assert_ne!(idr0(tests), idr0(&nc.1));
        assert_eq!(
            nc.1.params.get("SMMU_NODE"),
            Some("/sys/firmware/devicetree/base/iommu@9050000")
        );
        let root = crate::tools::root().join("target/xtask/unit-tests/init");
        for (tags, f) in &runs {
            crate::initscript::check(f, &root.join(tags[0]), false)
                .unwrap_or_else(|e| panic!("{tags:?}: {e}"));
        }
        assert_eq!(tests.params.get("PM_INJECT"), Some("1"));
        assert_eq!(runs[1].1.params.get("PM_INJECT"), Some("0"));
        let paths: Vec<String> = tests.files().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            ["init", "etc/hyp-test.env", "lib/hyp-test/common.sh", "lib/hyp-test/kmod.sh"]
        );
        // Every path the scripts source is one the initramfs has.
        for (_, f) in &runs {
            let files = f.files();
            for (_, text) in &files {
                for l in text.lines().filter_map(|l| l.strip_prefix(". /")) {
                    assert!(files.iter().any(|(p, _)| p == l), "{l}");
                }
            }
        }
    }
}
