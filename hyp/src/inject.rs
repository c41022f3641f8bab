//! Injecting a synchronous exception into a VM's EL1, as the architecture would have taken it.
//!
//! The hypervisor uses this for stage-2 faults (the VM touched memory it does not own: it gets a
//! synchronous external abort) and for traps it does not emulate (the VM gets an undefined
//! instruction). The computation is pure: the EL2 trap code feeds in the registers it saved and
//! writes back the result.

use crate::esr::{Esr, ExceptionClass};

/// SPSR.M[3:0] for EL0t.
const M_EL0T: u64 = 0b0000;
/// SPSR.M[3:0] for EL1t.
const M_EL1T: u64 = 0b0100;
/// SPSR.M[3:0] for EL1h.
const M_EL1H: u64 = 0b0101;
/// SPSR.{D,A,I,F}: all masked.
const DAIF_MASKED: u64 = 0b1111 << 6;
/// Fault status code "synchronous external abort, not on a table walk".
pub const FSC_SEA: u64 = 0x10;

/// What the VM was doing when it trapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrappedState {
    /// ESR_EL2 of the trap.
    pub esr: Esr,
    /// FAR_EL2 (the faulting virtual address, for aborts).
    pub far: u64,
    /// ELR_EL2: the instruction that trapped.
    pub elr: u64,
    /// SPSR_EL2: the VM's PSTATE.
    pub spsr: u64,
    /// The VM's VBAR_EL1.
    pub vbar_el1: u64,
}

/// The EL1 and EL2 register values that deliver the exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    /// ESR_EL1 the VM sees.
    pub esr_el1: u64,
    /// FAR_EL1 the VM sees.
    pub far_el1: u64,
    /// ELR_EL1: where the VM returns to.
    pub elr_el1: u64,
    /// SPSR_EL1: the VM's PSTATE before the exception.
    pub spsr_el1: u64,
    /// New ELR_EL2: the VM's synchronous vector.
    pub elr_el2: u64,
    /// New SPSR_EL2: EL1h with D, A, I, F masked.
    pub spsr_el2: u64,
}

/// Offset of the synchronous vector for an exception taken to EL1 from `spsr`'s mode.
fn sync_vector_offset(spsr: u64) -> u64 {
    match spsr & 0xf {
        M_EL1T => 0x000,
        M_EL1H => 0x200,
        M_EL0T => 0x400,
        // AArch32 or anything unexpected: the lower-EL AArch64 slot is the safest guess; a VM
        // cannot run AArch32 here (HCR_EL2.RW = 1).
        _ => 0x400,
    }
}

fn from_el0(spsr: u64) -> bool {
    spsr & 0xf == M_EL0T
}

fn deliver(t: &TrappedState, ec: u64, iss: u64, far: u64) -> Injection {
    let il = 1u64 << 25;
    Injection {
        esr_el1: (ec << 26) | il | iss,
        far_el1: far,
        elr_el1: t.elr,
        spsr_el1: t.spsr,
        elr_el2: t.vbar_el1 + sync_vector_offset(t.spsr),
        spsr_el2: M_EL1H | DAIF_MASKED,
    }
}

/// A synchronous external abort for the data or instruction abort that trapped in `t`.
/// Returns `None` if `t` is not an abort.
pub fn external_abort(t: &TrappedState) -> Option<Injection> {
    let el0 = from_el0(t.spsr);
    let (ec, iss) = match t.esr.class() {
        ExceptionClass::DataAbortLower => {
            let wnr = t.esr.0 & (1 << 6);
            (if el0 { 0x24 } else { 0x25 }, wnr | FSC_SEA)
        }
        ExceptionClass::InstrAbortLower => (if el0 { 0x20 } else { 0x21 }, FSC_SEA),
        _ => return None,
    };
    Some(deliver(t, ec, iss, t.far))
}

/// An "unknown reason" exception (what an undefined instruction raises).
pub fn undefined(t: &TrappedState) -> Injection {
    deliver(t, 0x00, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trapped(esr: u64, spsr: u64) -> TrappedState {
        TrappedState {
            esr: Esr(esr),
            far: 0x4020_0000,
            elr: 0x4400_1234,
            spsr,
            vbar_el1: 0x4400_8000,
        }
    }

    #[test]
    fn data_abort_from_el1h_becomes_same_el_sea() {
        // Stage-2 translation fault on a write from EL1h.
        let t = trapped((0x24 << 26) | (1 << 25) | (1 << 6) | 0x06, 0x3c5);
        let i = external_abort(&t).unwrap();
        // EC 0x25 (data abort, same EL), IL, WnR, DFSC 0x10.
        assert_eq!(i.esr_el1, 0x9600_0050);
        assert_eq!(i.far_el1, 0x4020_0000);
        assert_eq!(i.elr_el1, 0x4400_1234);
        assert_eq!(i.spsr_el1, 0x3c5);
        assert_eq!(i.elr_el2, 0x4400_8200);
        assert_eq!(i.spsr_el2, 0x3c5);
    }

    #[test]
    fn vector_depends_on_mode() {
        let read = (0x24 << 26) | 0x06;
        assert_eq!(external_abort(&trapped(read, 0x3c4)).unwrap().elr_el2, 0x4400_8000);
        let el0 = external_abort(&trapped(read, 0x0)).unwrap();
        assert_eq!(el0.elr_el2, 0x4400_8400);
        assert_eq!(el0.esr_el1 >> 26, 0x24);
        assert_eq!(el0.esr_el1 & (1 << 6), 0, "a read stays a read");
    }

    #[test]
    fn instruction_abort_and_non_aborts() {
        let i = external_abort(&trapped(0x20 << 26, 0x3c5)).unwrap();
        assert_eq!(i.esr_el1, (0x21 << 26) | (1 << 25) | 0x10);
        assert_eq!(external_abort(&trapped(0x16 << 26, 0x3c5)), None);
        let u = undefined(&trapped(0x18 << 26, 0x3c5));
        assert_eq!(u.esr_el1, 1 << 25);
        assert_eq!(u.elr_el2, 0x4400_8200);
    }
}
