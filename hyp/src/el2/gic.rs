//! GICv3 bring-up through arm-gic. No interrupt is enabled yet: the distributor and every
//! redistributor get their default configuration and each CPU marks itself awake.

use super::sysreg;
use arm_gic::gicv3::registers::{Gicd, GicdCtlr, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3, Group, SecureIntGroup, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, Trigger};
use core::ptr::NonNull;
use platform::Board;
use safe_mmio::UniqueMmioPointer;
use spin::mutex::SpinMutex;

struct Gic(GicV3<'static>);
// SAFETY: the driver only holds pointers to the GIC's MMIO frames, which every CPU may access;
// all use goes through the lock below.
unsafe impl Send for Gic {}

static GIC: SpinMutex<Option<Gic>> = SpinMutex::new(None);

/// Boot CPU: configures the distributor and all redistributors.
pub fn init(board: &Board) -> Result<(), arm_gic::gicv3::GicError> {
    GicCpuInterface::enable_system_register_el2(true);
    // SAFETY: the board's GICD/GICR frames are mapped as device memory at EL2 and this is the
    // only driver instance.
    let mut gic = unsafe {
        GicV3::new(
            UniqueMmioPointer::new(NonNull::new(board.gicd.base as *mut Gicd).expect("GICD")),
            NonNull::new(board.gicr.base as *mut GicrSgi).expect("GICR"),
            board.cpu_count as usize,
        )?
    };
    gic.setup(sysreg::cpu_index() as usize);
    // Group 0 is the hypervisor's own (its SPIs, FIQs at EL2 on every CPU); group 1 is the VMs'.
    // A Linux host's writes to GICD_CTLR are dropped by its filter, so both stay enabled.
    gic.gicd_set_control(GicdCtlr::EnableGrp0);
    *GIC.lock() = Some(Gic(gic));
    Ok(())
}

/// Secondary CPU: wakes its redistributor and enables its CPU interface.
pub fn init_cpu(cpu: u32) {
    GicCpuInterface::enable_system_register_el2(true);
    if let Some(g) = GIC.lock().as_mut() {
        g.0.init_cpu(cpu as usize);
    }
}

/// Priority of the hypervisor's own interrupts: the highest, so that a Linux host's active
/// group-1 interrupt (Linux uses 0xa0, and at most 0x80 with pseudo-NMIs) never holds them off:
/// a pending interrupt is signalled only above the CPU's running priority.
const HYP_PRIORITY: u8 = 0x00;

/// Configures SPI `intid` (an INTID, 32 and above) for the hypervisor: group 0 (an FIQ, taken at
/// EL2 on every CPU: `HCR_EL2.FMO` is set on all of them), edge-triggered, routed to CPU `cpu`,
/// enabled.
pub fn take_spi(intid: u32, cpu: u32) -> Result<(), arm_gic::gicv3::GicError> {
    let mut g = GIC.lock();
    let Some(gic) = g.as_mut() else { return Ok(()) };
    let id = IntId::spi(intid - 32);
    gic.0.set_group(id, None, Group::Secure(SecureIntGroup::Group0))?;
    gic.0.set_trigger(id, None, Trigger::Edge)?;
    gic.0.set_interrupt_priority(id, None, HYP_PRIORITY)?;
    gic.0.distributor().set_routing(id, Some(sysreg::affinity(cpu)))?;
    gic.0.enable_interrupt(id, None, true)
}

/// Routes SPI `intid` to CPU `cpu`.
pub fn route_spi(intid: u32, cpu: u32) -> Result<(), arm_gic::gicv3::GicError> {
    let mut g = GIC.lock();
    let Some(gic) = g.as_mut() else { return Ok(()) };
    gic.0.distributor().set_routing(IntId::spi(intid - 32), Some(sysreg::affinity(cpu)))
}

/// Sends group-1 SGI `intid` to the CPUs `targets` (bit n = CPU n, `Aff0` n on this board) from
/// EL2, where `ICC_SGI1R_EL1` is the physical register (a Linux host's IPI, filtered by
/// `hyp::host::sgi`).
pub fn send_sgi(intid: u8, targets: u16) {
    let target = SgiTarget::List { affinity3: 0, affinity2: 0, affinity1: 0, target_list: targets };
    // INTIDs 0..15 are SGIs: the only error `send_sgi` has cannot happen.
    let _ =
        GicCpuInterface::send_sgi(IntId::sgi(intid.into()), target, SgiTargetGroup::CurrentGroup1);
}
