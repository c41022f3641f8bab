//! The Linux host's SGIs (IPIs). With `HCR_EL2.FMO` set on its CPUs (the hypervisor's own
//! interrupts are FIQs taken at EL2 there: `el2_controls::Hcr::LINUX_HOST`), the GICv3
//! architecture traps every EL1 write of `ICC_SGI0R_EL1`, `ICC_SGI1R_EL1` and `ICC_ASGI1R_EL1`
//! to EL2 (IMO or FMO set is enough). The hypervisor sends the host's group-1 SGIs itself, to
//! the host's own CPUs only: a target that is not its CPU is dropped (before FMO it stayed
//! pending, disabled, at a guest's redistributor), a broadcast (`IRM`) becomes "every other CPU
//! of the host". Group-0 SGIs (`ICC_SGI0R_EL1`, and `ICC_ASGI1R_EL1`, which on a GIC with a
//! single security state names group 0) would be FIQs at EL2: never sent.
//!
//! CPUs are named by their linear index, which is `Aff0` on the boards this runs on (QEMU
//! `virt`, at most 16 CPUs: `Aff1..3` and the range selector are zero for every CPU).
#![forbid(unsafe_code)]

use crate::vm::esr::{Esr, SysRegAccess};

/// ESR_EL2.EC of a trapped `MSR`/`MRS` (or system instruction) from AArch64.
const EC_SYSREG: u8 = 0x18;

/// Which SGI register a trapped `MSR` wrote, by its encoding (op0, op1, CRn, CRm, op2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgiRegister {
    /// `ICC_SGI1R_EL1` (S3_0_C12_C11_5): a group-1 SGI, the host's IPIs.
    Sgi1r,
    /// `ICC_ASGI1R_EL1` (S3_0_C12_C11_6): the other group's.
    Asgi1r,
    /// `ICC_SGI0R_EL1` (S3_0_C12_C11_7): group 0.
    Sgi0r,
}

impl SgiRegister {
    /// The SGI register with this encoding, if it is one.
    pub fn from_encoding(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Option<Self> {
        match (op0, op1, crn, crm, op2) {
            (3, 0, 12, 11, 5) => Some(Self::Sgi1r),
            (3, 0, 12, 11, 6) => Some(Self::Asgi1r),
            (3, 0, 12, 11, 7) => Some(Self::Sgi0r),
            _ => None,
        }
    }

    /// The SGI register that the `MSR` trapped with syndrome `esr` writes, and the register it
    /// writes from (Rt; 31 is XZR), if the trap is a system-register write to one (exception
    /// class 0x18, direction "write"). Anything else, reads included, is `None`.
    #[inline(always)]
    pub fn written(esr: Esr) -> Option<(Self, u8)> {
        if esr.ec_raw() != EC_SYSREG {
            return None;
        }
        let a = SysRegAccess::decode(esr);
        if a.read {
            return None;
        }
        Some((Self::from_encoding(a.op0, a.op1, a.crn, a.crm, a.op2)?, a.rt))
    }
}

/// A bit field of a 64-bit register: its lowest bit and width.
#[derive(Clone, Copy)]
struct Field {
    lsb: u32,
    width: u32,
}

impl Field {
    const fn get(self, v: u64) -> u64 {
        (v >> self.lsb) & ((1u64 << self.width) - 1)
    }
    #[cfg(test)]
    const fn put(self, x: u64) -> u64 {
        (x & ((1u64 << self.width) - 1)) << self.lsb
    }
}

/// The value written to `ICC_SGI1R_EL1` (GICv3 architecture, 12.2.23).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct Sgi1r(pub u64);

impl Sgi1r {
    /// TargetList, bits [15:0]: one bit per `Aff0` value (plus 16 x RS).
    const TARGET_LIST: Field = Field { lsb: 0, width: 16 };
    /// Aff1, bits [23:16].
    const AFF1: Field = Field { lsb: 16, width: 8 };
    /// INTID, bits [27:24].
    const INTID: Field = Field { lsb: 24, width: 4 };
    /// Aff2, bits [39:32].
    const AFF2: Field = Field { lsb: 32, width: 8 };
    /// IRM, bit 40: every PE but the sender (TargetList and affinities ignored).
    const IRM: Field = Field { lsb: 40, width: 1 };
    /// RS, bits [47:44]: the target list covers Aff0 values 16 x RS .. 16 x RS + 15.
    const RS: Field = Field { lsb: 44, width: 4 };
    /// Aff3, bits [55:48].
    const AFF3: Field = Field { lsb: 48, width: 8 };

    /// The SGI's INTID (0..15).
    pub fn intid(self) -> u8 {
        Self::INTID.get(self.0) as u8
    }
    /// Every PE but the sender.
    pub fn broadcast(self) -> bool {
        Self::IRM.get(self.0) == 1
    }
    /// The CPUs (by linear index = Aff0, bit n = CPU n) the target list names, or none when it
    /// names CPUs outside `Aff1..3` = 0 and RS = 0 (none of this board's).
    pub fn listed_cpus(self) -> u16 {
        let v = self.0;
        if Self::AFF1.get(v) | Self::AFF2.get(v) | Self::AFF3.get(v) | Self::RS.get(v) != 0 {
            return 0;
        }
        Self::TARGET_LIST.get(v) as u16
    }

    /// A target-list SGI `intid` to the CPUs `targets` (bit n = Aff0 n), for the tests.
    #[cfg(test)]
    pub fn list(intid: u8, targets: u16) -> Self {
        Self(Self::INTID.put(intid.into()) | Self::TARGET_LIST.put(targets.into()))
    }
}

/// What the hypervisor does with one trapped SGI write of the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgiDecision {
    /// The group-1 SGI to send, and to which of the host's CPUs (bit n = CPU n), if any.
    pub send: Option<(u8, u16)>,
    /// Targets dropped: CPUs not the host's (bit n = CPU n; bit 15 also stands for any CPU
    /// outside `Aff0` 0..15), or every target of a group-0 SGI.
    pub dropped: u16,
}

/// The decision for a write of `value` to `reg` by the host on CPU `sender`, whose CPUs are
/// `own` (bit n = CPU n; `sender` is one of them).
pub fn decide(reg: SgiRegister, value: u64, sender: u32, own: u16) -> SgiDecision {
    let v = Sgi1r(value);
    let others = own & !(1u16 << (sender & 15));
    let asked = if v.broadcast() {
        // Every PE but the sender: the others of the host's, and everybody else.
        others | !own
    } else {
        let listed = v.listed_cpus();
        if listed == 0 && v.0 & 0xffff != 0 {
            1 << 15
        } else {
            listed
        }
    };
    if reg != SgiRegister::Sgi1r {
        return SgiDecision { send: None, dropped: asked };
    }
    let targets = if v.broadcast() { others } else { asked & own };
    SgiDecision { send: (targets != 0).then_some((v.intid(), targets)), dropped: asked & !own }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host of QEMU `virt`: CPUs 0 and 1.
    const HOST: u16 = 0b0011;

    #[test]
    fn the_encodings_are_the_architectures() {
        assert_eq!(SgiRegister::from_encoding(3, 0, 12, 11, 5), Some(SgiRegister::Sgi1r));
        assert_eq!(SgiRegister::from_encoding(3, 0, 12, 11, 6), Some(SgiRegister::Asgi1r));
        assert_eq!(SgiRegister::from_encoding(3, 0, 12, 11, 7), Some(SgiRegister::Sgi0r));
        // ICC_DIR_EL1 (S3_0_C12_C11_1) and ICC_SGI1R's neighbours are not SGI registers.
        assert_eq!(SgiRegister::from_encoding(3, 0, 12, 11, 1), None);
        assert_eq!(SgiRegister::from_encoding(3, 0, 12, 12, 5), None);
        // Linux's `gic_send_sgi` for SGI 2 (IPI_CPU_STOP) to CPU 1: INTID at bit 24.
        assert_eq!(Sgi1r::list(2, 0b10).0, 0x0200_0002);
        let v = Sgi1r(0x00ab_00cd_0f00_0000 | (1 << 40));
        assert_eq!((v.intid(), v.broadcast(), v.listed_cpus()), (15, true, 0));
    }

    /// An `MSR`/`MRS` syndrome (EC 0x18) for the encoding, register Rt and direction.
    fn sysreg_esr(enc: (u64, u64, u64, u64, u64), rt: u64, read: bool) -> Esr {
        let (op0, op1, crn, crm, op2) = enc;
        Esr((0x18 << 26)
            | (1 << 25)
            | (op0 << 20)
            | (op2 << 17)
            | (op1 << 14)
            | (crn << 10)
            | (rt << 5)
            | (crm << 1)
            | read as u64)
    }

    #[test]
    fn written_names_sgi_register_writes_only() {
        // Linux's `msr ICC_SGI1R_EL1, x1`.
        let e = sysreg_esr((3, 0, 12, 11, 5), 1, false);
        assert_eq!(SgiRegister::written(e), Some((SgiRegister::Sgi1r, 1)));
        assert_eq!(
            SgiRegister::written(sysreg_esr((3, 0, 12, 11, 6), 30, false)),
            Some((SgiRegister::Asgi1r, 30))
        );
        assert_eq!(
            SgiRegister::written(sysreg_esr((3, 0, 12, 11, 7), 31, false)),
            Some((SgiRegister::Sgi0r, 31))
        );
        // A read of it (undefined: the slow path injects it), another register, another class.
        assert_eq!(SgiRegister::written(sysreg_esr((3, 0, 12, 11, 5), 1, true)), None);
        assert_eq!(SgiRegister::written(sysreg_esr((3, 0, 12, 11, 1), 1, false)), None);
        assert_eq!(SgiRegister::written(sysreg_esr((3, 0, 12, 12, 5), 1, false)), None);
        assert_eq!(SgiRegister::written(sysreg_esr((3, 1, 12, 11, 5), 1, false)), None);
        assert_eq!(SgiRegister::written(sysreg_esr((2, 0, 12, 11, 5), 1, false)), None);
        assert_eq!(SgiRegister::written(sysreg_esr((3, 0, 13, 11, 5), 1, false)), None);
        let hvc_like =
            Esr((sysreg_esr((3, 0, 12, 11, 5), 1, false).0 & !(0x3f << 26)) | (0x16 << 26));
        assert_eq!(SgiRegister::written(hvc_like), None);
        let dabt = Esr((sysreg_esr((3, 0, 12, 11, 5), 1, false).0 & !(0x3f << 26)) | (0x24 << 26));
        assert_eq!(SgiRegister::written(dabt), None);
    }

    #[test]
    fn ipis_between_the_hosts_cpus_are_sent_as_asked() {
        let d = decide(SgiRegister::Sgi1r, Sgi1r::list(2, 0b10).0, 0, HOST);
        assert_eq!(d, SgiDecision { send: Some((2, 0b10)), dropped: 0 });
        // To itself as well (Linux's IPI to self goes through the target list too).
        let d = decide(SgiRegister::Sgi1r, Sgi1r::list(0, 0b11).0, 1, HOST);
        assert_eq!(d, SgiDecision { send: Some((0, 0b11)), dropped: 0 });
    }

    #[test]
    fn targets_not_the_hosts_are_dropped() {
        // Every SGI to the guests' CPUs 2 and 3: nothing sent.
        for intid in 0..16 {
            let d = decide(SgiRegister::Sgi1r, Sgi1r::list(intid, 0b1100).0, 0, HOST);
            assert_eq!(d, SgiDecision { send: None, dropped: 0b1100 });
        }
        // A mixed list keeps only the host's.
        let d = decide(SgiRegister::Sgi1r, Sgi1r::list(5, 0b1110).0, 0, HOST);
        assert_eq!(d, SgiDecision { send: Some((5, 0b10)), dropped: 0b1100 });
        // Another Aff1/Aff2/Aff3 or range selector names no CPU of this board.
        for (lsb, x) in [(16, 1), (32, 1), (48, 1), (44, 1)] {
            let v = Sgi1r::list(1, 0b1).0 | (x << lsb);
            let d = decide(SgiRegister::Sgi1r, v, 1, HOST);
            assert_eq!(d, SgiDecision { send: None, dropped: 1 << 15 }, "field at bit {lsb}");
        }
        // Several of them at once, equal (their values must not cancel out).
        for fields in [[16, 32], [32, 48], [48, 44], [16, 44]] {
            let v = fields.iter().fold(Sgi1r::list(1, 0b11).0, |v, lsb| v | (1 << lsb));
            let d = decide(SgiRegister::Sgi1r, v, 0, HOST);
            assert_eq!(d, SgiDecision { send: None, dropped: 1 << 15 }, "fields {fields:?}");
        }
        // An empty target list names nobody: nothing sent, nothing dropped.
        let d = decide(SgiRegister::Sgi1r, Sgi1r::list(3, 0).0, 1, HOST);
        assert_eq!(d, SgiDecision { send: None, dropped: 0 });
    }

    #[test]
    fn a_broadcast_reaches_the_hosts_other_cpus_only() {
        let v = Sgi1r::list(9, 0).0 | (1 << 40);
        let d = decide(SgiRegister::Sgi1r, v, 0, HOST);
        assert_eq!(d.send, Some((9, 0b10)));
        assert_eq!(d.dropped, !HOST);
        // From CPU 1: CPU 0 only.
        let d = decide(SgiRegister::Sgi1r, v, 1, HOST);
        assert_eq!((d.send, d.dropped), (Some((9, 0b01)), !HOST));
        // With its other CPU off-line it still names only CPU 1 (the GIC ignores an SGI to a
        // CPU that is off); a host of one CPU broadcasts to nobody.
        assert_eq!(decide(SgiRegister::Sgi1r, v, 0, 0b1).send, None);
    }

    #[test]
    fn group0_sgis_are_never_sent() {
        for reg in [SgiRegister::Sgi0r, SgiRegister::Asgi1r] {
            let d = decide(reg, Sgi1r::list(1, 0b10).0, 0, HOST);
            assert_eq!(d, SgiDecision { send: None, dropped: 0b10 });
            let d = decide(reg, Sgi1r::list(1, 0).0 | (1 << 40), 0, HOST);
            assert_eq!(d.send, None);
        }
    }
}
