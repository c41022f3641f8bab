//! Entering a VM on its CPU, and the per-VM state the trap handlers use.

use super::linux::{self, LinuxBoot};
use super::mmu::{self, VMS as MAX_VMS};
use super::sysreg::{self, *};
use super::{firmware, uart};
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use hyp::el2_controls::Hcr;
use hyp::host::mmio::{AbortReason, Region};
use hyp::hypercall::{ConsoleSink, GuestMemory, GuestRange};
use hyp::pci::{Configured, Function};
use hyp::vm::console::LineBuffer;
use hyp::vm::cpufeat::{el2_controls, CpuIdRegs};
use hyp::vm::lifecycle::{StopOutcome, VmStates};
use hyp::vm::psci::StopReason;
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
    hypercalls: AtomicU64,
    faults: AtomicU64,
    stop_reason: Once<StopReason>,
    /// The PCI functions assigned to it, configured.
    pub devices: Vec<Function>,
    /// Set if it is a Linux kernel (VM 0 only).
    pub linux: Option<LinuxBoot>,
    /// Its emulated MMIO devices (the Linux host's PCI configuration space, GIC distributor,
    /// redistributor RD frame and SMMU).
    pub mmio: Vec<Region<'static>>,
    /// MMIO refusal reasons already logged (bit per [`AbortReason::index`]).
    refusals_logged: AtomicU8,
    /// Trap kinds already logged (exception class << 24 | system register encoding).
    traps_logged: SpinMutex<Vec<u32>>,
    /// MMIO accesses emulated.
    mmio_emulated: AtomicU64,
}

static VMS: [Once<Vm>; MAX_VMS] = [const { Once::new() }; MAX_VMS];

impl Vm {
    /// Counts one hypercall (a per-VM counter, touched only by the VM's own CPU).
    pub fn count_hypercall(&self) {
        // Only this VM's CPU writes the counter: a plain load and store, no atomic
        // read-modify-write on the hypercall path.
        self.hypercalls.store(self.hypercalls.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Counts one injected fault.
    pub fn count_fault(&self) {
        self.faults.store(self.faults.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Whether the stage-2 fault just counted is among the first [`FAULT_LINES`] of this VM
    /// (logged in full), the one after them (a line saying the rest are only counted: the
    /// VM chooses how often it faults, not how much the hypervisor logs), or later.
    pub fn fault_line(&self) -> FaultLine {
        match self.faults.load(Ordering::Relaxed) {
            n if n <= FAULT_LINES => FaultLine::Full,
            n if n == FAULT_LINES + 1 => FaultLine::LastOne,
            _ => FaultLine::Counted,
        }
    }

    /// Counts one emulated MMIO access.
    pub fn count_mmio(&self) {
        self.mmio_emulated.store(self.mmio_emulated.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
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

    /// Stops this VM (PSCI SYSTEM_OFF or CPU_OFF): its CPU turns off; the last VM to stop
    /// powers the machine off after a summary.
    pub fn stop(&self, reason: StopReason) -> ! {
        self.stop_reason.call_once(|| reason);
        let mut lb = self.console.lock();
        if !lb.is_empty() {
            lb.flush(&mut |line| print_vm_line(self.spec, line));
        }
        drop(lb);
        info!(
            "vm {} stopped ({}) after {} hypercalls, {} injected faults and {} emulated MMIO accesses",
            self.spec.name,
            reason.describe(),
            self.hypercalls.load(Ordering::Relaxed),
            self.faults.load(Ordering::Relaxed),
            self.mmio_emulated.load(Ordering::Relaxed)
        );
        if self.linux.is_some() {
            linux::host_stopped(self.spec);
        }
        // Teardown: its devices can no longer reach anything, and it no longer needs the SMMU.
        super::front_door::vm_stopped(self.spec.id);
        // Its CPU turns off: the hypervisor's interrupts must go to a CPU that stays (the
        // Linux host's distributor audit must not count that move against the host).
        if super::irq::cpu_leaving(self.spec.cpu, el2_irq_cpus(Some(self.spec.id))) {
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
}

/// CPUs that take physical interrupts at EL2 (their VM does not drive the GIC) and whose VM has
/// not stopped (at boot: every such VM's CPU), leaving out VM `except`'s.
pub fn el2_irq_cpus(except: Option<u32>) -> impl Iterator<Item = u32> {
    let stopped = STATES.stopped_mask();
    VMS.iter()
        .filter_map(|s| s.get())
        .filter(move |vm| {
            vm.linux.is_none() && stopped & (1 << vm.spec.id) == 0 && Some(vm.spec.id) != except
        })
        .map(|vm| vm.spec.cpu)
}

fn summary() {
    info!("all VMs stopped (at most {} ran at the same time)", STATES.peak_running());
    let (eventq, gerror) = super::front_door::irqs_taken();
    info!("SMMU interrupts taken at EL2: {eventq} event queue, {gerror} global error");
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
            info!(
                "  {:<8} cpu {}  {:>5} hypercalls  {:>3} faults  stopped by {}",
                vm.spec.name,
                vm.spec.cpu,
                vm.hypercalls.load(Ordering::Relaxed),
                vm.faults.load(Ordering::Relaxed),
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
    let host_linux = linux::probe(&manifest.vms[0], options.smmu_coherent);
    for spec in manifest.vms {
        let pool = pools.vms[spec.id as usize].take().expect("VM table pool");
        let configured = &devices[spec.id as usize];
        let functions: Vec<Function> = configured.iter().map(|c| c.function).collect();
        let linux = host_linux.filter(|_| spec.id == 0);
        let (direct, mmio): (Vec<MemRange>, Vec<Region<'static>>) = match linux {
            Some(_) => {
                (linux::direct_mmio(spec).to_vec(), linux::emulated_devices(spec, configured))
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
            let flags =
                if host_linux.is_some() { host_abi::types::BOOT_FLAG_HOST_IS_LINUX } else { 0 };
            write_boot_info(spec, flags);
        }
        VMS[spec.id as usize].call_once(|| Vm {
            spec,
            vttbr,
            console: SpinMutex::new(LineBuffer::new()),
            hypercalls: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            stop_reason: Once::new(),
            devices: functions,
            linux,
            mmio,
            refusals_logged: AtomicU8::new(0),
            traps_logged: SpinMutex::new(Vec::new()),
            mmio_emulated: AtomicU64::new(0),
        });
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
        cpu: spec.cpu,
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
    let p = tpidr_el2::read() as *const Vm;
    // SAFETY: TPIDR_EL2 is zero until `run_on_this_cpu` stores a `&'static Vm` in it.
    unsafe { p.as_ref() }
}

/// The VM pinned to the calling CPU (TPIDR_EL2 holds a pointer to it from VM entry on).
pub fn current() -> &'static Vm {
    let p = tpidr_el2::read() as *const Vm;
    // SAFETY: `run_on_this_cpu` stored a `&'static Vm` before entering the VM, and traps from
    // a lower EL only happen after that.
    unsafe { p.as_ref() }.expect("trap from a CPU that runs no VM")
}

unsafe extern "C" {
    static __stacks_start: u8;
    fn enter_vm(entry: u64, arg: u64, stack_top: u64) -> !;
}

/// Enters the VM pinned to this CPU at EL1. Does not return: from now on this CPU only runs
/// the VM and the trap handlers.
pub fn run_on_this_cpu(cpu: u32) -> ! {
    let Some(spec) = super::PLATFORM.manifest().vm_on_cpu(cpu) else {
        info!("cpu {cpu} runs no VM: turning it off");
        firmware::cpu_off()
    };
    let vm = VMS[spec.id as usize].get().expect("VM prepared");
    let hcr = if vm.linux.is_some() { Hcr::VM_COMMON } else { Hcr::VM_INTERRUPTS_AT_EL2 };
    if vm.linux.is_none() {
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
        // The per-CPU pointer the trap handlers use to find this VM.
        tpidr_el2::write(vm as *const Vm as u64);
    }
    sysreg::tlbi_all();
    // Traps from the VM start again at the top of this CPU's stack: nothing below is live.
    let top = core::ptr::addr_of!(__stacks_start) as u64 + (cpu as u64 + 1) * 0x10000;
    // The arm64 boot protocol for Linux (x0 = its device tree), the BootInfo block otherwise;
    // both at EL1h with the MMU and caches off and every interrupt masked.
    let (entry, x0, what) = match vm.linux {
        Some(l) => (l.entry, l.dtb, "device tree"),
        None => (spec.entry_ipa(), spec.boot_info_ipa(), "boot info"),
    };
    info!(
        "cpu {cpu}: entering vm {} (VMID {}) at EL1, entry {entry:#x}, {what} {x0:#x}{}",
        spec.name,
        spec.vmid(),
        if vm.linux.is_some() { " (Linux: it drives the GIC, IMO/FMO clear)" } else { "" }
    );
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
