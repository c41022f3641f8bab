//! Physical interrupts taken at EL2: on the CPUs whose VM does not drive the GIC (the guests'
//! CPUs, and a bare-metal host's), `HCR_EL2.IMO/FMO` route every interrupt to EL2; on a Linux
//! host's CPUs `HCR_EL2.FMO` alone routes group 0 (FIQs: the hypervisor's SPIs, which are group
//! 0 at the highest priority) to EL2 while its group-1 interrupts stay at EL1. Each one is
//! acknowledged (`ICC_IAR1_EL1`/`ICC_IAR0_EL1`), dispatched by INTID through the static table
//! [`hyp::irq::Table`] (hypervisor code adds handlers with [`register`]), and ended
//! (`ICC_EOIR*_EL1`, EOImode 0: priority drop and deactivation). An interrupt without a handler
//! is one the Linux host routed to this CPU (or an SGI it sent): its INTID is logged once, it is
//! disabled (an SPI at the distributor, an SGI/PPI at this CPU's redistributor) so that a level
//! interrupt cannot keep the guest's CPU in EL2, and the guest carries on.

use super::sysreg;
use arm_gic::gicv3::GicCpuInterface;
use arm_gic::IntId;
use arm_gic::InterruptGroup;
use core::sync::atomic::{AtomicBool, Ordering};
use hyp::irq::{Dispatch, Handler, Table};
use log::{info, warn};
use platform::linux::GICR_FRAME_SIZE;
use spin::mutex::SpinMutex;

/// The hypervisor's interrupt handlers.
static TABLE: Table = Table::new();

/// GICD_ICENABLER<n> (clear-enable, one bit per INTID).
const GICD_ICENABLER: usize = platform::gic::gicd::ICENABLER as usize;
/// GICR_ICENABLER0 in a CPU's SGI frame (the second 64 KiB frame).
const GICR_SGI_ICENABLER0: usize = platform::gic::gicr::SGI_ICENABLER0 as usize;

/// Whether the hypervisor's SPIs are routed to a CPU that is on (a mirror of `HYP_SPIS.cpu`,
/// read without the lock on every guest SMMU call).
static SPIS_ROUTED: AtomicBool = AtomicBool::new(false);

/// Whether the hypervisor's SPIs go to a running CPU (none left: nobody takes them).
pub fn spis_routed() -> bool {
    SPIS_ROUTED.load(Ordering::Relaxed)
}

/// The SPIs the hypervisor takes itself (the SMMU's), all routed to one CPU.
static HYP_SPIS: SpinMutex<HypSpis> = SpinMutex::new(HypSpis { intids: [0; 4], len: 0, cpu: None });

struct HypSpis {
    intids: [u32; 4],
    len: usize,
    /// The CPU they are routed to: one that is on and runs a VM (the host's first, while it
    /// runs: `vm::el2_irq_cpus`).
    cpu: Option<u32>,
}

/// Takes SPI `intid` for the hypervisor (group 0: an FIQ at EL2 on every CPU): `handler` runs at
/// EL2 on `cpu`. Every such SPI goes to the same CPU; [`cpu_leaving`] moves them when it stops.
pub fn take_spi(intid: u32, handler: Handler, cpu: u32) -> Result<(), &'static str> {
    let mut h = HYP_SPIS.lock();
    if h.len == h.intids.len() {
        return Err("too many hypervisor SPIs");
    }
    TABLE.register(intid, handler).map_err(|_| "INTID out of range or already taken")?;
    let cpu = *h.cpu.get_or_insert(cpu);
    super::gic::take_spi(intid, cpu).map_err(|_| "the GIC refused the configuration")?;
    let n = h.len;
    h.intids[n] = intid;
    h.len += 1;
    SPIS_ROUTED.store(true, Ordering::Relaxed);
    Ok(())
}

/// CPU `cpu` is about to turn off: if the hypervisor's SPIs go to it, route them to the first
/// of `others` (CPUs that still run a VM); `true` if they moved. With none left, they stay
/// where they are (pending, unseen): the SMMU's queues are then serviced on every entry into
/// the SMMU service instead (hypercalls, and the Linux host's emulated SMMU accesses).
pub fn cpu_leaving(cpu: u32, mut others: impl Iterator<Item = u32>) -> bool {
    let mut h = HYP_SPIS.lock();
    if h.cpu != Some(cpu) || h.len == 0 {
        return false;
    }
    match others.next() {
        Some(next) => {
            for &i in &h.intids[..h.len] {
                if let Err(e) = super::gic::route_spi(i, next) {
                    warn!("routing INTID {i} to cpu {next} failed: {e}");
                }
            }
            h.cpu = Some(next);
            info!(
                "cpu {cpu} stops: the hypervisor's interrupts (INTIDs {:?}) now go to cpu {next}",
                &h.intids[..h.len]
            );
            true
        }
        None => {
            h.cpu = None;
            SPIS_ROUTED.store(false, Ordering::Relaxed);
            info!(
                "cpu {cpu} stops: no running CPU left to take the hypervisor's interrupts; the SMMU's queues are serviced on each entry into the SMMU service"
            );
            false
        }
    }
}

/// This CPU's interface, for a CPU that takes every interrupt at EL2 (a guest's): both groups
/// enabled (group 0: the hypervisor's SPIs; group 1: whatever a Linux host routes or sends
/// here, disabled on arrival), every priority let through.
pub fn init_cpu() {
    GicCpuInterface::set_priority_mask(0xff);
    GicCpuInterface::enable_group0(true);
    GicCpuInterface::enable_group1(true);
}

/// This CPU's interface, for a CPU of a Linux host (`HCR_EL2.FMO` set, IMO clear): the physical
/// priority mask is now the hypervisor's alone (Linux's `ICC_PMR_EL1` writes reach
/// `ICV_PMR_EL1`), so it lets every priority through; group 0 (the hypervisor's FIQs) enabled
/// here, group 1 left to Linux (`ICC_IGRPEN1_EL1` stays physical). The virtual interface Linux
/// sees through `ICV_*` starts from a known state: no list register used, no trap, no
/// maintenance interrupt (`ICH_HCR_EL2` = 0), and `ICH_VMCR_EL2` = 0 (VPMR 0, both virtual
/// groups disabled, binary points at their minimum), which Linux's `gic_cpu_sys_reg_init`
/// then programs (PMR, EOImode) and reads back (PRIbits, the PMR probe of `gic_has_group0`).
pub fn init_linux_cpu() {
    GicCpuInterface::set_priority_mask(0xff);
    GicCpuInterface::enable_group0(true);
    // SAFETY: the virtual CPU interface's control registers only affect what EL1 reads and
    // writes through ICV_* (and virtual interrupts, of which there are none): no hypervisor
    // memory or state depends on them.
    unsafe {
        sysreg::ich_hcr_el2::write(0);
        sysreg::ich_vmcr_el2::write(0);
    }
}

/// GICD_ISPENDR<n> (set-pending, one bit per INTID).
const GICD_ISPENDR: usize = platform::gic::gicd::ISPENDR as usize;

/// Makes SPI `intid` pending at the distributor (an interrupt of a device the hypervisor
/// emulates for the Linux host: its emulated SMMU).
pub fn pend_spi(intid: u32) {
    debug_assert!(intid >= 32);
    let board = super::PLATFORM_BOARD;
    let p = (board.gicd.base as usize + GICD_ISPENDR + 4 * (intid as usize / 32)) as *mut u32;
    // SAFETY: the distributor's set-pending register of this SPI, identity-mapped as device
    // memory at EL2; writing a one sets exactly that INTID's pending bit.
    unsafe { p.write_volatile(1 << (intid % 32)) };
}

/// Disables `intid` so it stops arriving on this CPU.
fn disable(intid: u32) {
    let board = super::PLATFORM_BOARD;
    let (base, reg) = if intid >= 32 {
        (board.gicd.base as usize, GICD_ICENABLER + 4 * (intid as usize / 32))
    } else {
        let cpu = sysreg::cpu_index() as usize;
        (board.gicr.base as usize + cpu * GICR_FRAME_SIZE as usize, GICR_SGI_ICENABLER0)
    };
    let p = (base + reg) as *mut u32;
    // SAFETY: a GIC clear-enable register (distributor, or this CPU's own redistributor SGI
    // frame), identity-mapped as device memory at EL2; writing a one clears exactly that
    // INTID's enable, atomically with respect to the host's own writes.
    unsafe { p.write_volatile(1 << (intid % 32)) };
}

/// Handles the interrupt pending at this CPU's interface (vector "IRQ" for group 1, "FIQ" for
/// group 0), `vm` naming who was running.
pub fn handle(group: InterruptGroup, vm: &str) {
    let Some(intid) = GicCpuInterface::get_and_acknowledge_interrupt(group) else {
        return;
    };
    let raw: u32 = intid.into();
    match TABLE.dispatch(raw) {
        Dispatch::Handled => {}
        Dispatch::Spurious => return,
        Dispatch::Unknown { first } => {
            if first {
                warn!(
                    "cpu {} (vm {vm}): interrupt {} (INTID {raw}) has no handler at EL2: \
                     disabled (logged once per INTID)",
                    sysreg::cpu_index(),
                    describe(intid)
                );
            }
            disable(raw);
        }
    }
    GicCpuInterface::end_interrupt(intid, group);
}

fn describe(intid: IntId) -> &'static str {
    if intid.is_sgi() {
        "SGI"
    } else if intid.is_private() {
        "PPI"
    } else {
        "SPI"
    }
}
