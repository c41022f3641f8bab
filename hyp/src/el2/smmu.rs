//! The SMMU as the EL2 side sees it: MMIO register access, the one driver instance behind a
//! lock, and the [`IommuOps`] the hypercall dispatcher uses.

use super::PLATFORM;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use host_abi::smmu::Command;
use host_abi::HypError;
use hyp::events::event_sid;
use hyp::iommu::{EventDestination, EventReadResult, Iommu, IommuOps};
use hyp::pm::Refusal;
use hyp::smmu::driver::EventWords;
use hyp::smmu::ste::{Domain, S2Config};
use hyp::smmu::Gbpa;
use hyp::smmu::SmmuRegs;
use log::{debug, info, warn};
use platform::power::SimulatedPowerDomain;
use platform::Platform;
use spin::mutex::SpinMutex;

/// The SMMU's page-0 registers, by MMIO.
pub struct SmmuMmio(pub usize);

/// Fault injection (test platforms): SMMU register writes left before a simulated power loss
/// (0: none armed). One relaxed load per write when disarmed.
static LOSS_COUNTDOWN: AtomicU64 = AtomicU64::new(0);
/// GBPA's reset value on this run (for the simulated loss).
static GBPA_RESET: AtomicU32 = AtomicU32::new(0);

impl SmmuMmio {
    fn raw_write32(&mut self, off: usize, value: u32) {
        // SAFETY: the board's SMMU register page, device memory; `off` is an architected
        // register offset.
        unsafe { ((self.0 + off) as *mut u32).write_volatile(value) }
    }

    /// Counts down an armed injection; at zero the SMMU "loses power" before this write.
    fn before_write(&mut self) {
        let n = LOSS_COUNTDOWN.load(Ordering::Relaxed);
        if n == 0 {
            return;
        }
        LOSS_COUNTDOWN.store(n - 1, Ordering::Relaxed);
        if n == 1 {
            for (off, v) in platform::power::RESET_VALUES {
                if off != 0x054 {
                    self.raw_write32(off, v);
                }
            }
            self.raw_write32(
                hyp::smmu::regs::off::GBPA,
                GBPA_RESET.load(Ordering::Relaxed) | Gbpa::UPDATE,
            );
            warn!("SMMU power: injected power loss in the middle of a sequence");
        }
    }
}

impl SmmuRegs for SmmuMmio {
    fn read32(&mut self, off: usize) -> u32 {
        // SAFETY: the board's SMMU register page, device memory (or MMU off); `off` is one of
        // the architected register offsets.
        unsafe { ((self.0 + off) as *const u32).read_volatile() }
    }
    fn write32(&mut self, off: usize, value: u32) {
        self.before_write();
        self.raw_write32(off, value)
    }
    fn read64(&mut self, off: usize) -> u64 {
        // SAFETY: as for `read32`; 64-bit registers are 8-byte aligned.
        unsafe { ((self.0 + off) as *const u64).read_volatile() }
    }
    fn write64(&mut self, off: usize, value: u64) {
        self.before_write();
        // SAFETY: as for `read64`.
        unsafe { ((self.0 + off) as *mut u64).write_volatile(value) }
    }
}

/// The SMMU driver, shared by all CPUs.
static IOMMU: SpinMutex<Option<Iommu<SmmuMmio>>> = SpinMutex::new(None);

/// Probes and enables the SMMU (every stream aborts), then turns on DMA for assigned devices.
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
    match hyp::smmu::driver::Smmu::init(SmmuMmio(board.smmu.base as usize), max_sid, true) {
        Ok(s) => {
            let f = s.features;
            info!(
                "SMMU: IDR0 {:#010x} IDR1 {:#010x} IDR5 {:#010x}: S1 {}, S2 {}, {} SID bits, {}-bit OAS",
                f.idr0.0,
                f.idr1.0,
                f.idr5.0,
                f.idr0.s1p(),
                f.idr0.s2p(),
                f.idr1.sidsize(),
                f.idr5.oas_bits()
            );
            info!(
                "SMMU: enabled, {} stream table for {} SID bits, every STE abort, caches invalidated",
                if s.is_two_level() { "two-level" } else { "linear" },
                s.sid_bits()
            );
            let power = alloc::boxed::Box::new(SimulatedPowerDomain::new(options.gbpa_reset));
            let mut io = Iommu::new(s, PLATFORM.manifest(), power);
            io.fault_injection = options.pm_inject;
            GBPA_RESET.store(options.gbpa_reset.register_value(), Ordering::Relaxed);
            io.pm_enabled = options.pm;
            if options.bench_streams > 0 {
                io.add_streams(0, hyp::dt::BENCH_STREAM_BASE, options.bench_streams);
                info!(
                    "SMMU: {} device-less streams from {:#x} assigned to vm {} (benchmark)",
                    options.bench_streams,
                    hyp::dt::BENCH_STREAM_BASE,
                    PLATFORM.manifest().vms[0].name
                );
            }
            *IOMMU.lock() = Some(io);
        }
        Err(e) => crate::fatal(format_args!("SMMU: {e}")),
    }
}

// SAFETY: SmmuMmio is only an address; the driver holding it is behind the SMMU lock.
unsafe impl Send for SmmuMmio {}

/// Each routed event, at debug level (reading events is a benchmarked path); VMs get the
/// records themselves, and the stop summary counts them.
fn log_event(dest: EventDestination, e: &EventWords) {
    let owner = match dest {
        EventDestination::Vm(vm) => PLATFORM.manifest().vms[vm as usize].name,
        EventDestination::Unowned => "no VM",
    };
    debug!(
        "SMMU event type {:#04x} from stream {:#x} ({owner}): input address {:#x}, record {:#018x} {:#018x} {:#018x} {:#018x}",
        e[0] & 0xff,
        event_sid(e),
        e[2],
        e[0],
        e[1],
        e[2],
        e[3]
    );
}

/// The SMMU service for hypercalls: each operation takes the lock for its own duration.
pub struct LockedIommu;

impl IommuOps for LockedIommu {
    fn read_events(&mut self, vm: u32, out: &mut [EventWords]) -> EventReadResult {
        match IOMMU.lock().as_mut() {
            Some(io) => {
                let g = io.handle_global_errors();
                if g != 0 {
                    warn!("SMMU global errors {g:#x} acknowledged (service failure re-initialises from our tables)");
                }
                io.poll_events(&mut log_event);
                io.read_events(vm, out)
            }
            None => EventReadResult::default(),
        }
    }
    fn stats(&mut self) -> host_abi::SmmuStats {
        let mut s = IOMMU.lock().as_mut().map(|io| io.stats()).unwrap_or_default();
        s.heap_in_use = crate::heap_in_use() as u64;
        s
    }
    fn owns(&mut self, vm: u32, sid: u32) -> bool {
        IOMMU.lock().as_mut().is_some_and(|io| io.owns(vm, sid))
    }
    fn attach(&mut self, vm: u32, sid: u32, domain: Domain) -> Result<(), HypError> {
        let r = IOMMU.lock().as_mut().ok_or(HypError::DeviceError)?.attach(vm, sid, domain);
        let name = PLATFORM.manifest().vms[vm as usize].name;
        match r {
            // Debug level: this is on the SET_STE path, whose cost is benchmarked.
            Ok(()) => debug!("vm {name}: stream {sid:#x} attached: {domain}"),
            Err(e) => warn!("vm {name}: attaching stream {sid:#x} to {domain} failed: {e}"),
        }
        r
    }
    fn invalidate(&mut self, vm: u32, cmds: &mut [Command]) -> Result<usize, (usize, HypError)> {
        IOMMU.lock().as_mut().ok_or((0, HypError::DeviceError))?.invalidate(vm, cmds)
    }
    fn pm_vote(&mut self, vm: u32, allow_off: bool) -> [u64; 3] {
        let mut g = IOMMU.lock();
        let Some(io) = g.as_mut() else { return [0, 0, 0] };
        let before = (io.power() == hyp::pm::Power::Off) as u64;
        let r = io.pm_vote(vm, allow_off);
        let name = PLATFORM.manifest().vms[vm as usize].name;
        let vote = if allow_off { "allow-off" } else { "need-on" };
        // Debug level: votes are on a benchmarked path (the guests report what they see).
        match (before, r[0]) {
            (0, 1) => debug!(
                "SMMU power: vm {name} voted {vote}; every VM allows it: suspended and powered off"
            ),
            (1, 0) => debug!("SMMU power: vm {name} voted {vote}: powered on and resumed"),
            _ if r[1] == Refusal::BypassResetWithDma as u64 => debug!(
                "SMMU power: vm {name} voted {vote}; power-off refused: {}",
                Refusal::BypassResetWithDma.describe()
            ),
            _ => debug!(
                "SMMU power: vm {name} voted {vote}; power stays {}",
                if r[0] == 1 { "off" } else { "on" }
            ),
        }
        r
    }
    fn pm_status(&mut self) -> host_abi::PmStatus {
        IOMMU.lock().as_mut().map(|io| io.pm_status()).unwrap_or_default()
    }
    fn inject_power_loss(&mut self, after_writes: u64) -> Result<(), HypError> {
        let mut g = IOMMU.lock();
        let io = g.as_mut().ok_or(HypError::DeviceError)?;
        if after_writes != 0 {
            if !io.fault_injection {
                return Err(HypError::NotSupported);
            }
            LOSS_COUNTDOWN.store(after_writes, Ordering::Relaxed);
            info!("SMMU power: a power loss will hit before SMMU register write {after_writes} from now");
            return Ok(());
        }
        let r = io.inject_power_loss();
        if r.is_ok() {
            warn!("SMMU power: unexpected power loss injected (registers back at reset values)");
        }
        r
    }
}

/// VM `vm` stopped: block its streams, count its vote as allow-off, and summarise its SMMU
/// events.
pub fn vm_stopped(vm: u32) {
    if let Some(io) = IOMMU.lock().as_mut() {
        io.vm_stopped(vm);
        let (routed, dropped) = io.events_of(vm);
        if routed > 0 {
            info!(
                "vm {}: {routed} SMMU fault event(s) were routed to it ({dropped} dropped: ring full)",
                PLATFORM.manifest().vms[vm as usize].name
            );
        }
    }
}

/// Tells the SMMU service where VM `vm`'s stage-2 tables are.
pub fn set_stage2(vm: u32, s2: S2Config) {
    if let Some(io) = IOMMU.lock().as_mut() {
        io.set_stage2(vm, s2);
    }
}
