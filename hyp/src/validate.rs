//! Validation of what VMs ask the SMMU to do: one path for the host and for guests.
//!
//! A VM describes a stream's translation with a *virtual* STE written as if it owned an
//! SMMU with stage 1 only: abort, bypass or stage-1 translation through its own CD table. The
//! hypervisor accepts only that, turns bypass into its stage-2 ("identity") and stage 1 into
//! nested translation, owns every stage-2 field, and refuses what the real SMMU could not do
//! (so it never installs an STE the hardware would reject). Invalidation commands are checked
//! against one table of field rules per opcode ([`RULES`]); the VMID of TLB invalidations is
//! always the caller's.

use crate::smmu::driver::Features;
use crate::smmu::ste::{Domain, S1Config};
use host_abi::smmu::{cmd, fields_mask, ste, Command, Field, Opcode, Ste, SteConfig};
use host_abi::HypError;
use platform::MemRange;

/// Largest S1CDMax accepted (32 context descriptors), whatever the SMMU supports.
pub const MAX_S1CDMAX: u8 = 5;

/// What the real SMMU supports, as far as validating a VM's request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuCaps {
    /// IDR1.SSIDSIZE: substream ID bits (0: no substreams, one CD per stream).
    pub ssid_bits: u8,
    /// IDR0.ATS: the SMMU has ATS (ATC invalidations must reach it).
    pub ats: bool,
}

impl SmmuCaps {
    /// QEMU 10's SMMUv3 (no substreams: IDR1.SSIDSIZE = 0; no ATS).
    pub const QEMU: SmmuCaps = SmmuCaps { ssid_bits: 0, ats: false };

    /// From the probed ID registers.
    pub fn from_features(f: &Features) -> Self {
        Self { ssid_bits: f.idr1.ssidsize() as u8, ats: f.idr0.ats() }
    }

    /// The largest S1CDMax a virtual STE may ask for on this SMMU.
    pub const fn max_cdmax(&self) -> u8 {
        if self.ssid_bits < MAX_S1CDMAX {
            self.ssid_bits
        } else {
            MAX_S1CDMAX
        }
    }
}

const fn bits(fields: &[Field]) -> [u64; 8] {
    fields_mask(fields)
}

/// What a virtual STE may set (compile-time masks: this is on the SET_STE path).
const VSTE_ALLOWED: [u64; 8] = bits(&[
    ste::V,
    ste::CONFIG,
    ste::S1FMT,
    ste::S1_CONTEXT_PTR,
    ste::S1CDMAX,
    ste::S1DSS,
    ste::S1CIR,
    ste::S1COR,
    ste::S1CSH,
]);
/// Privileged controls a virtual STE may not set.
const VSTE_PRIVILEGED: [u64; 8] = bits(&[
    ste::S1STALLD,
    ste::EATS,
    ste::STRW,
    ste::MEMATTR,
    ste::MTCFG,
    ste::ALLOCCFG,
    ste::SHCFG,
    ste::NSCFG,
    ste::PRIVCFG,
    ste::INSTCFG,
]);

/// Checks a VM's virtual STE and returns the domain it asks for. `mem` is the VM's RAM (the CD
/// table must be inside it); `caps` what the real SMMU supports.
pub fn virtual_ste(v: &Ste, mem: MemRange, caps: &SmmuCaps) -> Result<Domain, HypError> {
    let (allowed, privileged) = (VSTE_ALLOWED, VSTE_PRIVILEGED);
    // Stage 2 is the hypervisor's: any stage-2 field is forbidden, whatever else is wrong.
    if v.0[2] != 0 || v.0[3] != 0 {
        return Err(HypError::ForbiddenField);
    }
    if (0..8).any(|i| v.0[i] & privileged[i] != 0) {
        return Err(HypError::ForbiddenField);
    }
    if (0..8).any(|i| v.0[i] & !(allowed[i] | privileged[i]) != 0) {
        return Err(HypError::ReservedField);
    }
    if v.v() == 0 {
        return Ok(Domain::Blocked);
    }
    match v.config() {
        None => Err(HypError::ReservedField),
        Some(SteConfig::Abort) => Ok(Domain::Blocked),
        Some(SteConfig::Bypass) => Ok(Domain::Identity),
        Some(SteConfig::S2) | Some(SteConfig::Nested) => Err(HypError::ForbiddenField),
        Some(SteConfig::S1) => {
            let cdmax = v.s1cdmax() as u8;
            // Linear CD tables only, as many CDs as the SMMU has substream bits for (an SMMU
            // without substreams takes exactly one), S1DSS not reserved.
            if v.s1fmt() != 0 || cdmax > caps.max_cdmax() || v.s1dss() == 3 {
                return Err(HypError::BadConfig);
            }
            let ctx = v.s1_context_ptr();
            if !mem.contains_range(ctx, 64 << cdmax) {
                return Err(HypError::BadConfig);
            }
            Ok(Domain::Nested(S1Config {
                ctx_ptr: ctx,
                cdmax,
                fmt: 0,
                dss: v.s1dss() as u8,
                cir: v.s1cir() as u8,
                cor: v.s1cor() as u8,
                csh: v.s1csh() as u8,
            }))
        }
    }
}

/// What to do with one valid command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandAction {
    /// Submit this (possibly rewritten: VMID forced) command.
    Submit(Command),
    /// Valid, but nothing to send: a CMD_SYNC (the batch ends with the hypervisor's own), or an
    /// ATC invalidation on an SMMU without ATS (no ATC can hold anything).
    Elide,
}

/// What happens to a command that passes its rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Sent as it is (VMID forced where the rule says).
    Submit,
    /// Never sent.
    Elide,
    /// Sent only if the SMMU has ATS.
    IfAts,
}

/// The field rules of one opcode.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    op: Opcode,
    /// Fields only the hypervisor may set: set by the caller -> FORBIDDEN_FIELD.
    forbidden: [u64; 2],
    /// Every other bit (besides the opcode): set -> RESERVED_FIELD.
    reserved: [u64; 2],
    /// The SID field names a stream the caller must own (NOT_OWNED otherwise).
    owned_sid: bool,
    /// The VMID field gets the caller's VMID.
    force_vmid: bool,
    outcome: Outcome,
}

const fn rule(
    op: Opcode,
    allowed: &[Field],
    forbidden: &[Field],
    owned_sid: bool,
    force_vmid: bool,
    outcome: Outcome,
) -> Rule {
    let mut a: [u64; 2] = fields_mask(allowed);
    a[0] |= cmd::OPCODE.mask();
    let f: [u64; 2] = fields_mask(forbidden);
    Rule {
        op,
        forbidden: f,
        reserved: [!(a[0] | f[0]), !(a[1] | f[1])],
        owned_sid,
        force_vmid,
        outcome,
    }
}

/// Every command a VM may issue, with its field rules; any other opcode is BAD_COMMAND. The
/// secure bit of the CFGI commands, a TLBI's VMID and a SYNC's interrupt or MSI fields belong to
/// the hypervisor (FORBIDDEN_FIELD).
pub const RULES: [Rule; 9] = [
    rule(Opcode::CfgiSte, &[cmd::SID, cmd::LEAF], &[cmd::SSEC], true, false, Outcome::Submit),
    rule(
        Opcode::CfgiCd,
        &[cmd::SID, cmd::SSID, cmd::LEAF],
        &[cmd::SSEC],
        true,
        false,
        Outcome::Submit,
    ),
    rule(Opcode::CfgiCdAll, &[cmd::SID], &[cmd::SSEC], true, false, Outcome::Submit),
    rule(Opcode::TlbiNhAll, &[], &[cmd::VMID], false, true, Outcome::Submit),
    rule(Opcode::TlbiNhAsid, &[cmd::ASID], &[cmd::VMID], false, true, Outcome::Submit),
    rule(
        Opcode::TlbiNhVa,
        &[cmd::ASID, cmd::NUM, cmd::SCALE, cmd::LEAF, cmd::TTL, cmd::TG, cmd::ADDR],
        &[cmd::VMID],
        false,
        true,
        Outcome::Submit,
    ),
    rule(
        Opcode::TlbiNhVaa,
        &[cmd::NUM, cmd::SCALE, cmd::LEAF, cmd::TTL, cmd::TG, cmd::ADDR],
        &[cmd::VMID],
        false,
        true,
        Outcome::Submit,
    ),
    rule(
        Opcode::AtcInv,
        &[cmd::SID, cmd::SSID, cmd::SSV, cmd::GLOBAL, cmd::SIZE, cmd::ADDR],
        &[],
        true,
        false,
        Outcome::IfAts,
    ),
    rule(
        Opcode::Sync,
        &[],
        &[cmd::SYNC_CS, cmd::SYNC_MSH, cmd::SYNC_MSIATTR, cmd::SYNC_MSIDATA, cmd::SYNC_MSIADDR],
        false,
        false,
        Outcome::Elide,
    ),
];

/// What the host's command queue may carry besides [`RULES`], and the rules its own CMD_SYNC
/// follows: the emulated SMMU executes these itself (STE refreshes, prefetches, its SYNCs) or
/// rewrites them (TLBI_NSNH_ALL) instead of passing them to the guests' path. A forbidden or
/// reserved bit set makes the command illegal (CERROR_ILL), as an SMMU that checks its commands
/// does: the secure bit, a SYNC's MSI address and data (no MSI is advertised). A SYNC's CS value
/// is checked by the emulated SMMU itself (none or SEV; IRQ is not provided, 0b11 reserved).
pub const HOST_RULES: [Rule; 6] = [
    rule(Opcode::CfgiSte, &[cmd::SID, cmd::LEAF], &[cmd::SSEC], false, false, Outcome::Submit),
    rule(
        Opcode::CfgiSteRange,
        &[cmd::SID, cmd::RANGE],
        &[cmd::SSEC],
        false,
        false,
        Outcome::Submit,
    ),
    rule(
        Opcode::PrefetchConfig,
        &[cmd::SID, cmd::SSID, cmd::SSV],
        &[cmd::SSEC],
        false,
        false,
        Outcome::Elide,
    ),
    rule(
        Opcode::PrefetchAddr,
        &[cmd::SID, cmd::SSID, cmd::SSV, cmd::PREFETCH_SIZE, cmd::PREFETCH_STRIDE, cmd::ADDR],
        &[cmd::SSEC],
        false,
        false,
        Outcome::Elide,
    ),
    rule(Opcode::TlbiNsnhAll, &[], &[], false, false, Outcome::Submit),
    rule(
        Opcode::Sync,
        &[cmd::SYNC_CS, cmd::SYNC_MSH, cmd::SYNC_MSIATTR],
        &[cmd::SYNC_MSIDATA, cmd::SYNC_MSIADDR],
        false,
        false,
        Outcome::Elide,
    ),
];

/// The host's rule of an opcode byte: [`HOST_RULES`] first, then [`RULES`].
const HOST_RULE_TABLE: [Option<Rule>; 256] = {
    let mut t = RULE_TABLE;
    let mut i = 0;
    while i < HOST_RULES.len() {
        t[HOST_RULES[i].op as usize] = Some(HOST_RULES[i]);
        i += 1;
    }
    t
};

/// Checks the fields of a command in the host's queue that the emulated SMMU handles itself
/// (no ownership: a refresh of a stream it does not own does nothing). `BAD_COMMAND` for an
/// opcode no table has.
pub fn host_fields(c: &Command) -> Result<(), HypError> {
    let r = HOST_RULE_TABLE[c.opcode_byte() as usize].as_ref().ok_or(HypError::BadCommand)?;
    if (c.0[0] & r.forbidden[0]) | (c.0[1] & r.forbidden[1]) != 0 {
        return Err(HypError::ForbiddenField);
    }
    if (c.0[0] & r.reserved[0]) | (c.0[1] & r.reserved[1]) != 0 {
        return Err(HypError::ReservedField);
    }
    Ok(())
}

/// [`RULES`] indexed by opcode byte, computed at compile time (`None`: VMs may not issue it):
/// a command's rule is one indexed load on the invalidation path.
const RULE_TABLE: [Option<Rule>; 256] = {
    let mut t = [None; 256];
    let mut i = 0;
    while i < RULES.len() {
        t[RULES[i].op as usize] = Some(RULES[i]);
        i += 1;
    }
    t
};

/// The rule of an opcode byte, if VMs may issue it.
#[inline]
pub fn rule_for(op: u8) -> Option<&'static Rule> {
    RULE_TABLE[op as usize].as_ref()
}

/// Checks one command from VM with `vmid`, which owns the streams `owns` says yes to, on an
/// SMMU with `caps`.
#[inline]
pub fn command(
    c: &Command,
    vmid: u16,
    owns: &dyn Fn(u32) -> bool,
    caps: &SmmuCaps,
) -> Result<CommandAction, HypError> {
    let r = rule_for(c.opcode_byte()).ok_or(HypError::BadCommand)?;
    if (c.0[0] & r.forbidden[0]) | (c.0[1] & r.forbidden[1]) != 0 {
        return Err(HypError::ForbiddenField);
    }
    if (c.0[0] & r.reserved[0]) | (c.0[1] & r.reserved[1]) != 0 {
        return Err(HypError::ReservedField);
    }
    if r.owned_sid && !owns(c.field(cmd::SID) as u32) {
        return Err(HypError::NotOwned);
    }
    let mut out = *c;
    if r.force_vmid {
        cmd::VMID.set(&mut out.0, vmid as u64);
    }
    Ok(match r.outcome {
        Outcome::Submit => CommandAction::Submit(out),
        Outcome::IfAts if caps.ats => CommandAction::Submit(out),
        Outcome::IfAts | Outcome::Elide => CommandAction::Elide,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEM: MemRange = MemRange::new(0x4600_0000, 0x200_0000);
    const CAPS: SmmuCaps = SmmuCaps::QEMU;

    fn s1(ctx: u64) -> Ste {
        Ste::default().with_v(1).with_config(SteConfig::S1).with_s1_context_ptr(ctx)
    }

    #[test]
    fn accepted_virtual_stes() {
        assert_eq!(virtual_ste(&Ste::default(), MEM, &CAPS), Ok(Domain::Blocked));
        let abort = Ste::default().with_v(1).with_config(SteConfig::Abort);
        assert_eq!(virtual_ste(&abort, MEM, &CAPS), Ok(Domain::Blocked));
        let bypass = Ste::default().with_v(1).with_config(SteConfig::Bypass);
        assert_eq!(virtual_ste(&bypass, MEM, &CAPS), Ok(Domain::Identity), "bypass -> stage 2");
        match virtual_ste(&s1(0x4600_1000).with_s1dss(2), MEM, &CAPS) {
            Ok(Domain::Nested(c)) => {
                assert_eq!((c.ctx_ptr, c.cdmax, c.dss), (0x4600_1000, 0, 2));
            }
            other => panic!("{other:?}"),
        }
        // An SMMU with substreams takes CD tables of up to 2^SSIDSIZE entries (as many as the
        // hypervisor allows).
        let ssid = SmmuCaps { ssid_bits: 16, ats: false };
        match virtual_ste(&s1(0x4600_1000).with_s1cdmax(2).with_s1dss(2), MEM, &ssid) {
            Ok(Domain::Nested(c)) => {
                assert_eq!((c.ctx_ptr, c.cdmax, c.dss), (0x4600_1000, 2, 2));
            }
            other => panic!("{other:?}"),
        }
        let c = s1(0x4600_1000).with_s1cdmax(MAX_S1CDMAX as u64);
        assert!(virtual_ste(&c, MEM, &ssid).is_ok(), "the largest table allowed");
        assert_eq!(virtual_ste(&c, MEM, &CAPS), Err(HypError::BadConfig), "QEMU: no substreams");
    }

    #[test]
    fn refused_virtual_stes_name_the_problem() {
        let cases = [
            (s1(0x4600_1000).with_s2vmid(1), HypError::ForbiddenField),
            (s1(0x4600_1000).with_s2ttb(0x4600_0000), HypError::ForbiddenField),
            (Ste::default().with_v(1).with_config(SteConfig::S2), HypError::ForbiddenField),
            (Ste::default().with_v(1).with_config(SteConfig::Nested), HypError::ForbiddenField),
            (Ste([0x9 | (0x4600_1000), 1 << 28, 0, 0, 0, 0, 0, 0]), HypError::ForbiddenField), // EATS
            (Ste([0xb, 0x3 << 30, 0, 0, 0, 0, 0, 0]), HypError::ForbiddenField), // STRW
            (Ste([0xb, 0, 0, 0, 0, 0, 0, 1]), HypError::ReservedField),          // word 7
            (Ste([0xb | 1 << 52, 0, 0, 0, 0, 0, 0, 0]), HypError::ReservedField), // word 0 bit 52
            (Ste([0xb, 1 << 8, 0, 0, 0, 0, 0, 0]), HypError::ReservedField),     // word 1 bit 8
            (Ste::default().with_v(1).with_config_bits(0b010), HypError::ReservedField),
            (s1(0x4600_1000).with_s1fmt(1), HypError::BadConfig),
            (s1(0x4600_1000).with_s1cdmax(MAX_S1CDMAX as u64 + 1), HypError::BadConfig),
            (s1(0x4600_1000).with_s1dss(3), HypError::BadConfig),
            (s1(0x4020_0000), HypError::BadConfig), // hypervisor memory
            (s1(0x4400_0000), HypError::BadConfig), // another VM
        ];
        for (i, (v, e)) in cases.iter().enumerate() {
            assert_eq!(virtual_ste(v, MEM, &CAPS), Err(*e), "case {i}: {v:x?}");
        }
    }

    #[test]
    fn a_virtual_ste_must_fit_what_the_smmu_supports() {
        // An SMMU without substreams (IDR1.SSIDSIZE = 0) takes one CD per stream: S1CDMax = 1
        // would make it report C_BAD_STE, so the hypervisor refuses it first.
        let none = SmmuCaps { ssid_bits: 0, ats: false };
        let one = s1(0x4600_1000).with_s1cdmax(1);
        assert_eq!(virtual_ste(&one, MEM, &none), Err(HypError::BadConfig));
        assert!(virtual_ste(&s1(0x4600_1000), MEM, &none).is_ok());
        let two_bits = SmmuCaps { ssid_bits: 2, ats: false };
        assert!(virtual_ste(&s1(0x4600_1000).with_s1cdmax(2), MEM, &two_bits).is_ok());
        assert_eq!(
            virtual_ste(&s1(0x4600_1000).with_s1cdmax(3), MEM, &two_bits),
            Err(HypError::BadConfig)
        );
        // The whole table (64 bytes << S1CDMax) lies in the VM's RAM: four CDs end exactly at
        // its end, or straddle it by 64 bytes.
        assert!(virtual_ste(&s1(0x47ff_ff00).with_s1cdmax(2), MEM, &two_bits).is_ok());
        assert_eq!(
            virtual_ste(&s1(0x47ff_ff40).with_s1cdmax(2), MEM, &two_bits),
            Err(HypError::BadConfig)
        );
        let f = Features {
            idr0: host_abi::smmu::regs::Idr0(0x0d44_101b),
            idr1: host_abi::smmu::regs::Idr1::new(16, 0, 19, 19),
            idr5: host_abi::smmu::regs::Idr5(0x55),
        };
        assert_eq!(SmmuCaps::from_features(&f), none);
    }

    fn owns(s: u32) -> bool {
        s == 0x18
    }

    #[test]
    fn commands_are_checked_and_vmid_forced() {
        let ok = |c: Command| command(&c, 3, &owns, &CAPS);
        assert_eq!(ok(Command::cfgi_ste(0x18)), Ok(CommandAction::Submit(Command::cfgi_ste(0x18))));
        assert_eq!(
            ok(Command::cfgi_cd(0x18, 1)),
            Ok(CommandAction::Submit(Command::cfgi_cd(0x18, 1)))
        );
        assert_eq!(
            ok(Command::cfgi_cd_all(0x18)),
            Ok(CommandAction::Submit(Command::cfgi_cd_all(0x18)))
        );
        assert_eq!(
            ok(Command::tlbi_nh_va(0, 5, 0x1000)),
            Ok(CommandAction::Submit(Command::tlbi_nh_va(3, 5, 0x1000)))
        );
        assert_eq!(
            ok(Command::tlbi_nh_asid(0, 5)),
            Ok(CommandAction::Submit(Command::tlbi_nh_asid(3, 5)))
        );
        assert_eq!(ok(Command::tlbi_nh_all(0)), Ok(CommandAction::Submit(Command::tlbi_nh_all(3))));
        assert_eq!(ok(Command::sync()), Ok(CommandAction::Elide));
        assert_eq!(ok(Command::atc_inv_all(0x18)), Ok(CommandAction::Elide), "no ATS on this SMMU");
        assert_eq!(
            command(&Command::atc_inv_all(0x18), 3, &owns, &SmmuCaps { ssid_bits: 0, ats: true }),
            Ok(CommandAction::Submit(Command::atc_inv_all(0x18)))
        );
    }

    #[test]
    fn bad_commands_are_refused_with_their_codes() {
        let e = |c: Command| command(&c, 3, &owns, &CAPS).unwrap_err();
        assert_eq!(e(Command::cfgi_ste(0x10)), HypError::NotOwned);
        assert_eq!(e(Command::cfgi_cd_all(0x20)), HypError::NotOwned);
        assert_eq!(e(Command::atc_inv_all(0x10)), HypError::NotOwned);
        assert_eq!(e(Command::tlbi_nh_va(2, 5, 0x1000)), HypError::ForbiddenField, "foreign VMID");
        assert_eq!(e(Command::tlbi_nh_all(3)), HypError::ForbiddenField, "even its own VMID");
        assert_eq!(
            e(Command([0x46 | 1 << 12, 0])),
            HypError::ForbiddenField,
            "SYNC with interrupt"
        );
        assert_eq!(e(Command([0x3 | 0x18 << 32, 1 << 5])), HypError::ReservedField);
        assert_eq!(e(Command([0x10 | 1 << 8, 0])), HypError::ReservedField);
        for bad in [
            Command::cfgi_all(),
            Command::tlbi_nsnh_all(),
            Command::tlbi_el2_all(),
            Command::tlbi_s12_vmall(0),
        ] {
            assert_eq!(e(bad), HypError::BadCommand, "{bad:x?}");
        }
        assert_eq!(e(Command([0x02, 0])), HypError::BadCommand, "unknown opcode");
    }

    #[test]
    fn the_same_bad_bits_in_both_words_are_still_bad() {
        // SYNC: CS (word 0 bits 13:12) and MSIADDR (word 1 bits 51:2) both set at bits 13:12.
        let c = Command([0x46 | 0x3 << 12, 0x3 << 12]);
        assert_eq!(command(&c, 3, &owns, &CAPS), Err(HypError::ForbiddenField));
        // TLBI_NH_ALL: reserved bit 8 in both words.
        let c = Command([0x10 | 1 << 8, 1 << 8]);
        assert_eq!(command(&c, 3, &owns, &CAPS), Err(HypError::ReservedField));
    }

    #[test]
    fn the_secure_bit_is_forbidden_on_every_cfgi_command() {
        let secure = 1u64 << 10;
        for c in [Command::cfgi_ste(0x18), Command::cfgi_cd(0x18, 0), Command::cfgi_cd_all(0x18)] {
            let s = Command([c.0[0] | secure, c.0[1]]);
            assert_eq!(command(&s, 3, &owns, &CAPS), Err(HypError::ForbiddenField), "{c:x?}");
            // Forbidden wins over ownership: the field is judged first.
            let other = Command([(s.0[0] & 0xffff_ffff) | 0x10 << 32, s.0[1]]);
            assert_eq!(command(&other, 3, &owns, &CAPS), Err(HypError::ForbiddenField));
        }
    }

    #[test]
    fn every_rule_is_consistent() {
        for r in RULES {
            assert_eq!(r.reserved[0] & r.forbidden[0], 0, "{:?}", r.op);
            assert_eq!(r.reserved[1] & r.forbidden[1], 0, "{:?}", r.op);
            assert!(rule_for(r.op as u8).is_some());
            // Every single reserved bit of every allowed opcode is refused as reserved.
            for (w, reserved) in r.reserved.iter().enumerate() {
                for b in 0..64 {
                    let bit = 1u64 << b;
                    if reserved & bit == 0 {
                        continue;
                    }
                    let mut c = Command([r.op as u64, 0]);
                    if r.owned_sid {
                        cmd::SID.set(&mut c.0, 0x18);
                    }
                    c.0[w] |= bit;
                    assert_eq!(
                        command(&c, 3, &owns, &CAPS),
                        Err(HypError::ReservedField),
                        "{:?} word {w} bit {b}",
                        r.op
                    );
                }
            }
        }
    }

    #[test]
    fn the_hosts_own_commands_check_every_bit() {
        // Every opcode the host's queue carries has a rule; the host's rules override the
        // guests' for CFGI_STE (no ownership) and CMD_SYNC (CS, MSH, MSIATTR allowed).
        for r in RULES.iter().chain(HOST_RULES.iter()) {
            let h = HOST_RULE_TABLE[r.op as usize].as_ref().expect("a host rule");
            assert_eq!(h.reserved[0] & h.forbidden[0], 0, "{:?}", r.op);
            assert_eq!(h.reserved[1] & h.forbidden[1], 0, "{:?}", r.op);
            assert_eq!(host_fields(&Command([r.op as u64, 0])), Ok(()), "{:?}", r.op);
            for w in 0..2 {
                for b in 0..64 {
                    let bit = 1u64 << b;
                    if w == 0 && b < 8 {
                        continue;
                    }
                    let mut c = Command([h.op as u64, 0]);
                    c.0[w] |= bit;
                    let want = if h.forbidden[w] & bit != 0 {
                        Err(HypError::ForbiddenField)
                    } else if h.reserved[w] & bit != 0 {
                        Err(HypError::ReservedField)
                    } else {
                        Ok(())
                    };
                    assert_eq!(host_fields(&c), want, "{:?} word {w} bit {b}", h.op);
                }
            }
        }
        assert_eq!(host_fields(&Command([0x07, 0])), Err(HypError::BadCommand));
        // The secure bit is forbidden wherever it exists.
        for op in
            [Opcode::CfgiSte, Opcode::CfgiSteRange, Opcode::PrefetchConfig, Opcode::PrefetchAddr]
        {
            let c = Command([op as u64 | 1 << 10, 0]);
            assert_eq!(host_fields(&c), Err(HypError::ForbiddenField), "{op:?}");
        }
        // A SYNC may say how it completes; its MSI address and data are forbidden.
        let sync = HOST_RULE_TABLE[Opcode::Sync as usize].unwrap();
        assert_eq!(sync.forbidden, fields_mask(&[cmd::SYNC_MSIDATA, cmd::SYNC_MSIADDR]));
        assert_eq!(host_fields(&Command([0x46 | 3 << 12 | 3 << 22 | 0xf << 24, 0])), Ok(()));
    }
}
