//! The SMMU as the EL2 side holds it: the one front door. The SMMU service and, with a Linux
//! host, the SMMU it is given (emulated) live behind one lock ([`SMMU`]), so no order of two
//! locks has to be remembered; every hypercall ([`HypercallSmmu`], the [`SmmuCalls`] the dispatcher
//! uses), every trapped access of the host to its emulated SMMU ([`HostSmmuDevice`]) and the
//! real SMMU's interrupt go through it. Each takes the lock for its own bounded work and logs,
//! once the lock is released, what a hypervisor engineer needs to know.

use super::smmu_regs::MmioRegs;
use super::PLATFORM;
use core::sync::atomic::{AtomicU64, Ordering};
use host_abi::smmu::regs::{off, IrqCtrl};
use host_abi::smmu::Command;
use host_abi::{HypError, PmStatus, PmVoteResult, Refusal, SmmuStats};
use hyp::host::mmio::{HotStore, Region};
use hyp::iommu::driver::order::Coherency;
use hyp::iommu::driver::smmu::{EventWords, SmmuDriver};
use hyp::iommu::driver::ste::{Domain, S2Config};
use hyp::iommu::emulated::{self, Notice, VirtualSmmu};
use hyp::iommu::pm::Vote;
use hyp::iommu::service::events::{EventDestination, EventReadResult, Tally};
use hyp::iommu::service::{InjectError, Report, SmmuCalls};
use hyp::iommu::service::{SmmuService, DRAIN_PER_ENTRY};
use hyp::iommu::validate::SmmuCaps;
use hyp::vm::memory::{GuestMemory, GuestRange};
use log::{debug, error, info, warn};
use platform::{Platform, VmSpec};
use spin::mutex::SpinMutex;

/// The SMMU, shared by all CPUs: the service, and the host's emulated SMMU if the host is
/// Linux. One lock for both.
static SMMU: SpinMutex<Option<Locked>> = SpinMutex::new(None);

/// What [`SMMU`] holds.
struct Locked {
    /// The SMMU service (the real SMMU's only driver).
    service: SmmuService<MmioRegs>,
    /// The Linux host's emulated SMMU, once it has one.
    host: Option<HostSmmu>,
}

/// The emulated SMMU and where its interrupts go.
struct HostSmmu {
    v: VirtualSmmu,
    spec: &'static VmSpec,
    eventq_intid: u32,
    gerror_intid: u32,
}

/// Probes and enables the SMMU (every stream aborts) and builds the service.
pub fn init(board: &platform::Board, options: hyp::dt::BootOptions) {
    let max_sid = PLATFORM
        .manifest()
        .vms
        .iter()
        .flat_map(|v| v.devices.iter())
        .map(|d| d.rid())
        .max()
        .unwrap_or(0)
        .max(if options.bench_streams > 0 {
            hyp::dt::BENCH_STREAM_BASE + options.bench_streams - 1
        } else {
            0
        });
    // SAFETY: the board's SMMU register space, mapped as device memory at EL2; the boot-time
    // GBPA handle is gone, and from now on this is the only one, behind the service's lock.
    let mmio = unsafe { MmioRegs::new(board.smmu.base as usize) };
    let (driver, table) = match SmmuDriver::init(
        mmio,
        max_sid,
        true,
        IrqCtrl::EVENTQ_IRQEN | IrqCtrl::GERROR_IRQEN,
        Coherency::of(options.smmu_coherent),
    ) {
        Ok(x) => x,
        Err(e) => crate::fatal(format_args!("SMMU: {e}")),
    };
    if driver.snoop_unused() {
        info!(
            "SMMU: reports coherent access (IDR0.COHACC = 1) but is driven as non-coherent: cache maintenance and non-cacheable walks"
        );
    }
    let f = driver.features;
    info!(
        "SMMU: IDR0 {:#010x} IDR1 {:#010x} IDR5 {:#010x}: S1 {}, S2 {}, {} SID bits, {} SSID bits, {}-bit OAS",
        f.idr0.0,
        f.idr1.0,
        f.idr5.0,
        f.idr0.s1p(),
        f.idr0.s2p(),
        f.idr1.sidsize(),
        f.idr1.ssidsize(),
        f.idr5.oas_bits()
    );
    info!(
        "SMMU: enabled, {} stream table for {} SID bits, every STE abort, caches invalidated",
        if table.is_two_level() { "two-level" } else { "linear" },
        table.sid_bits()
    );
    let power = alloc::boxed::Box::new(PLATFORM.power_controller(options.gbpa_reset));
    let mut io = SmmuService::new(driver, table, PLATFORM.manifest(), power);
    // Power-loss injection is a test facility of the host alone.
    io.injector = options.pm_inject.then_some(0);
    // Each routed event is logged at debug level; not even called when that is filtered out
    // (the drain is on every SMMU call's path).
    io.event_log = log::log_enabled!(log::Level::Debug).then_some(log_event as _);
    MmioRegs::set_gbpa_reset(options.gbpa_reset.register_value());
    io.set_pm_enabled(options.pm);
    if options.bench_streams > 0 {
        io.add_streams(0, hyp::dt::BENCH_STREAM_BASE, options.bench_streams);
        info!(
            "SMMU: {} device-less streams from {:#x} assigned to vm {} (benchmark)",
            options.bench_streams,
            hyp::dt::BENCH_STREAM_BASE,
            PLATFORM.manifest().vms[0].name
        );
    }
    *SMMU.lock() = Some(Locked { service: io, host: None });
}

/// CPUs the per-CPU counters below cover (the board's `cpu_count` is at most this).
const COUNTED_CPUS: usize = hyp::vm::lifecycle::MAX_CPUS;

/// Interrupts from the real SMMU taken at EL2, by CPU: event queue, global errors.
static IRQS_TAKEN: [[AtomicU64; 2]; COUNTED_CPUS] =
    [const { [AtomicU64::new(0), AtomicU64::new(0)] }; COUNTED_CPUS];

/// Event records taken off the real SMMU's queue, by the CPU that took them: in its interrupt,
/// a VM's SMMU call, or the host's access to its emulated SMMU. Where a flood is paid: all
/// records, those of the VM the entry was made for (the VM of that CPU: its calls, or whoever
/// runs there for the interrupt), and those of the host (VM 0).
static RECORDS_DRAINED: [[AtomicU64; 3]; COUNTED_CPUS] =
    [const { [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)] }; COUNTED_CPUS];

/// Charges the records this entry routed (the service's tally: all, its own VM's, the host's)
/// to this CPU. Nothing to do, past one load and a compare, when it routed none: the common case.
#[inline]
fn charge(service: &mut SmmuService<MmioRegs>) {
    if let Some(t) = service.take_tally() {
        charge_taken(t);
    }
}

#[cold]
#[inline(never)]
fn charge_taken(t: Tally) {
    let c = &RECORDS_DRAINED[super::sysreg::cpu_index() as usize % COUNTED_CPUS];
    for (i, n) in [t.records, t.own, t.host].into_iter().enumerate() {
        c[i].fetch_add(n, Ordering::Relaxed);
    }
}

/// Sets up an entry into the service made for VM `own` (whose records the tally counts apart)
/// that drains at most `drain` records (every entry says how many: none is left with an
/// earlier entry's limit).
#[inline(always)]
fn enter(service: &mut SmmuService<MmioRegs>, own: u32, drain: u32) {
    service.tally_for(own);
    service.entry_drain = drain;
}

/// The VM of this CPU (from TPIDR_EL2; `u32::MAX`, nobody's, before any VM runs here).
#[inline]
fn this_cpus_vm() -> u32 {
    super::vm::try_current().map_or(u32::MAX, |v| v.spec.id)
}

/// The real SMMU's event-queue and global-error interrupts: each drains the event queue
/// (routing every record to its VM, the Linux host's into its own event queue) and handles
/// global errors, whatever the VMs are doing; and goes on with a host command queue that an
/// access stopped at its budget, if its host waits for MSIs rather than reading CMDQ_CONS
/// (the event-queue SPI is then pended on purpose, [`HostSmmu::serve`]).
///
/// Each round takes at most `DRAIN_PER_ENTRY` records; when records are left it makes its own
/// interrupt pending again, so the drain goes on, a bounded round at a time, on the same CPU
/// (the host's while it runs: its floods are paid by its CPUs).
fn on_smmu_irq(intid: u32) {
    let board = PLATFORM.board();
    let kind = usize::from(intid == board.smmu_irqs.gerror + 32);
    let cpu = super::sysreg::cpu_index() as usize % COUNTED_CPUS;
    IRQS_TAKEN[cpu][kind].fetch_add(1, Ordering::Relaxed);
    let backlog = with(Caller::Interrupt, false, |io| {
        io.service_hardware();
        io.event_backlog()
    });
    if backlog {
        // Progress: the records left have waited no longer than this round.
        WAITING_SINCE.store(super::sysreg::cntpct_el0::read(), Ordering::Relaxed);
        super::irq::pend_spi(board.smmu_irqs.eventq + 32);
    }
}

/// Makes the hypervisor's own event-queue SPI pending (an FIQ at EL2 on the CPU it is routed
/// to: the host's first while it runs), so that [`on_smmu_irq`] goes on with the host's
/// command queue. With no running CPU to take it, the host's next access goes on instead.
#[cold]
#[inline(never)]
fn continue_later() {
    if super::irq::spis_routed() {
        super::irq::pend_spi(PLATFORM.board().smmu_irqs.eventq + 32);
    }
}

/// Since when (`CNTPCT_EL0`) records have been waiting in the SMMU's event queue with nobody
/// draining them (0: none waiting, as far as the last entry saw).
static WAITING_SINCE: AtomicU64 = AtomicU64::new(0);

/// How long records may wait for the SMMU's interrupt before a guest's call drains them
/// itself: 100 ms (in counter ticks, from `CNTFRQ_EL0`).
fn interrupt_late() -> bool {
    let since = WAITING_SINCE.load(Ordering::Relaxed);
    // Nothing waiting (the common case): no counter read.
    since != 0
        && super::sysreg::cntpct_el0::read().wrapping_sub(since)
            > super::sysreg::cntfrq_el0::read() / 10
}

/// Notes, after an entry, whether records wait in the SMMU's event queue.
#[inline]
fn note_backlog(service: &SmmuService<MmioRegs>) {
    if service.event_backlog() {
        let now = super::sysreg::cntpct_el0::read();
        let _ = WAITING_SINCE.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    } else if WAITING_SINCE.load(Ordering::Relaxed) != 0 {
        WAITING_SINCE.store(0, Ordering::Relaxed);
    }
}

/// Takes the real SMMU's wired interrupts at EL2 (group 0: FIQs) on CPU `cpu`, the first CPU of
/// `vm::el2_irq_cpus`: the Linux host's first while it runs. The SMMU raises them because the
/// driver enabled them (`SMMU_IRQ_CTRL`).
pub fn take_irqs(board: &platform::Board, cpu: u32) {
    for (what, spi) in [("eventq", board.smmu_irqs.eventq), ("gerror", board.smmu_irqs.gerror)] {
        if let Err(e) = super::irq::take_spi(spi + 32, on_smmu_irq, cpu) {
            crate::fatal(format_args!("SMMU: cannot take its {what} interrupt (SPI {spi}): {e}"));
        }
    }
    info!(
        "SMMU: eventq (SPI {}) and gerror (SPI {}) interrupts taken at EL2 (group 0, FIQ) on cpu {cpu}",
        board.smmu_irqs.eventq, board.smmu_irqs.gerror
    );
}

/// The SMMU's power status (for the hypervisor's closing summary).
pub fn pm_status_now() -> PmStatus {
    SMMU.lock().as_ref().map(|s| s.service.pm_status()).unwrap_or_default()
}

/// How often the SMMU service failed: (resumes, attaches, streams not written back to abort).
pub fn failures() -> (u64, u64, u64) {
    SMMU.lock().as_ref().map(|s| s.service.failures()).unwrap_or_default()
}

/// The SMMU work CPU `cpu` did: interrupts taken at EL2, event records it took off the real
/// SMMU's queue (in any of its entries into the service), how many of those were its VM's and
/// how many the host's.
#[derive(Clone, Copy, Debug, Default)]
pub struct SmmuWork {
    /// Event-queue interrupts.
    pub eventq_irqs: u64,
    /// Global-error interrupts.
    pub gerror_irqs: u64,
    /// Records taken.
    pub records: u64,
    /// Records taken of streams its VM owns.
    pub own_records: u64,
    /// Records taken of streams the host (VM 0) owns.
    pub host_records: u64,
}

/// [`SmmuWork`] of CPU `cpu`.
pub fn smmu_work_of(cpu: u32) -> SmmuWork {
    let c = cpu as usize % COUNTED_CPUS;
    let (irqs, recs) = (&IRQS_TAKEN[c], &RECORDS_DRAINED[c]);
    SmmuWork {
        eventq_irqs: irqs[0].load(Ordering::Relaxed),
        gerror_irqs: irqs[1].load(Ordering::Relaxed),
        records: recs[0].load(Ordering::Relaxed),
        own_records: recs[1].load(Ordering::Relaxed),
        host_records: recs[2].load(Ordering::Relaxed),
    }
}

/// Each routed event, at debug level (reading events is a benchmarked path); VMs get the
/// records themselves, and the stop summary counts them.
fn log_event(dest: EventDestination, e: &EventWords) {
    let owner = match dest {
        EventDestination::Vm(vm) => PLATFORM.manifest().vms[vm as usize].name,
        EventDestination::Unowned => "no VM",
    };
    let r = host_abi::smmu::EventRecord(*e);
    debug!(
        "SMMU event {} ({:#04x}) from stream {:#x} ({owner}): input address {:#x}, record {:#018x} {:#018x} {:#018x} {:#018x}",
        host_abi::smmu::event_name(r.event_type()),
        r.event_type(),
        r.sid(),
        r.input_addr(),
        e[0],
        e[1],
        e[2],
        e[3]
    );
}

fn vm_name(vm: u32) -> &'static str {
    PLATFORM.manifest().vms.get(vm as usize).map_or("?", |v| v.name)
}

/// On whose behalf the SMMU is entered.
#[derive(Clone, Copy)]
enum Caller {
    /// A VM's hypercall.
    Vm(u32),
    /// A VM's EVENT_READ: it asks for its own events, so it drains a bounded round of the
    /// SMMU's queue whatever the interrupt is doing (its records may be behind others').
    EventRead(u32),
    /// The real SMMU's interrupt.
    Interrupt,
    /// A call made for no VM in particular (SMMU-wide counters): nobody's events delivered.
    Anyone,
}

/// Runs `f` on the service (whose operations first handle global errors and drain the event
/// queue). On the host's own paths (its calls, the SMMU's interrupt) the events that reached its
/// ring go into its emulated SMMU's event queue, with its interrupt; a guest's call never does
/// the host's work. What is worth a log line (global errors handled, the emulated SMMU's
/// notices) is printed after the lock is released: no VM waits on the UART.
fn with<T>(caller: Caller, default: T, f: impl FnOnce(&mut SmmuService<MmioRegs>) -> T) -> T {
    let (r, report, notices) = {
        let mut g = SMMU.lock();
        let Some(Locked { service, host }) = g.as_mut() else { return default };
        // A guest's call (or one for nobody) but EVENT_READ leaves the event queue to the
        // SMMU's interrupt, which a CPU takes (the host's while it runs): it does not pay for
        // another VM's flood. When records have waited for the interrupt more than 100 ms
        // (nobody takes it, or a host holds it off) the call drains a bounded round. A guest's
        // EVENT_READ always drains a bounded round: guests never depend on the host for their
        // own events. The host's own paths always drain.
        let host_vm = host.as_ref().map_or(u32::MAX, |h| h.v.vm);
        let (own, guest) = match caller {
            Caller::Interrupt => (this_cpus_vm(), false),
            Caller::EventRead(vm) => (vm, false),
            Caller::Vm(vm) => (vm, vm != host_vm),
            Caller::Anyone => (this_cpus_vm(), true),
        };
        let leave_to_interrupt = guest && super::irq::spis_routed() && !interrupt_late();
        enter(service, own, if leave_to_interrupt { 0 } else { DRAIN_PER_ENTRY });
        let r = f(service);
        note_backlog(service);
        // The host's own entries hand it what reached its ring (nothing to do when nothing did).
        let notices = match (host, caller) {
            // The SMMU's interrupt (or the hypervisor's own pend of it) also goes on with a
            // queue the budget stopped whose host waits for an MSI (one access's worth).
            (Some(h), Caller::Interrupt) => h.serve(service, |v, ctx| v.continue_queue(ctx)),
            (Some(h), Caller::Vm(vm) | Caller::EventRead(vm)) if vm == host_vm => {
                h.serve_events(service)
            }
            _ => false,
        };
        charge(service);
        (r, service.take_report(), notices)
    };
    after(report, notices);
    r
}

/// What an entry leaves to log, once the lock is released: the service's report (the same for
/// hypercalls, the emulated SMMU and the interrupt) and the emulated SMMU's notices.
#[inline]
fn after(report: Option<Report>, notices: bool) {
    if let Some(r) = report {
        log_report(&r);
    }
    if notices {
        log_host_notices();
    }
}

#[cold]
#[inline(never)]
fn log_report(r: &Report) {
    if !r.errors.is_empty() {
        warn!(
            "SMMU global errors {:#x} ({:?}) acknowledged (a service failure re-initialises from the hypervisor's tables)",
            r.errors.bits(),
            r.errors
        );
    }
    if let Some(e) = r.resume_failed {
        warn!(
            "SMMU: resume failed ({e}): the SMMU stays disabled with GBPA.ABORT (every stream aborts) and each later call tries again (logged once per run of failures)"
        );
    }
    if let Some(f) = r.failed {
        error!(
            "SMMU failed: {f}. From now on every SMMU call that needs the hardware answers DEVICE_ERROR, no SMMU register is touched, and power transitions are refused"
        );
    }
    if let Some((vm, sid)) = r.attach_failed {
        warn!(
            "vm {}: the SMMU failed to attach stream {sid:#x}: the stream is blocked (logged once per VM)",
            vm_name(vm)
        );
    }
    if let Some((vm, sid)) = r.block_failed {
        warn!(
            "vm {}: stream {sid:#x} could not be invalidated back to abort after a failure: its entry in memory says abort, re-read by the SMMU when it next resumes (logged once per VM)",
            vm_name(vm)
        );
    }
}

/// Logs what the emulated SMMU has to say, once the lock is released: takes its notices (a
/// copy of a few hundred bytes, only when there are some), then prints them with no lock held.
/// Each kind of notice is logged once per VM: the emulated SMMU counts the rest, and the
/// counts are printed when the VM stops.
#[cold]
#[inline(never)]
fn log_host_notices() {
    let taken = SMMU
        .lock()
        .as_mut()
        .and_then(|s| s.host.as_mut())
        .map(|h| (h.spec.name, h.v.take_notices()));
    if let Some((name, notices)) = taken {
        log_notices(name, &notices);
    }
}

/// The lines of [`log_host_notices`].
#[cold]
#[inline(never)]
fn log_notices(name: &'static str, notices: &[Option<Notice>; emulated::NOTICES]) {
    {
        for n in notices.iter().flatten() {
            match *n {
                Notice::SteRefused { sid, why } => warn!(
                    "vm {name}: its STE for stream {sid:#x} refused ({why}): the stream is blocked (logged once per reason)"
                ),
                Notice::CdRefused { sid, why } => warn!(
                    "vm {name}: the context descriptors of its STE for stream {sid:#x} refused ({why}): the stream is blocked"
                ),
                Notice::SteUnreadable { sid } => warn!(
                    "vm {name}: its STE for stream {sid:#x} is not in its RAM (stream table or level-1 descriptor outside it): the stream is blocked (logged once)"
                ),
                Notice::SteInstallFailed { sid } => warn!(
                    "vm {name}: the SMMU failed to install the shadow of its STE for stream {sid:#x}: the stream is blocked (logged once)"
                ),
                Notice::IllegalCommand { cmd, err } => warn!(
                    "vm {name}: its SMMU command {:#018x} {:#018x} stopped its command queue (CMDQ_CONS.ERR {err}): {} (logged once per error)",
                    cmd.0[0],
                    cmd.0[1],
                    match err {
                        2 => "the queue entry is outside its RAM",
                        _ => "illegal here (not advertised, or refused by validation)",
                    }
                ),
                Notice::UnknownRegister { offset } => warn!(
                    "vm {name}: access to SMMU offset {offset:#x}, which the emulated SMMU does not implement: read as zero, write ignored (logged once)"
                ),
                Notice::MsiRefused { cmd, addr } => warn!(
                    "vm {name}: its CMD_SYNC {:#018x} {:#018x} asks for its MSI at {addr:#x}, which is not 4 bytes of its own RAM: it stopped its command queue (CMDQ_CONS.ERR 1), nothing written (logged once)",
                    cmd.0[0],
                    cmd.0[1]
                ),
            }
        }
    }
}

impl HostSmmu {
    /// [`HostSmmu::serve`] with no register access: the records that reached its ring, if any
    /// did (nothing else can have changed without an access: no work, no interrupt, no notice).
    #[inline]
    fn serve_events(&mut self, io: &mut SmmuService<MmioRegs>) -> bool {
        if !io.events_pending(self.v.vm) {
            return false;
        }
        self.serve(io, |_, _| {})
    }

    /// One access's worth of service to the host, under both locks: `access` (a register
    /// access, possibly nothing), then its pending event records into its event queue (no
    /// work when its ring is empty), then its interrupts. If the access left commands that the
    /// host may wait for without reading CMDQ_CONS again (it completes its CMD_SYNCs by MSI:
    /// [`VirtualSmmu::wants_continuation`]), the hypervisor pends its own event-queue SPI
    /// (group 0, routed to the host's CPU while it runs): its FIQ goes on with one more
    /// access's worth, the SMMU service's lock released in between. Returns whether it has
    /// notices to log (see [`log_host_notices`], once the locks are released).
    fn serve(
        &mut self,
        io: &mut SmmuService<MmioRegs>,
        access: impl FnOnce(&mut VirtualSmmu, &mut emulated::Context<'_>),
    ) -> bool {
        let mut mem = super::guestmem::IdentityGuestMemory::of(self.spec);
        let (v, spec) = (&mut self.v, self.spec);
        // Non-coherent: the host's structures read, and its event records written, with cache
        // maintenance (`hyp::vm::memory::NonCoherent`).
        hyp::vm::memory::with_coherency(v.coherent(), &mut mem, |mem| {
            let mut ctx = emulated::Context { mem: emulated::HostMemory { spec, mem }, smmu: io };
            access(v, &mut ctx);
            if ctx.smmu.events_pending(v.vm) {
                v.deliver_events(&mut ctx);
            }
        });
        let irqs = self.v.take_irqs();
        if irqs.eventq {
            super::irq::pend_spi(self.eventq_intid);
        }
        if irqs.gerror {
            super::irq::pend_spi(self.gerror_intid);
        }
        if self.v.wants_continuation() {
            continue_later();
        }
        self.v.has_notices()
    }
}

/// Gives the Linux host `spec` its emulated SMMU; its interrupts are `eventq_spi` and
/// `gerror_spi`; it advertises the real SMMU's coherency (`coherent`: the boot option
/// `smmu_coherent`). Its SMMU starts disabled: its vote is allow-off until it enables it.
pub fn init_host_smmu(spec: &'static VmSpec, eventq_spi: u32, gerror_spi: u32, coherent: bool) {
    let mut g = SMMU.lock();
    let Some(Locked { service: io, host }) = g.as_mut() else { return };
    let streams: alloc::vec::Vec<u32> = io.streams_of(spec.id).collect();
    let v = VirtualSmmu::new(spec.id, &streams, &io.caps(), coherent);
    io.vote(spec.id, Vote::AllowOff);
    info!(
        "vm {}: emulated SMMU (IDR0 {:#010x}, IDR1 {:#010x}, {}) for its streams {streams:#x?}, interrupts SPI {eventq_spi} (eventq) and {gerror_spi} (gerror)",
        spec.name,
        v.registers().id().idr[0],
        v.registers().id().idr[1],
        if coherent {
            "coherent"
        } else {
            "non-coherent: its structures read after DC CIVAC, its event records cleaned"
        },
    );
    *host =
        Some(HostSmmu { v, spec, eventq_intid: eventq_spi + 32, gerror_intid: gerror_spi + 32 });
}

/// The emulated SMMU as a device on the host's MMIO path.
pub struct HostSmmuDevice;

/// The host's `SMMU_CMDQ_PROD` writes as a hot store (`hyp::host::mmio::HotStore`): a 32-bit
/// write per command submission (Linux's strict unmap makes one per DMA unmap), recognised from
/// the syndrome before the region search. `region` is the host's emulated SMMU region.
pub fn hot_cmdq_prod(region: &Region<'static>) -> Option<HotStore<'static>> {
    HotStore::at(region, off::CMDQ_PROD as u64, 4)
}

impl hyp::host::mmio::Device for HostSmmuDevice {
    fn name(&self) -> &'static str {
        "SMMUv3 (emulated)"
    }
    fn read(&self, offset: u64, size: u8) -> u64 {
        if size < 4 {
            // The SMMU's registers are 32 or 64 bits wide.
            return 0;
        }
        let offset = offset as usize;
        let (value, report, notices) = {
            let mut g = SMMU.lock();
            let Some(Locked { service, host: Some(h) }) = g.as_mut() else { return 0 };
            enter(service, h.v.vm, DRAIN_PER_ENTRY);
            let notices = if offset == off::EVTQ_PROD {
                // What the real SMMU has recorded so far is in the host's queue when it looks
                // (as on hardware, where PROD shows every record written), interrupts or not.
                service.service_hardware();
                h.serve(service, |_, _| {})
            } else if offset == off::CMDQ_CONS && h.v.commands_pending() {
                // The host polls for space or for its CMD_SYNC: the emulated SMMU goes on with
                // what an earlier access left (within the access budget), as hardware would.
                h.serve(service, |v, ctx| v.poll(ctx))
            } else {
                false
            };
            charge(service);
            note_backlog(service);
            (h.v.read(offset, size), service.take_report(), notices)
        };
        after(report, notices);
        value
    }
    fn write(&self, offset: u64, size: u8, value: u64) {
        if size < 4 {
            return;
        }
        let (report, notices) = {
            let mut g = SMMU.lock();
            let Some(Locked { service, host: Some(h) }) = g.as_mut() else { return };
            enter(service, h.v.vm, DRAIN_PER_ENTRY);
            let notices = h.serve(service, |v, ctx| v.write(offset as usize, size, value, ctx));
            charge(service);
            note_backlog(service);
            (service.take_report(), notices)
        };
        after(report, notices);
    }
}

/// An attach (or SET_STE) of VM `vm`'s stream `sid` that succeeded, at debug level (the
/// SET_STE path is benchmarked). Failures are in the service's report.
#[inline]
fn attached(vm: u32, sid: u32, r: Result<Domain, HypError>) -> Result<Domain, HypError> {
    if let Ok(domain) = r {
        debug!("vm {}: stream {sid:#x} attached: {domain}", vm_name(vm));
    }
    r
}

/// The VMs whose refused power-loss injection was logged (bit per VM).
static INJECT_REFUSALS_LOGGED: AtomicU64 = AtomicU64::new(0);

/// The SMMU service for hypercalls.
pub struct HypercallSmmu;

impl SmmuCalls for HypercallSmmu {
    fn read_events(&mut self, vm: u32, out: &mut [EventWords]) -> EventReadResult {
        with(Caller::EventRead(vm), EventReadResult::default(), |io| io.read_events(vm, out))
    }
    fn read_events_into(
        &mut self,
        vm: u32,
        range: GuestRange,
        mem: &mut dyn GuestMemory,
    ) -> Result<EventReadResult, HypError> {
        with(Caller::EventRead(vm), Err(HypError::DeviceError), |io| {
            io.read_events_into(vm, range, mem)
        })
    }
    fn invalidate_from(
        &mut self,
        vm: u32,
        range: GuestRange,
        mem: &dyn GuestMemory,
    ) -> Result<usize, (usize, HypError)> {
        with(Caller::Vm(vm), Err((0, HypError::DeviceError)), |io| {
            io.invalidate_from(vm, range, mem)
        })
    }
    fn events_pending(&mut self, vm: u32) -> bool {
        SMMU.lock().as_mut().is_some_and(|s| s.service.events_pending(vm))
    }
    fn stats(&mut self) -> SmmuStats {
        // SMMU-wide: no VM's (the host's events wait for its own paths).
        let mut s = with(Caller::Anyone, SmmuStats::default(), |io| io.stats());
        s.heap_in_use = crate::heap_in_use() as u64;
        s
    }
    fn owned_stream(&mut self, vm: u32, sid: u32) -> Result<SmmuCaps, HypError> {
        let g = SMMU.lock();
        let io = &g.as_ref().ok_or(HypError::DeviceError)?.service;
        if io.owns(vm, sid) {
            Ok(io.caps())
        } else {
            Err(HypError::NotOwned)
        }
    }
    fn attach(
        &mut self,
        vm: u32,
        sid: u32,
        domain: Domain,
        mem: &dyn GuestMemory,
    ) -> Result<(), HypError> {
        let r =
            with(Caller::Vm(vm), Err(HypError::DeviceError), |io| io.attach(vm, sid, domain, mem));
        attached(vm, sid, r.map(|()| domain))?;
        Ok(())
    }
    fn set_ste(
        &mut self,
        vm: &VmSpec,
        sid: u32,
        ipa: u64,
        mem: &dyn GuestMemory,
    ) -> Result<Domain, HypError> {
        // Ownership, the STE's copy and validation, and the install: one entry.
        let r = with(Caller::Vm(vm.id), Err(HypError::DeviceError), |io| {
            SmmuCalls::set_ste(io, vm, sid, ipa, mem)
        });
        attached(vm.id, sid, r)
    }
    fn clear_ste(&mut self, vm: u32, sid: u32, mem: &dyn GuestMemory) -> Result<(), HypError> {
        let r = with(Caller::Vm(vm), Err(HypError::DeviceError), |io| {
            SmmuCalls::clear_ste(io, vm, sid, mem)
        });
        attached(vm, sid, r.map(|()| Domain::Blocked))?;
        Ok(())
    }
    fn invalidate(
        &mut self,
        vm: u32,
        cmds: &[Command],
        mem: &dyn GuestMemory,
    ) -> Result<usize, (usize, HypError)> {
        with(Caller::Vm(vm), Err((0, HypError::DeviceError)), |io| io.invalidate(vm, cmds, mem))
    }
    fn invalidate_prefix(
        &mut self,
        vm: u32,
        cmds: &[Command],
        mem: &dyn GuestMemory,
    ) -> Result<usize, (usize, HypError)> {
        with(Caller::Vm(vm), Err((0, HypError::DeviceError)), |io| {
            io.invalidate_prefix(vm, cmds, mem)
        })
    }
    fn pm_vote(&mut self, vm: u32, vote: Vote) -> PmVoteResult {
        let none = PmVoteResult { powered_off: false, refusal: None, dma_streams: 0 };
        let (before, r) = with(Caller::Vm(vm), (false, none), |io| {
            let before = io.power() == hyp::iommu::pm::Power::Off;
            (before, io.vote(vm, vote))
        });
        let name = vm_name(vm);
        let v = match vote {
            Vote::AllowOff => "allow-off",
            Vote::NeedOn => "need-on",
        };
        // Debug level: votes are on a benchmarked path (the guests report what they see).
        match (before, r.powered_off, r.refusal) {
            (false, true, _) => debug!(
                "SMMU power: vm {name} voted {v}; every VM allows it: suspended and powered off"
            ),
            (true, false, _) => debug!("SMMU power: vm {name} voted {v}: powered on and resumed"),
            (_, _, Some(Refusal::BypassResetWithDma)) => debug!(
                "SMMU power: vm {name} voted {v}; power-off refused: {}",
                Refusal::BypassResetWithDma.describe()
            ),
            _ => debug!(
                "SMMU power: vm {name} voted {v}; power stays {}",
                if r.powered_off { "off" } else { "on" }
            ),
        }
        r
    }
    fn pm_status(&mut self) -> PmStatus {
        pm_status_now()
    }
    fn may_inject(&mut self, vm: u32) -> bool {
        SMMU.lock().as_ref().is_some_and(|s| s.service.may_inject(vm))
    }
    fn inject_power_loss(&mut self, vm: u32, after_writes: u64) -> Result<(), InjectError> {
        // Decided and done under the lock, logged once it is released.
        let r = {
            let mut g = SMMU.lock();
            let io = &mut g.as_mut().ok_or(InjectError::NotSupported)?.service;
            // Checked before anything is armed, as for an immediate loss.
            match io.check_injection(vm) {
                Err(e) => Err(e),
                Ok(()) if after_writes != 0 => {
                    MmioRegs::arm_loss(after_writes);
                    Ok(())
                }
                Ok(()) => io.inject_power_loss(vm),
            }
        };
        let name = vm_name(vm);
        match r {
            Err(InjectError::Refused(why)) => {
                // Once per VM: the VM decides how often it asks.
                let bit = 1u64 << (vm % 64);
                if INJECT_REFUSALS_LOGGED.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
                    info!(
                        "SMMU power: vm {name}: power-loss injection refused: {} (logged once per VM)",
                        why.describe()
                    )
                }
            }
            Err(_) => {}
            Ok(()) if after_writes != 0 => info!(
                "SMMU power: vm {name} arms a power loss before SMMU register write {after_writes} from now"
            ),
            Ok(()) => warn!(
                "SMMU power: unexpected power loss injected by vm {name} (registers back at reset values)"
            ),
        }
        r
    }
}

/// VM `vm` stopped: block its streams, count its vote as allow-off, and summarise its SMMU
/// events.
pub fn vm_stopped(vm: u32) {
    let counters = SMMU
        .lock()
        .as_ref()
        .and_then(|s| s.host.as_ref())
        .filter(|h| h.v.vm == vm)
        .map(|h| (h.spec.name, h.v.counters));
    if let Some((name, c)) = counters {
        // One line, `name=value` per counter: read by people and by xtask alike.
        info!("vm {name}: emulated SMMU counters: {c}");
    }
    let (routed, dropped) = with(Caller::Vm(vm), (0, 0), |io| {
        io.vm_stopped(vm);
        io.events_of(vm)
    });
    if routed > 0 {
        info!(
            "vm {}: {routed} SMMU fault event(s) were routed to it ({dropped} dropped: ring full)",
            vm_name(vm)
        );
    }
}

/// Gives the SMMU service VM `spec`'s shadow CD tables: the pages [`VmSpec::shadow_cds`]
/// carves from its RAM, which its CPU's stage 2 leaves out and its devices' stage 2 maps
/// read-only. Zeroed here (every shadow CD invalid) before any STE can point at them.
pub fn set_shadow_cds(spec: &'static VmSpec) {
    let r = spec.shadow_cds();
    // SAFETY: the pages are inside VM RAM, identity-mapped at EL2; no VM's CPU stage 2 maps
    // them (mmu::build_stage2) and its devices' stage 2 maps them read-only
    // (mmu::build_dma_stage2); each VM's are adopted once, here, and never freed.
    let mut buf = unsafe { hyp::iommu::driver::dmabuf::DmaBuf::at(r.base, r.size as usize) };
    for i in 0..buf.len_words() {
        buf.write(i, 0);
    }
    if let Some(s) = SMMU.lock().as_mut() {
        s.service.set_shadow_cds(spec.id, hyp::iommu::service::ShadowCds { ipa: r.base, buf });
    }
    info!(
        "vm {}: shadow CDs at {:#x}+{:#x} (its RAM, read-only to its devices, not mapped for its CPU)",
        spec.name, r.base, r.size
    );
}

/// Tells the SMMU service where VM `vm`'s stage-2 tables are.
pub fn set_stage2(vm: u32, s2: S2Config) {
    if let Some(s) = SMMU.lock().as_mut() {
        s.service.set_stage2(vm, s2);
    }
}
