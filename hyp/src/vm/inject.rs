//! Injecting a synchronous exception into a VM's EL1, as the architecture would have taken it.
//!
//! The hypervisor uses this for stage-2 faults (the VM touched memory it does not own: it gets a
//! synchronous external abort) and for traps it does not emulate (the VM gets an undefined
//! instruction). The computation is pure: the EL2 trap code feeds in the registers it saved and
//! writes back the result.

use crate::vm::esr::{Esr, ExceptionClass};

/// SPSR.M[3:0] for EL0t.
const M_EL0T: u64 = 0b0000;
/// SPSR.M[3:0] for EL1t.
const M_EL1T: u64 = 0b0100;
/// SPSR.M[3:0] for EL1h.
const M_EL1H: u64 = 0b0101;
/// SPSR.{D,A,I,F}: all masked.
const DAIF_MASKED: u64 = 0b1111 << 6;
/// PSTATE.SSBS (SPSR bit 12).
const PSTATE_SSBS: u64 = 1 << 12;
/// PSTATE.PAN (SPSR bit 22).
const PSTATE_PAN: u64 = 1 << 22;
/// PSTATE.DIT (SPSR bit 24).
const PSTATE_DIT: u64 = 1 << 24;
/// SCTLR_EL1.SPAN (bit 23): 0 = PSTATE.PAN is set on exception entry to EL1.
const SCTLR_SPAN: u64 = 1 << 23;
/// SCTLR_EL1.DSSBS (bit 44): PSTATE.SSBS on exception entry to EL1.
const SCTLR_DSSBS: u64 = 1 << 44;
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
    /// The VM's SCTLR_EL1 (exception entry sets PSTATE.PAN and SSBS from it).
    pub sctlr_el1: u64,
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
    /// New SPSR_EL2: EL1h with D, A, I, F masked, and the other PSTATE bits as taking the
    /// exception at EL1 sets them.
    pub spsr_el2: u64,
}

/// PSTATE after taking an exception to EL1h from `spsr`, as the architecture sets it: D, A, I,
/// F masked; PAN set unless SCTLR_EL1.SPAN (else kept); SSBS from SCTLR_EL1.DSSBS; DIT kept;
/// everything else (UAO, SS, IL, BTYPE, condition flags) zero. (FEAT_MTE's TCO and FEAT_NMI's
/// ALLINT are not offered to VMs here.)
pub fn entry_pstate(spsr: u64, sctlr_el1: u64) -> u64 {
    let mut p = M_EL1H | DAIF_MASKED | (spsr & PSTATE_DIT);
    if sctlr_el1 & SCTLR_SPAN == 0 {
        p |= PSTATE_PAN;
    } else {
        p |= spsr & PSTATE_PAN;
    }
    if sctlr_el1 & SCTLR_DSSBS != 0 {
        p |= PSTATE_SSBS;
    }
    p
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
        spsr_el2: entry_pstate(t.spsr, t.sctlr_el1),
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
            // SPAN set (a bare-metal guest's reset value): PAN is kept.
            sctlr_el1: 0x30d0_0800,
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
    fn pstate_on_entry_follows_sctlr() {
        // A Linux-like SCTLR_EL1: SPAN clear (PAN set on entry), DSSBS clear.
        let linux = 0x0000_0000_3450_d91d_u64 & !SCTLR_SPAN;
        // From EL0 with SSBS, DIT, UAO, condition flags set.
        let user = PSTATE_SSBS | PSTATE_DIT | (1 << 23) | (0xf << 28);
        let p = entry_pstate(user, linux);
        assert_eq!(p, M_EL1H | DAIF_MASKED | PSTATE_PAN | PSTATE_DIT);
        // SPAN set keeps PAN as it was; DSSBS sets SSBS.
        assert_eq!(entry_pstate(0, SCTLR_SPAN) & PSTATE_PAN, 0);
        assert_eq!(entry_pstate(PSTATE_PAN, SCTLR_SPAN) & PSTATE_PAN, PSTATE_PAN);
        assert_eq!(entry_pstate(0, SCTLR_SPAN | SCTLR_DSSBS) & PSTATE_SSBS, PSTATE_SSBS);
        let mut t = trapped((0x24 << 26) | 0x06, 0x0);
        t.sctlr_el1 = linux;
        assert_eq!(external_abort(&t).unwrap().spsr_el2 & PSTATE_PAN, PSTATE_PAN);
    }

    /// The same rules with the architecture's bit numbers written out (the tests above use the
    /// module's constants, which would agree with a wrong constant).
    #[test]
    fn pstate_bits_are_the_architectures() {
        const EL1H_DAIF: u64 = 0x3c5;
        const SPAN: u64 = 1 << 23;
        const DSSBS: u64 = 1 << 44;
        // SPAN clear: PAN (bit 22) set on entry.
        assert_eq!(entry_pstate(0, 0), EL1H_DAIF | (1 << 22));
        // DSSBS: SSBS (bit 12) set on entry; otherwise cleared, whatever it was.
        assert_eq!(entry_pstate(0, SPAN | DSSBS), EL1H_DAIF | (1 << 12));
        assert_eq!(entry_pstate(1 << 12, SPAN), EL1H_DAIF);
        // DIT (bit 24) kept; PAN kept under SPAN; UAO (23), SS (21), IL (20), NZCV cleared.
        let all = (1 << 24) | (1 << 23) | (1 << 22) | (1 << 21) | (1 << 20) | (0xf << 28);
        assert_eq!(entry_pstate(all, SPAN), EL1H_DAIF | (1 << 24) | (1 << 22));
        assert_eq!(entry_pstate(all, 0), EL1H_DAIF | (1 << 24) | (1 << 22));
        assert_eq!(entry_pstate(1 << 24, SPAN | DSSBS), EL1H_DAIF | (1 << 24) | (1 << 12));
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
