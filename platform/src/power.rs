//! The SMMU's power controller: what a platform must provide so the hypervisor can power the
//! SMMU's power domain down and up, and a faithful simulation of it for QEMU (whose SMMU has
//! no power domain). ("Domain" alone means a translation domain everywhere else.)
//!
//! Losing power puts every SMMU register back to its reset value: CR0/CR1/CR2 = 0, table and
//! queue bases 0, IRQ_CTRL = 0, and GBPA = the platform's IMPLEMENTATION DEFINED reset value —
//! abort on well-behaved silicon, bypass on the worst legal silicon. Memory (stream table,
//! queues, page tables) survives.

use crate::regs::SmmuRegs;
use host_abi::smmu::regs::{off, Gbpa, RESET};

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
            GbpaReset::Abort => Gbpa::ABORT,
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

/// The controller of the SMMU's power domain. A real SoC implements this with its power
/// controller (SCMI, a PMIC); the hypervisor calls `power_off` only after quiescing the SMMU and
/// `power_on` before touching it again.
pub trait SmmuPowerController {
    /// GBPA's value after power-on.
    fn gbpa_reset(&self) -> GbpaReset;
    /// Whether the domain is powered.
    fn is_on(&self) -> bool;
    /// Removes power: from now on the registers hold their reset values.
    fn power_off(&mut self, regs: &mut dyn SmmuRegs);
    /// Restores power (registers at reset values until the hypervisor programs them).
    fn power_on(&mut self, regs: &mut dyn SmmuRegs);
    /// Fault injection: power is lost (and comes back at once, at reset values) without the
    /// hypervisor asking. A real SoC reports such an event; the simulation makes one.
    fn inject_loss(&mut self, regs: &mut dyn SmmuRegs);
}

/// SMMU_GBPA offset.
const GBPA: usize = off::GBPA;

/// QEMU's SMMU as if it sat in a power domain: power-off writes the architected reset values
/// ([`RESET`], the same table the software SMMU resets from), so the hypervisor sees exactly
/// what real hardware would show after power-on, GBPA included.
#[derive(Clone, Copy, Debug)]
pub struct SimulatedPowerController {
    reset: GbpaReset,
    on: bool,
    /// Power-offs performed.
    pub offs: u64,
    /// Unexpected losses injected.
    pub losses: u64,
}

impl SimulatedPowerController {
    /// A powered domain whose GBPA resets to `reset`.
    pub const fn new(reset: GbpaReset) -> Self {
        Self { reset, on: true, offs: 0, losses: 0 }
    }

    fn reset_registers(&self, regs: &mut dyn SmmuRegs) {
        for (o, v) in RESET {
            regs.write32(o, v);
        }
        // GERROR is read-only: power-on leaves it and GERRORN both 0, no error active. The
        // nearest a write can come is GERRORN = GERROR (every error acknowledged); the reset
        // value 0 would turn every error acknowledged before into an active one.
        let gerror = regs.read32(off::GERROR);
        regs.write32(off::GERRORN, gerror);
        // GBPA with UPDATE so the (live) QEMU model applies it.
        regs.write32(GBPA, self.reset.register_value() | Gbpa::UPDATE);
        for _ in 0..1_000_000 {
            if !Gbpa(regs.read32(GBPA)).update_pending() {
                break;
            }
        }
    }
}

impl SmmuPowerController for SimulatedPowerController {
    fn gbpa_reset(&self) -> GbpaReset {
        self.reset
    }
    fn is_on(&self) -> bool {
        self.on
    }
    fn power_off(&mut self, regs: &mut dyn SmmuRegs) {
        self.reset_registers(regs);
        self.on = false;
        self.offs += 1;
    }
    fn power_on(&mut self, _regs: &mut dyn SmmuRegs) {
        self.on = true;
    }
    fn inject_loss(&mut self, regs: &mut dyn SmmuRegs) {
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
    impl crate::regs::SmmuBarriers for Regs {
        fn barrier(&mut self, _: crate::regs::Barrier) {
            unreachable!("a power controller writes registers only");
        }
    }
    impl SmmuRegs for Regs {
        fn read32(&mut self, off: usize) -> u32 {
            *self.0.get(&off).unwrap_or(&0)
        }
        fn write32(&mut self, off: usize, v: u32) {
            self.0.insert(off, if off == GBPA { v & !Gbpa::UPDATE } else { v });
        }
    }

    #[test]
    fn no_global_error_is_active_after_a_power_cycle() {
        // One error acknowledged (GERRORN follows GERROR), one raised and not yet: after
        // power-off, as after a real power-on reset, neither is active.
        for (gerror, gerrorn) in [(0x100, 0x100), (0x104, 0x100), (0, 0)] {
            let mut r = Regs::default();
            r.0.insert(off::GERROR, gerror);
            r.0.insert(off::GERRORN, gerrorn);
            let mut d = SimulatedPowerController::new(GbpaReset::Abort);
            d.power_off(&mut r);
            assert_eq!(r.0[&off::GERROR] ^ r.0[&off::GERRORN], 0, "{gerror:#x}/{gerrorn:#x}");
            d.inject_loss(&mut r);
            assert_eq!(r.0[&off::GERROR] ^ r.0[&off::GERRORN], 0);
        }
    }

    #[test]
    fn power_off_leaves_reset_values_and_the_platform_gbpa() {
        for (reset, gbpa) in [(GbpaReset::Abort, Gbpa::ABORT), (GbpaReset::Bypass, 0)] {
            let mut r = Regs::default();
            r.0.insert(off::CR0, 0xd);
            r.0.insert(off::STRTAB_BASE, 0x4030_0000);
            r.0.insert(GBPA, Gbpa::ABORT);
            let mut d = SimulatedPowerController::new(reset);
            d.power_off(&mut r);
            assert!(!d.is_on());
            assert_eq!(r.0[&off::CR0], 0);
            assert_eq!(r.0[&off::STRTAB_BASE], 0);
            assert_eq!(r.0[&GBPA], gbpa);
            d.power_on(&mut r);
            assert!(d.is_on());
        }
        assert_eq!(GbpaReset::parse("bypass"), Some(GbpaReset::Bypass));
        assert_eq!(GbpaReset::parse("x"), None);
    }
}
