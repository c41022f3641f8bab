//! Validation of what VMs ask the SMMU to do: one path for the host and for guests.
//!
//! A VM describes a stream's translation with a *virtual* STE written as if it owned an
//! SMMU with stage 1 only: abort, bypass or stage-1 translation through its own CD table. The
//! hypervisor accepts only that, turns bypass into its stage-2 ("identity") and stage 1 into
//! nested translation, and owns every stage-2 field. Invalidation commands are checked one by
//! one; the VMID of TLB invalidations is always the caller's.

use crate::smmu::ste::{Domain, S1Config};
use host_abi::smmu::{cmd, fields_mask, ste, Command, Field, Opcode, Ste, SteConfig};
use host_abi::HypError;
use platform::MemRange;

/// Largest S1CDMax accepted (32 context descriptors).
pub const MAX_S1CDMAX: u8 = 5;

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
/// table must be inside it).
pub fn virtual_ste(v: &Ste, mem: MemRange) -> Result<Domain, HypError> {
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
            if v.s1fmt() != 0 || cdmax > MAX_S1CDMAX || v.s1dss() == 3 {
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

/// The bits a command may have set: the opcode and `fields`.
const fn cmd_bits(fields: &[Field]) -> [u64; 2] {
    let mut m: [u64; 2] = fields_mask(fields);
    m[0] |= cmd::OPCODE.mask();
    m
}

const CFGI_STE_BITS: [u64; 2] = cmd_bits(&[cmd::SID, cmd::LEAF]);
const CFGI_CD_BITS: [u64; 2] = cmd_bits(&[cmd::SID, cmd::SSID, cmd::LEAF]);
const CFGI_CD_ALL_BITS: [u64; 2] = cmd_bits(&[cmd::SID]);
const TLBI_NH_ALL_BITS: [u64; 2] = cmd_bits(&[cmd::VMID]);
const TLBI_NH_ASID_BITS: [u64; 2] = cmd_bits(&[cmd::VMID, cmd::ASID]);
const TLBI_NH_VA_BITS: [u64; 2] = cmd_bits(&[
    cmd::VMID,
    cmd::ASID,
    cmd::NUM,
    cmd::SCALE,
    cmd::LEAF,
    cmd::TTL,
    cmd::TG,
    cmd::ADDR,
]);
const ATC_INV_BITS: [u64; 2] =
    cmd_bits(&[cmd::SID, cmd::SSID, cmd::SSV, cmd::GLOBAL, cmd::SIZE, cmd::ADDR]);
const SYNC_BITS: [u64; 2] = cmd_bits(&[]);

fn only(c: &Command, m: [u64; 2]) -> Result<(), HypError> {
    if c.0[0] & !m[0] != 0 || c.0[1] & !m[1] != 0 {
        return Err(HypError::ReservedField);
    }
    Ok(())
}

/// Checks one command from VM with `vmid`, which owns the streams `owns` says yes to.
pub fn command(
    c: &Command,
    vmid: u16,
    owns: &dyn Fn(u32) -> bool,
    ats: bool,
) -> Result<CommandAction, HypError> {
    let op = Opcode::from_u8(c.opcode_byte()).ok_or(HypError::BadCommand)?;
    let sid = c.field(cmd::SID) as u32;
    let owned = |s: u32| if owns(s) { Ok(()) } else { Err(HypError::NotOwned) };
    let vmid_unset =
        || if c.field(cmd::VMID) == 0 { Ok(()) } else { Err(HypError::ForbiddenField) };
    let mut out = *c;
    match op {
        Opcode::CfgiSte => {
            if c.field(cmd::SSEC) != 0 {
                return Err(HypError::ForbiddenField);
            }
            only(c, CFGI_STE_BITS)?;
            owned(sid)?;
        }
        Opcode::CfgiCd => {
            only(c, CFGI_CD_BITS)?;
            owned(sid)?;
        }
        Opcode::CfgiCdAll => {
            only(c, CFGI_CD_ALL_BITS)?;
            owned(sid)?;
        }
        Opcode::TlbiNhAll | Opcode::TlbiNhAsid | Opcode::TlbiNhVa => {
            vmid_unset()?;
            match op {
                Opcode::TlbiNhAll => only(c, TLBI_NH_ALL_BITS)?,
                Opcode::TlbiNhAsid => only(c, TLBI_NH_ASID_BITS)?,
                _ => only(c, TLBI_NH_VA_BITS)?,
            }
            cmd::VMID.set(&mut out.0, vmid as u64);
        }
        Opcode::AtcInv => {
            only(c, ATC_INV_BITS)?;
            owned(sid)?;
            if !ats {
                return Ok(CommandAction::Elide);
            }
        }
        Opcode::Sync => {
            if c.field(cmd::SYNC_CS) != 0
                || c.field(cmd::SYNC_MSH) != 0
                || c.field(cmd::SYNC_MSIATTR) != 0
                || c.field(cmd::SYNC_MSIDATA) != 0
                || c.field(cmd::SYNC_MSIADDR) != 0
            {
                return Err(HypError::ForbiddenField);
            }
            only(c, SYNC_BITS)?;
            return Ok(CommandAction::Elide);
        }
        _ => return Err(HypError::BadCommand),
    }
    Ok(CommandAction::Submit(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEM: MemRange = MemRange::new(0x4600_0000, 0x200_0000);

    fn s1(ctx: u64) -> Ste {
        Ste::default().with_v(1).with_config(SteConfig::S1).with_s1_context_ptr(ctx)
    }

    #[test]
    fn accepted_virtual_stes() {
        assert_eq!(virtual_ste(&Ste::default(), MEM), Ok(Domain::Blocked));
        let abort = Ste::default().with_v(1).with_config(SteConfig::Abort);
        assert_eq!(virtual_ste(&abort, MEM), Ok(Domain::Blocked));
        let bypass = Ste::default().with_v(1).with_config(SteConfig::Bypass);
        assert_eq!(virtual_ste(&bypass, MEM), Ok(Domain::Identity), "bypass becomes stage 2");
        match virtual_ste(&s1(0x4600_1000).with_s1cdmax(2).with_s1dss(2), MEM) {
            Ok(Domain::Nested(c)) => {
                assert_eq!((c.ctx_ptr, c.cdmax, c.dss), (0x4600_1000, 2, 2));
            }
            other => panic!("{other:?}"),
        }
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
            (s1(0x47ff_ffc0).with_s1cdmax(1), HypError::BadConfig), // table straddles the end
        ];
        for (i, (v, e)) in cases.iter().enumerate() {
            assert_eq!(virtual_ste(v, MEM), Err(*e), "case {i}: {v:x?}");
        }
    }

    fn owns(s: u32) -> bool {
        s == 0x18
    }

    #[test]
    fn commands_are_checked_and_vmid_forced() {
        let ok = |c: Command| command(&c, 3, &owns, false);
        assert_eq!(ok(Command::cfgi_ste(0x18)), Ok(CommandAction::Submit(Command::cfgi_ste(0x18))));
        assert_eq!(
            ok(Command::cfgi_cd(0x18, 1)),
            Ok(CommandAction::Submit(Command::cfgi_cd(0x18, 1)))
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
            command(&Command::atc_inv_all(0x18), 3, &owns, true),
            Ok(CommandAction::Submit(Command::atc_inv_all(0x18)))
        );
    }

    #[test]
    fn bad_commands_are_refused_with_their_codes() {
        let e = |c: Command| command(&c, 3, &owns, false).unwrap_err();
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
        assert_eq!(e(Command([0x3 | 1 << 10 | 0x18 << 32, 1])), HypError::ForbiddenField, "secure");
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
}
