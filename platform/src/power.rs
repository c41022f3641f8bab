//! The SMMU power domain: what a platform must provide so the hypervisor can power the SMMU
//! down and up, and a faithful simulation of it for QEMU (whose SMMU has no power domain).
//!
//! Losing power puts every SMMU register back to its reset value: CR0/CR1/CR2 = 0, table and
//! queue bases 0, IRQ_CTRL = 0, and GBPA = the platform's IMPLEMENTATION DEFINED reset value —
//! abort on well-behaved silicon, bypass on the worst legal silicon. Memory (stream table,
//! queues, page tables) survives.

/// What SMMU_GBPA comes back as after power-on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GbpaReset {
    /// GBPA.ABORT = 1: with SMMUEN = 0 every transaction aborts.
    Abort,
    /// GBPA.ABORT = 0: with SMMUEN = 0 every transaction bypasses translation.
    Bypass,
}

impl GbpaReset {
    /// The register value after reset.
    pub const fn register_value(self) -> u32 {
        match self {
            GbpaReset::Abort => 1 << 20,
            GbpaReset::Bypass => 0,
        }
    }

    /// Parses `abort` or `bypass`.
    pub fn parse(s: &str) -> Option<GbpaReset> {
        match s {
            "abort" => Some(GbpaReset::Abort),
            "bypass" => Some(GbpaReset::Bypass),
            _ => None,
        }
    }
}

/// 32-bit access to the SMMU registers, for a power domain that needs it (the QEMU
/// simulation). The hypervisor's register type implements it.
pub trait PowerRegs {
    /// Reads a register.
    fn read32(&mut self, off: usize) -> u32;
    /// Writes a register.
    fn write32(&mut self, off: usize, value: u32);
}

/// The SMMU's power domain. A real SoC implements this with its power controller (SCMI, a
/// PMIC); the hypervisor calls `power_off` only after quiescing the SMMU and `power_on` before
/// touching it again.
pub trait SmmuPowerDomain {
    /// GBPA's value after power-on.
    fn gbpa_reset(&self) -> GbpaReset;
    /// Whether the domain is powered.
    fn is_on(&self) -> bool;
    /// Removes power: from now on the registers hold their reset values.
    fn power_off(&mut self, regs: &mut dyn PowerRegs);
    /// Restores power (registers at reset values until the hypervisor programs them).
    fn power_on(&mut self, regs: &mut dyn PowerRegs);
    /// Fault injection: power is lost (and comes back at once, at reset values) without the
    /// hypervisor asking. A real SoC reports such an event; the simulation makes one.
    fn inject_loss(&mut self, regs: &mut dyn PowerRegs);
}

/// SMMU register offsets (page 0 and 1) and their values after reset, except GBPA (written
/// last, with the platform's value). Order: disable first.
pub const RESET_VALUES: [(usize, u32); 17] = [
    (0x020, 0),    // CR0: SMMUEN, queues off
    (0x050, 0),    // IRQ_CTRL
    (0x028, 0),    // CR1
    (0x02c, 0),    // CR2
    (0x080, 0),    // STRTAB_BASE low
    (0x084, 0),    // STRTAB_BASE high
    (0x088, 0),    // STRTAB_BASE_CFG
    (0x090, 0),    // CMDQ_BASE low
    (0x094, 0),    // CMDQ_BASE high
    (0x098, 0),    // CMDQ_PROD
    (0x09c, 0),    // CMDQ_CONS
    (0x0a0, 0),    // EVENTQ_BASE low
    (0x0a4, 0),    // EVENTQ_BASE high
    (0x1_00a8, 0), // EVENTQ_PROD
    (0x1_00ac, 0), // EVENTQ_CONS
    (0x064, 0),    // GERRORN (GERROR resets to 0)
    (0x054, 0),    // IRQ_CTRLACK (read-only on hardware; harmless)
];

/// SMMU_GBPA offset.
const GBPA: usize = 0x044;

/// QEMU's SMMU as if it sat in a power domain: power-off writes the reset values (so the
/// hypervisor sees exactly what real hardware would show after power-on), GBPA included.
#[derive(Clone, Copy, Debug)]
pub struct SimulatedPowerDomain {
    reset: GbpaReset,
    on: bool,
    /// Power-offs performed.
    pub offs: u64,
    /// Unexpected losses injected.
    pub losses: u64,
}

impl SimulatedPowerDomain {
    /// A powered domain whose GBPA resets to `reset`.
    pub const fn new(reset: GbpaReset) -> Self {
        Self { reset, on: true, offs: 0, losses: 0 }
    }

    fn reset_registers(&self, regs: &mut dyn PowerRegs) {
        for (off, v) in RESET_VALUES {
            if off != 0x054 {
                regs.write32(off, v);
            }
        }
        // GBPA with UPDATE so the (live) QEMU model applies it.
        regs.write32(GBPA, self.reset.register_value() | 1 << 31);
        for _ in 0..1_000_000 {
            if regs.read32(GBPA) & (1 << 31) == 0 {
                break;
            }
        }
    }
}

impl SmmuPowerDomain for SimulatedPowerDomain {
    fn gbpa_reset(&self) -> GbpaReset {
        self.reset
    }
    fn is_on(&self) -> bool {
        self.on
    }
    fn power_off(&mut self, regs: &mut dyn PowerRegs) {
        self.reset_registers(regs);
        self.on = false;
        self.offs += 1;
    }
    fn power_on(&mut self, _regs: &mut dyn PowerRegs) {
        self.on = true;
    }
    fn inject_loss(&mut self, regs: &mut dyn PowerRegs) {
        self.reset_registers(regs);
        self.on = true;
        self.losses += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Regs(BTreeMap<usize, u32>);
    impl PowerRegs for Regs {
        fn read32(&mut self, off: usize) -> u32 {
            *self.0.get(&off).unwrap_or(&0)
        }
        fn write32(&mut self, off: usize, v: u32) {
            self.0.insert(off, if off == GBPA { v & !(1 << 31) } else { v });
        }
    }

    #[test]
    fn power_off_leaves_reset_values_and_the_platform_gbpa() {
        for (reset, gbpa) in [(GbpaReset::Abort, 1 << 20), (GbpaReset::Bypass, 0)] {
            let mut r = Regs::default();
            r.0.insert(0x020, 0xd);
            r.0.insert(0x080, 0x4030_0000);
            r.0.insert(GBPA, 1 << 20);
            let mut d = SimulatedPowerDomain::new(reset);
            d.power_off(&mut r);
            assert!(!d.is_on());
            assert_eq!(r.0[&0x020], 0);
            assert_eq!(r.0[&0x080], 0);
            assert_eq!(r.0[&GBPA], gbpa);
            d.power_on(&mut r);
            assert!(d.is_on());
        }
        assert_eq!(GbpaReset::parse("bypass"), Some(GbpaReset::Bypass));
        assert_eq!(GbpaReset::parse("x"), None);
    }
}
