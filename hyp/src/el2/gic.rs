//! GICv3 bring-up through arm-gic. No interrupt is enabled yet: the distributor and every
//! redistributor get their default configuration and each CPU marks itself awake.

use super::sysreg;
use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3, Group};
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

/// Priority of the hypervisor's own interrupts (every CPU taking interrupts at EL2 lets all
/// priorities through).
const HYP_PRIORITY: u8 = 0x80;

/// Configures SPI `intid` (an INTID, 32 and above) for the hypervisor: group 1, edge-triggered,
/// routed to CPU `cpu`, enabled.
pub fn take_spi(intid: u32, cpu: u32) -> Result<(), arm_gic::gicv3::GicError> {
    let mut g = GIC.lock();
    let Some(gic) = g.as_mut() else { return Ok(()) };
    let id = IntId::spi(intid - 32);
    gic.0.set_group(id, None, Group::Group1NS)?;
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
