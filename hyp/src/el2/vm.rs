//! Entering a VM on its CPUs, starting and stopping a VM's other CPUs (PSCI `CPU_ON` /
//! `CPU_OFF`), and the per-VM state the trap handlers use.
//!
//! Every CPU belongs to one VM (the manifest's `VmSpec::cpus`). At boot the hypervisor starts
//! each VM's first CPU; a VM with more (the Linux host) starts the others itself. `CPU_ON` of
//! one of its own CPUs that is off records the entry point and context for that CPU
//! ([`BOOT`]) and powers it on through the firmware's real PSCI at `secondary_entry`; it
//! comes up through the hypervisor like any secondary (MMU, GIC redistributor, its own stack
//! and vectors) and enters the VM at EL1 with the VM's stage-2, `HCR_EL2` and EL2 controls, at
//! the given entry with the context in `x0`. `CPU_OFF` powers the physical CPU off through the
//! firmware (nothing of it stays in the hypervisor); a later `CPU_ON` starts it again the same
//! way. `AFFINITY_INFO` answers from [`CPUS`], asking the firmware whether a CPU that has
//! called `CPU_OFF` is off yet, so a VM never starts a CPU the firmware still has on.

use super::linux::{self, LinuxBoot};
use super::mmu::{self, VMS as MAX_VMS};
use super::sysreg::{self, *};
use super::{firmware, uart};
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use hyp::el2_controls::Hcr;
use hyp::host::mmio::{AbortReason, HotStore, Region};
use hyp::hypercall::{ConsoleSink, GuestMemory, GuestRange};
use hyp::pci::{Configured, Function};
use hyp::vm::console::LineBuffer;
use hyp::vm::cpufeat::{el2_controls, CpuIdRegs};
use hyp::vm::lifecycle::{CpuPower, PerCpuCounter, StopOutcome, VmStates, MAX_CPUS};
use hyp::vm::psci::{CpuState, StopReason};
use log::info;
use platform::{MemRange, Platform, VmSpec};
use spin::mutex::SpinMutex;
use spin::Once;

/// SCTLR_EL1 at VM entry: RES1 bits only (MMU and caches off), as after reset.
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// CNTHCTL_EL2: EL1PCTEN and EL1PCEN (VMs may use the physical counter and timer).
const CNTHCTL: u64 = 0b11;

/// Lifecycle of every VM.
pub static STATES: VmStates = VmStates::new(super::PLATFORM_MANIFEST.vms.len() as u32);

/// The power state of every physical CPU.
pub static CPUS: CpuPower = CpuPower::new();
const _: () = assert!(platform::qemu_virt::QEMU_CPUS as usize <= MAX_CPUS);

/// Where a CPU a VM started with `CPU_ON` enters it: (entry IPA, context), set by the CPU that
/// made the call before it powers the target on, taken by the target.
static BOOT: [SpinMutex<Option<(u64, u64)>>; MAX_CPUS] = [const { SpinMutex::new(None) }; MAX_CPUS];

/// Stage-2 faults of one VM logged in full; the rest are counted (the count is in the VM's stop
/// line and the summary).
pub const FAULT_LINES: u64 = 32;

/// What to log of a stage-2 fault (see [`Vm::fault_line`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultLine {
    /// The fault in full.
    Full,
    /// That from now on faults are only counted.
    LastOne,
    /// Nothing.
    Counted,
}

/// Per-VM state.
pub struct Vm {
    /// The manifest entry.
    pub spec: &'static VmSpec,
    vttbr: u64,
    console: SpinMutex<LineBuffer>,
    hypercalls: PerCpuCounter,
    faults: PerCpuCounter,
    stop_reason: Once<StopReason>,
    /// A CPU of it has begun stopping it (the teardown runs once).
    stopping: AtomicBool,
    /// The PCI functions assigned to it, configured.
    pub devices: Vec<Function>,
    /// Set if it is a Linux kernel (the host, VM 0, or a guest).
    pub linux: Option<LinuxBoot>,
    /// Its emulated MMIO devices (a Linux VM's PCI configuration space, GIC distributor,
    /// redistributor RD frames, and the host's SMMU or a guest's PL011).
    pub mmio: Vec<Region<'static>>,
    /// The store among `mmio` recognised before the region search: the host's emulated
    /// `SMMU_CMDQ_PROD` (see `trap::lower_sync`).
    pub hot: Option<HotStore<'static>>,
    /// Its CPUs, bit n = CPU n (linear index, `Aff0` on this board): where its SGIs may go.
    pub cpu_mask: u16,
    /// MMIO refusal reasons already logged (bit per [`AbortReason::index`]).
    refusals_logged: AtomicU8,
    /// Trap kinds already logged (exception class << 24 | system register encoding).
    traps_logged: SpinMutex<Vec<u32>>,
    /// MMIO accesses emulated.
    mmio_emulated: PerCpuCounter,
}

static VMS: [Once<Vm>; MAX_VMS] = [const { Once::new() }; MAX_VMS];

/// TPIDR_EL2 holds the running VM's address with the CPU's slot among the VM's CPUs in its low
/// bits: a `Vm` is aligned to at least as many slots as a VM may have CPUs.
const SLOT_MASK: u64 = platform::manifest::MAX_VM_CPUS as u64 - 1;
const _: () = assert!(platform::manifest::MAX_VM_CPUS.is_power_of_two());
const _: () = assert!(core::mem::align_of::<Vm>() as u64 > SLOT_MASK);

impl Vm {
    /// The calling CPU's place among this VM's CPUs (its slot in the per-CPU counters): the
    /// low bits of TPIDR_EL2 ([`run_on_this_cpu`]), so the hypercall path reads one register
    /// it reads anyway instead of decoding MPIDR. Called on a CPU of this VM only.
    #[inline]
    fn slot(&self) -> usize {
        (tpidr_el2::read() & SLOT_MASK) as usize
    }

    /// The VM pinned to the calling CPU, having counted one hypercall of it (a slot per CPU of
    /// the VM, touched only by that CPU: a plain load and store, no atomic read-modify-write on
    /// the hypercall path): the hypercall path's one read of TPIDR_EL2 for both the VM and the
    /// CPU's slot.
    #[inline(always)]
    pub fn current_counting_hypercall() -> &'static Vm {
        let t = tpidr_el2::read();
        // SAFETY: as in `current`: a trap from a lower EL comes after `run_on_this_cpu`
        // stored a `&'static Vm` (and this CPU's slot in the low bits).
        let vm = unsafe { ((t & !SLOT_MASK) as *const Vm).as_ref() }
            .expect("trap from a CPU that runs no VM");
        vm.hypercalls.add_one((t & SLOT_MASK) as usize);
        vm
    }

    /// Counts one refused MMIO access among the VM's faults (logged by kind, not by count).
    pub fn count_refused_access(&self) {
        self.faults.add_one(self.slot());
    }

    /// Counts one injected fault; returns this CPU's count of them.
    pub fn count_fault(&self) -> u64 {
        self.faults.add_one(self.slot())
    }

    /// Whether the stage-2 fault counted as `n` on its CPU ([`Vm::count_fault`]) is among the
    /// first [`FAULT_LINES`] (logged in full), the one after them (a line saying the rest are
    /// only counted: the VM chooses how often it faults, not how much the hypervisor logs), or
    /// later. Per CPU of the VM: a VM with two CPUs logs at most twice as many.
    pub fn fault_line(n: u64) -> FaultLine {
        match n {
            n if n <= FAULT_LINES => FaultLine::Full,
            n if n == FAULT_LINES + 1 => FaultLine::LastOne,
            _ => FaultLine::Counted,
        }
    }

    /// Counts one emulated MMIO access.
    pub fn count_mmio(&self) {
        self.mmio_emulated.add_one(self.slot());
    }

    /// Whether this VM has stopped or is stopping (a CPU of it that is still on parks at its
    /// next trap).
    pub fn stopped(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Whether an MMIO refusal of this kind is new for this VM (then it is logged).
    pub fn first_refusal(&self, why: AbortReason) -> bool {
        let bit = 1u8 << why.index();
        self.refusals_logged.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    /// Whether a trap of this kind is new for this VM (then it is logged).
    pub fn first_trap(&self, key: u32) -> bool {
        let mut seen = self.traps_logged.lock();
        if seen.contains(&key) {
            return false;
        }
        seen.push(key);
        true
    }

    /// Stops this VM (PSCI SYSTEM_OFF or CPU_OFF of its last CPU on): the calling CPU turns
    /// off, and any other CPU of the VM still on turns off at its next trap ([`Vm::park`]);
    /// the last VM to stop powers the machine off after a summary.
    pub fn stop(&self, reason: StopReason) -> ! {
        let cpu = sysreg::cpu_index();
        if self.stopping.swap(true, Ordering::AcqRel) {
            // Another CPU of this VM is stopping it (both called SYSTEM_OFF): that one tears
            // it down once; this one only turns off.
            self.park();
        }
        self.stop_reason.call_once(|| reason);
        let mut lb = self.console.lock();
        if !lb.is_empty() {
            lb.flush(&mut |line| print_vm_line(self.spec, line));
        }
        drop(lb);
        info!(
            "vm {} stopped ({}) on cpu {cpu} after {} hypercalls, {} injected faults and {} emulated MMIO accesses",
            self.spec.name,
            reason.describe(),
            self.hypercalls.total(),
            self.faults.total(),
            self.mmio_emulated.total()
        );
        if self.linux.is_some() && self.spec.id == 0 {
            linux::host_stopped(self.spec);
        }
        // Teardown: its devices can no longer reach anything, and it no longer needs the SMMU.
        super::front_door::vm_stopped(self.spec.id);
        // Its CPU turns off: the hypervisor's interrupts must go to a CPU that stays (the
        // Linux host's distributor audit must not count that move against the host).
        CPUS.stopped(cpu);
        if super::irq::cpu_leaving(cpu, el2_irq_cpus(Some(self.spec.id))) {
            super::linux::hypervisor_reconfigured_gic();
        }
        match STATES.stop(self.spec.id) {
            StopOutcome::LastVm => {
                summary();
                firmware::system_off()
            }
            StopOutcome::OthersRunning | StopOutcome::NotRunning => firmware::cpu_off(),
        }
    }

    /// `CPU_OFF` of one CPU of this VM while another stays on: the calling CPU alone turns
    /// off (through the firmware's PSCI), its VM carries on.
    pub fn cpu_off(&self) -> ! {
        let cpu = sysreg::cpu_index();
        info!("vm {}: cpu {cpu} off (PSCI CPU_OFF; the VM keeps its other CPUs)", self.spec.name);
        self.leave_cpu(cpu)
    }

    /// A CPU of this VM trapped after the VM stopped (on another of its CPUs): it turns off.
    pub fn park(&self) -> ! {
        let cpu = sysreg::cpu_index();
        info!("vm {}: cpu {cpu} off (the VM has stopped)", self.spec.name);
        self.leave_cpu(cpu)
    }

    fn leave_cpu(&self, cpu: u32) -> ! {
        let mut lb = self.console.lock();
        if !lb.is_empty() {
            lb.flush(&mut |line| print_vm_line(self.spec, line));
        }
        drop(lb);
        CPUS.stopped(cpu);
        if super::irq::cpu_leaving(cpu, el2_irq_cpus(None)) {
            super::linux::hypervisor_reconfigured_gic();
        }
        firmware::cpu_off()
    }

    /// `CPU_ON` of `cpu`, one of this VM's CPUs and off (the PSCI decision checked both and the
    /// entry point): it is powered on at `secondary_entry` and enters this VM at `entry` with
    /// `context` in `x0` ([`run_on_this_cpu`]). Returns the PSCI status for the caller.
    pub fn cpu_on(&self, cpu: u32, entry: u64, context: u64) -> i32 {
        use host_abi::psci::{ALREADY_ON, INTERNAL_FAILURE, ON_PENDING, SUCCESS};
        if let Err(now) = CPUS.try_start(cpu) {
            // Another CPU of the VM started it first.
            return if now == CpuState::On { ALREADY_ON } else { ON_PENDING };
        }
        *BOOT[cpu as usize].lock() = Some((entry, context));
        let r = firmware::cpu_on(sysreg::affinity(cpu), secondary_entry_address(), cpu as u64);
        if r != 0 {
            BOOT[cpu as usize].lock().take();
            CPUS.stopped(cpu);
            log::warn!(
                "vm {}: PSCI CPU_ON of cpu {cpu} failed in the firmware ({r})",
                self.spec.name
            );
            return INTERNAL_FAILURE;
        }
        SUCCESS
    }
}

/// The power state of CPU `cpu` as a VM's PSCI calls see it: the hypervisor's record, except
/// that a CPU recorded off which the firmware has not finished turning off yet (it called
/// `CPU_OFF` an instant ago) is still on.
pub fn psci_state(cpu: u32) -> CpuState {
    match CPUS.get(cpu) {
        CpuState::Off
            if firmware::affinity_info(sysreg::affinity(cpu))
                != host_abi::psci::AFFINITY_OFF as i64 =>
        {
            CpuState::On
        }
        s => s,
    }
}

/// The physical address secondary CPUs start at (entry.S).
pub fn secondary_entry_address() -> u64 {
    unsafe extern "C" {
        fn secondary_entry();
    }
    secondary_entry as *const () as usize as u64
}

/// SGI writes of a Linux host that named a CPU not its own (or were group 0): not sent there.
static SGIS_DROPPED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Counts one such SGI write (`el2::trap`).
pub fn count_dropped_sgi() {
    SGIS_DROPPED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

/// CPUs that may take the hypervisor's interrupts (group 0: FIQs at EL2 on every CPU, a Linux
/// host's included), are on or starting, and whose VM has not stopped, leaving out VM
/// `except`'s. In manifest order: the host's CPUs first, so that while the host runs it is the
/// one paying for the SMMU's interrupts (the floods it causes), and they keep being served when
/// every guest is off.
pub fn el2_irq_cpus(except: Option<u32>) -> impl Iterator<Item = u32> {
    let stopped = STATES.stopped_mask();
    VMS.iter()
        .filter_map(|s| s.get())
        .filter(move |vm| stopped & (1 << vm.spec.id) == 0 && Some(vm.spec.id) != except)
        .flat_map(|vm| vm.spec.cpus.iter())
        .filter(|&cpu| CPUS.get(cpu) != CpuState::Off)
}

fn summary() {
    info!("all VMs stopped (at most {} ran at the same time)", STATES.peak_running());
    let cpus = super::PLATFORM_BOARD.cpu_count;
    let (mut eventq, mut gerror) = (0, 0);
    for cpu in 0..cpus {
        let w = super::front_door::smmu_work_of(cpu);
        let owner = super::PLATFORM.manifest().vm_on_cpu(cpu).map_or("no VM", |s| s.name);
        info!(
            "SMMU work on cpu {cpu} ({owner}'s): {} event-queue and {} global-error interrupts, {} event records taken off the SMMU's queue ({} of its VM's, {} of the host's)",
            w.eventq_irqs, w.gerror_irqs, w.records, w.own_records, w.host_records
        );
        (eventq, gerror) = (eventq + w.eventq_irqs, gerror + w.gerror_irqs);
    }
    info!("SMMU interrupts taken at EL2: {eventq} event queue, {gerror} global error");
    info!(
        "the Linux host's SGIs: {} dropped (not to its own CPUs, or group 0)",
        SGIS_DROPPED.load(core::sync::atomic::Ordering::Relaxed)
    );
    let pm = super::front_door::pm_status_now();
    info!(
        "SMMU power: {} suspends (powered off), {} resumes, {} commands elided while off, {} ATC wake-ups, {} power losses recovered; now {}",
        pm.suspends,
        pm.resumes,
        pm.elided,
        pm.wakeups,
        pm.losses,
        if pm.power == 1 { "off" } else { "on" }
    );
    let (resumes, attaches, blocks) = super::front_door::failures();
    info!(
        "SMMU failures: {resumes} resumes failed, {attaches} attaches failed (stream left blocked), {blocks} streams not invalidated back to abort"
    );
    for slot in VMS.iter() {
        if let Some(vm) = slot.get() {
            let c = vm.spec.cpus;
            info!(
                "  {:<8} cpu {:<3}  {:>5} hypercalls  {:>3} faults  stopped by {}",
                vm.spec.name,
                if c.count == 1 {
                    alloc::format!("{}", c.first)
                } else {
                    alloc::format!("{}-{}", c.first, c.end() - 1)
                },
                vm.hypercalls.total(),
                vm.faults.total(),
                vm.stop_reason.get().map_or("?", |r| r.describe())
            );
        }
    }
    info!("powering off");
}

/// Builds every VM's stage-2 (RAM, its devices' BARs, and for a Linux host the GIC frames it
/// drives itself) and its emulated MMIO, checks a Linux host's device tree, and writes the
/// bare-metal VMs' boot-info blocks (boot CPU, before any VM runs).
pub fn prepare_all(
    pools: &mut mmu::Pools,
    devices: &[Vec<Configured>],
    options: hyp::dt::BootOptions,
) {
    let manifest = super::PLATFORM.manifest();
    // VM 0 a Linux host, any other VM a Linux guest, if its RAM holds an `Image` (each tree
    // checked before anything else is built).
    let linux_vms: Vec<Option<LinuxBoot>> =
        manifest.vms.iter().map(|spec| linux::probe(spec, options.smmu_coherent)).collect();
    let host_linux = linux_vms[0];
    for spec in manifest.vms {
        let pool = pools.vms[spec.id as usize].take().expect("VM table pool");
        let configured = &devices[spec.id as usize];
        let functions: Vec<Function> = configured.iter().map(|c| c.function).collect();
        let linux = linux_vms[spec.id as usize];
        // The interrupts the other Linux VMs configure themselves.
        let mut others = hyp::host::gicd::IntidSet::new();
        for (o, _) in
            manifest.vms.iter().zip(&linux_vms).filter(|(o, l)| l.is_some() && o.id != spec.id)
        {
            for i in linux::intids_of(o).iter() {
                others.insert(i);
            }
        }
        let (direct, mmio): (Vec<MemRange>, Vec<Region<'static>>) = match linux {
            Some(_) => {
                (linux::direct_mmio(spec), linux::emulated_devices(spec, configured, others))
            }
            // The benchmark's bare-metal host with the emulated SMMU (`host_vsmmu=1`).
            None if spec.id == 0 && options.host_vsmmu => {
                super::front_door::init_host_smmu(
                    spec,
                    platform::linux::HOST_SMMU_EVENTQ_SPI,
                    platform::linux::HOST_SMMU_GERROR_SPI,
                    options.smmu_coherent,
                );
                let board = super::PLATFORM.board();
                let smmu = Region { range: board.smmu, device: &super::front_door::HostSmmuDevice };
                (Vec::new(), alloc::vec![smmu])
            }
            None => (Vec::new(), Vec::new()),
        };
        // The host's emulated SMMU, if it has one (its region is the board's SMMU frame).
        let board = super::PLATFORM.board();
        let hot = mmio
            .iter()
            .find(|r| r.range.base == board.smmu.base && r.range.size == board.smmu.size)
            .and_then(super::front_door::hot_cmdq_prod);
        // The stage-2 tables are in use by the hardware from now on: they live on the heap and
        // are never dropped.
        let s2 = alloc::boxed::Box::leak(alloc::boxed::Box::new(mmu::build_stage2(
            pool, spec, &functions, &direct,
        )));
        let vttbr = s2.root_address().0 as u64 | ((spec.vmid() as u64) << 48);
        // The SMMU walks a stage-2 of its own for this VM's devices: its RAM only (no BARs, no
        // GIC frames), same VMID (`hyp::vm::stage2::build_dma_stage2`, host-tested). Never dropped
        // either.
        let dma_pool = pools.dma[spec.id as usize].take().expect("VM DMA table pool");
        let (pool_base, pool_len) = dma_pool.span();
        let dma = alloc::boxed::Box::leak(alloc::boxed::Box::new(
            hyp::vm::stage2::build_dma_stage2(dma_pool, spec),
        ));
        if !options.smmu_coherent {
            // A non-coherent SMMU walks these tables in memory, past the CPU's caches: clean
            // the whole pool they were built from to the point of coherency now, before any STE
            // names them (attaches come later: hypercalls, the host's SMMUEN). They are built
            // once here and never change after boot (no map, unmap or permission change ever
            // reaches them), so this one clean is all they need.
            super::cache::clean(platform::regs::DmaRange { pa: pool_base, len: pool_len });
            info!(
                "vm {}: DMA stage-2 tables ({pool_base:#x}+{pool_len:#x}) cleaned to the point of coherency for the non-coherent SMMU (built once, never changed)",
                spec.name
            );
        }
        super::front_door::set_stage2(
            spec.id,
            hyp::iommu::driver::ste::S2Config::vm(spec.vmid(), dma.root_address().0 as u64),
        );
        super::front_door::set_shadow_cds(spec);
        if linux.is_some_and(|l| !l.pv_iommu) && spec.id != 0 {
            attach_identity(spec, &functions);
        }
        s2.mark_active();
        for r in &direct {
            info!(
                "vm {}: GIC frame {:#x}+{:#x} mapped (it drives the GIC)",
                spec.name, r.base, r.size
            );
        }
        for r in &mmio {
            info!(
                "vm {}: {} emulated at {:#x}+{:#x} (absent from its stage-2)",
                spec.name,
                r.device.name(),
                r.range.base,
                r.range.size
            );
        }
        if linux.is_none() {
            use host_abi::types::{BOOT_FLAG_GUESTS_OFF, BOOT_FLAG_HOST_IS_LINUX};
            let mut flags = if host_linux.is_some() { BOOT_FLAG_HOST_IS_LINUX } else { 0 };
            if options.guests_off && host_linux.is_some() && spec.id != 0 {
                flags |= BOOT_FLAG_GUESTS_OFF;
            }
            write_boot_info(spec, flags);
        }
        VMS[spec.id as usize].call_once(|| Vm {
            spec,
            vttbr,
            console: SpinMutex::new(LineBuffer::new()),
            hypercalls: PerCpuCounter::new(),
            faults: PerCpuCounter::new(),
            stop_reason: Once::new(),
            stopping: AtomicBool::new(false),
            devices: functions,
            linux,
            hot,
            cpu_mask: spec.cpus.iter().fold(0u16, |m, c| m | (1 << (c & 15))),
            mmio,
            refusals_logged: AtomicU8::new(0),
            traps_logged: SpinMutex::new(Vec::new()),
            mmio_emulated: PerCpuCounter::new(),
        });
    }
}

/// A Linux guest without a paravirtual IOMMU in its tree: its functions start in the identity
/// domain (its stage 2 alone: device addresses are its IPAs, limited to its own RAM), so that
/// an unmodified kernel's DMA works with no IOMMU driver. (With one, they stay blocked until its
/// driver attaches them with SET_STE/CLEAR_STE like a bare-metal guest's.) Isolation is the stage 2's: no other VM's memory, no hypervisor
/// memory, no MMIO.
fn attach_identity(spec: &'static VmSpec, functions: &[Function]) {
    use hyp::iommu::driver::ste::Domain;
    use hyp::iommu::service::SmmuCalls;
    for f in functions {
        let sid = f.addr.rid();
        let mut smmu = super::front_door::HypercallSmmu;
        match smmu.attach(spec.id, sid, Domain::Identity, &hyp::vm::memory::NoMemory) {
            Ok(()) => info!(
                "vm {}: stream {sid:#x} ({}) attached to its identity domain (Linux guest)",
                spec.name, f.addr
            ),
            Err(e) => log::warn!(
                "vm {}: stream {sid:#x} ({}) left blocked: identity attach failed: {e:?}",
                spec.name,
                f.addr
            ),
        }
    }
}

/// Size of [`host_abi::BootInfo`].
const BOOT_INFO_SIZE: u64 = core::mem::size_of::<host_abi::BootInfo>() as u64;

fn write_boot_info(spec: &'static VmSpec, flags: u64) {
    use host_abi::types::{encode_name, BOOT_INFO_MAGIC};
    let info = host_abi::BootInfo {
        magic: BOOT_INFO_MAGIC,
        abi_version: host_abi::ABI_VERSION,
        vm_id: spec.id,
        mem_base: spec.mem.base,
        mem_size: spec.mem.size,
        cpu: spec.first_cpu(),
        vm_count: super::PLATFORM_MANIFEST.vms.len() as u32,
        name: encode_name(spec.name),
        flags,
    };
    let range = GuestRange::of(spec, spec.boot_info_ipa(), BOOT_INFO_SIZE)
        .expect("the boot-info block is the last page of the VM's RAM");
    super::guestmem::IdentityGuestMemory::of(spec)
        .write(range, zerocopy::IntoBytes::as_bytes(&info))
        .expect("the VM's own memory");
}

/// The EL2 controls of the VM's EL1 on this CPU: features the ID registers advertise are
/// enabled (see `hyp::vm::cpufeat`), the PMU's event counters are all the VM's, no debug traps.
fn configure_el1_features() {
    let id = CpuIdRegs {
        pfr0: id_aa64pfr0_el1::read(),
        pfr1: id_aa64pfr1_el1::read(),
        mmfr1: id_aa64mmfr1_el1::read(),
        mmfr3: id_aa64mmfr3_el1::read(),
        isar2: id_aa64isar2_el1::read(),
        smfr0: id_aa64smfr0_el1::read(),
    };
    let c = el2_controls(&id);
    // PMCR_EL0.N: the number of event counters; MDCR_EL2.HPMN = N gives them all to EL1.
    let counters = (pmcr_el0::read() >> 11) & 0x1f;
    // SAFETY: these only change what EL1/EL0 may use (FP/SVE/SME, vector lengths, MOPS and
    // other HCRX-gated features, PMU counters, debug traps); the hypervisor itself uses none of
    // them (it is built without FP/SIMD).
    unsafe {
        cptr_el2::write(c.cptr);
        if let Some(z) = c.zcr {
            zcr_el2::write(z);
        }
        if let Some(m) = c.smcr {
            smcr_el2::write(m);
        }
        if let Some(h) = c.hcrx {
            hcrx_el2::write(h);
        }
        mdcr_el2::write(counters);
    }
    sysreg::dsb_isb();
}

/// The VM pinned to the calling CPU, if it has been entered.
pub fn try_current() -> Option<&'static Vm> {
    let p = (tpidr_el2::read() & !SLOT_MASK) as *const Vm;
    // SAFETY: TPIDR_EL2 is zero until `run_on_this_cpu` stores a `&'static Vm` in it (with the
    // CPU's slot in the low bits, masked off here).
    unsafe { p.as_ref() }
}

/// The VM pinned to the calling CPU (TPIDR_EL2 holds a pointer to it from VM entry on).
pub fn current() -> &'static Vm {
    let p = (tpidr_el2::read() & !SLOT_MASK) as *const Vm;
    // SAFETY: `run_on_this_cpu` stored a `&'static Vm` before entering the VM, and traps from
    // a lower EL only happen after that.
    unsafe { p.as_ref() }.expect("trap from a CPU that runs no VM")
}

unsafe extern "C" {
    static __stacks_start: u8;
    fn enter_vm(entry: u64, arg: u64, stack_top: u64) -> !;
}

/// Enters the VM that owns this CPU at EL1: at its image (its first CPU, started by the
/// hypervisor at boot) or where its `CPU_ON` said. Does not return: from now on this CPU only
/// runs the VM and the trap handlers.
pub fn run_on_this_cpu(cpu: u32) -> ! {
    let Some(spec) = super::PLATFORM.manifest().vm_on_cpu(cpu) else {
        info!("cpu {cpu} runs no VM: turning it off");
        CPUS.stopped(cpu);
        firmware::cpu_off()
    };
    let vm = VMS[spec.id as usize].get().expect("VM prepared");
    let started = BOOT.get(cpu as usize).and_then(|b| b.lock().take());
    if started.is_none() && cpu != spec.first_cpu() || vm.stopped() {
        info!("cpu {cpu}: vm {} did not start it, or has stopped: turning it off", spec.name);
        CPUS.stopped(cpu);
        firmware::cpu_off()
    }
    let slot = spec.cpus.index(cpu).expect("the VM on this CPU owns it") as u64;
    let hcr = if vm.linux.is_some() { Hcr::LINUX_HOST } else { Hcr::VM_INTERRUPTS_AT_EL2 };
    if vm.linux.is_some() {
        // Its IRQs stay at EL1, the hypervisor's FIQs come to EL2.
        super::irq::init_linux_cpu();
    } else {
        // Interrupts on this CPU come to EL2 (the Linux host may route some here).
        super::irq::init_cpu();
    }
    configure_el1_features();
    // SAFETY: this configures the EL1&0 regime for the VM: stage-2 on with its own tables and
    // VMID, EL1 state reset. The hypervisor's own EL2 regime is not affected.
    unsafe {
        hcr_el2::write(hcr.bits());
        vtcr_el2::write(hyp::el2_controls::VTCR);
        vttbr_el2::write(vm.vttbr);
        vmpidr_el2::write(mpidr_el1::read());
        vpidr_el2::write(midr_el1::read());
        cnthctl_el2::write(CNTHCTL);
        cntvoff_el2::write(0);
        sctlr_el1::write(SCTLR_EL1_RESET);
        cpacr_el1::write(3 << 20);
        vbar_el1::write(0);
        // The per-CPU pointer the trap handlers use to find this VM, and this CPU's slot
        // among its CPUs (see `SLOT_MASK`).
        tpidr_el2::write(vm as *const Vm as u64 | slot);
    }
    sysreg::tlbi_all();
    // Traps from the VM start again at the top of this CPU's stack: nothing below is live.
    let top = core::ptr::addr_of!(__stacks_start) as u64 + (cpu as u64 + 1) * 0x10000;
    // The arm64 boot protocol for Linux (x0 = its device tree), the BootInfo block otherwise;
    // both at EL1h with the MMU and caches off and every interrupt masked. A CPU the VM
    // started itself: where its CPU_ON said, as PSCI specifies (EL1h, MMU off, masked).
    let (entry, x0, what) = match (started, vm.linux) {
        (Some((entry, context)), _) => (entry, context, "PSCI CPU_ON context"),
        (None, Some(l)) => (l.entry, l.dtb, "device tree"),
        (None, None) => (spec.entry_ipa(), spec.boot_info_ipa(), "boot info"),
    };
    info!(
        "cpu {cpu}: entering vm {} (VMID {}) at EL1, entry {entry:#x}, {what} {x0:#x}{}",
        spec.name,
        spec.vmid(),
        if vm.linux.is_some() {
            " (Linux: it drives the GIC, IMO clear; FMO set: the hypervisor's FIQs come to EL2)"
        } else {
            ""
        }
    );
    CPUS.started(cpu);
    STATES.start(spec.id);
    // SAFETY: `top` is this CPU's own stack top; enter_vm never returns, so abandoning the
    // current stack contents is sound.
    unsafe { enter_vm(entry, x0, top) }
}

fn print_vm_line(spec: &VmSpec, line: &[u8]) {
    let text = core::str::from_utf8(line).unwrap_or("<invalid utf-8>");
    uart::with_console(|c| {
        // The PL011's fmt::Write never fails (it waits for room): nothing to handle.
        let _ = writeln!(c, "[{}] {}", spec.name, text);
    });
}

/// VM console output: assembled into lines per VM, printed with the VM's name.
pub struct Console;

impl ConsoleSink for Console {
    fn vm_text(&mut self, vm: &VmSpec, bytes: &[u8]) {
        if let Some(v) = VMS.get(vm.id as usize).and_then(|s| s.get()) {
            v.console.lock().push(bytes, &mut |line| print_vm_line(vm, line));
        }
    }
}
