//! Validation of what VMs ask the SMMU to do: one path for the host and for guests.
//!
//! A VM describes a stream's translation with a *virtual* STE written as if it owned an
//! SMMU with stage 1 only: abort, bypass or stage-1 translation through its own CD table. The
//! hypervisor accepts only that, turns bypass into its stage-2 ("identity") and stage 1 into
//! nested translation, owns every stage-2 field, and refuses what the real SMMU could not do
//! (so it never installs an STE the hardware would reject). Invalidation commands are checked
//! against one table of field rules per opcode ([`RULES`]); the VMID of TLB invalidations is
//! always the caller's.

use crate::iommu::driver::smmu::Features;
use crate::iommu::driver::ste::{Domain, S1Config};
use host_abi::smmu::{cd, cmd, fields_mask, ste, Cd, Command, Field, Opcode, Ste, SteConfig};
use host_abi::HypError;
use platform::VmSpec;

/// Largest S1CDMax accepted (32 context descriptors), whatever the SMMU supports.
pub const MAX_S1CDMAX: u8 = platform::manifest::MAX_S1CDMAX;

/// What the real SMMU supports, as far as validating a VM's request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuCaps {
    /// IDR1.SSIDSIZE: substream ID bits (0: no substreams, one CD per stream).
    pub ssid_bits: u8,
    /// IDR0.ATS: the SMMU has ATS (ATC invalidations must reach it).
    pub ats: bool,
    /// IDR5.OAS: the largest CD.IPS encoding it implements.
    pub oas: u8,
    /// IDR5.GRAN4K, GRAN16K, GRAN64K: the translation granules it walks (bits 0, 1, 2).
    pub granules: u8,
    /// IDR0.HTTU: 0 none, 1 access flag, 2 access flag and dirty state.
    pub httu: u8,
    /// IDR0.STALL_MODEL allows CD.S (stall) to be set.
    pub stall: bool,
    /// IDR0.ASID16: 16-bit ASIDs (otherwise 8).
    pub asid16: bool,
    /// IDR0.TERM_MODEL: terminated transactions must abort (CD.A = 1).
    pub term_abort: bool,
    /// IDR0.TTENDIAN: 0b00 mixed, 0b10 little-endian only, 0b11 big-endian only.
    pub ttendian: u8,
}

/// SmmuCaps::granules bits.
const GRAN4K: u8 = 1;
const GRAN16K: u8 = 1 << 1;
const GRAN64K: u8 = 1 << 2;

impl SmmuCaps {
    /// QEMU 10's SMMUv3 with `stage=nested` (IDR0 0x0d44101b, IDR1 SSIDSIZE 0, IDR5 0x74): no
    /// substreams, no ATS, 44-bit output, 4, 16 and 64 KiB granules, no HTTU, no stall, 16-bit
    /// ASIDs, TERM_MODEL 1, little-endian walks.
    pub const QEMU: SmmuCaps = SmmuCaps {
        ssid_bits: 0,
        ats: false,
        oas: 4,
        granules: GRAN4K | GRAN16K | GRAN64K,
        httu: 0,
        stall: false,
        asid16: true,
        term_abort: true,
        ttendian: 0b10,
    };

    /// From the probed ID registers.
    pub fn from_features(f: &Features) -> Self {
        let granules =
            [(f.idr5.gran4k(), GRAN4K), (f.idr5.gran16k(), GRAN16K), (f.idr5.gran64k(), GRAN64K)]
                .iter()
                .fold(0, |m, &(has, bit)| if has { m | bit } else { m });
        Self {
            ssid_bits: f.idr1.ssidsize() as u8,
            ats: f.idr0.ats(),
            oas: f.idr5.oas() as u8,
            granules,
            httu: f.idr0.httu() as u8,
            // STALL_MODEL 0b00: stall and terminate; 0b10: stall forced. 0b01: no stall.
            stall: f.idr0.stall_model() != 0b01,
            asid16: f.idr0.asid16(),
            term_abort: f.idr0.term_model(),
            ttendian: f.idr0.ttendian() as u8,
        }
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

/// Checks a VM's virtual STE and returns the domain it asks for. `vm` is the VM (its CD
/// table must be inside its RAM and clear of the hypervisor's shadow CDs: [`VmSpec::holds`]);
/// `caps` what the real SMMU supports. The CDs themselves are checked by [`cd`] when the
/// service reads them.
pub fn virtual_ste(v: &Ste, vm: &VmSpec, caps: &SmmuCaps) -> Result<Domain, HypError> {
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
            if !vm.holds(ctx, 64 << cdmax) {
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

/// Context descriptor fields only the hypervisor may set: the Secure-state walk controls,
/// page-based hardware attributes, the IMPLEMENTATION DEFINED AMAIR and word 5, and MPAM.
const CD_FORBIDDEN: [u64; 8] =
    bits(&[cd::NSCFG0, cd::HWU0, cd::NSCFG1, cd::HWU1, cd::AMAIR, cd::IMPDEF, cd::MPAM]);
/// Context descriptor bits that are reserved (or name features no SMMU here has:
/// hierarchical attribute disables).
const CD_RESERVED: [u64; 8] = bits(&[
    cd::HAD0,
    cd::RES1_3_2,
    cd::RES1_59_52,
    cd::HAD1,
    cd::RES2_3_2,
    cd::RES2_59_52,
    cd::RES7,
]);

/// The granule (log2 of its size) a TG0 (`tg1` false) or TG1 encoding names, if any.
const fn granule_bits(tg: u64, tg1: bool) -> Option<u32> {
    match (tg, tg1) {
        (0b00, false) | (0b10, true) => Some(12),
        (0b10, false) | (0b01, true) => Some(14),
        (0b01, false) | (0b11, true) => Some(16),
        _ => None,
    }
}

/// Output address bits of an IPS encoding (0b110: 52 bits; 0b111 reserved).
const fn ips_bits(ips: u64) -> Option<u32> {
    Some(match ips {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        6 => 52,
        _ => return None,
    })
}

/// Checks one translation table range (TTB0 with its T0SZ/TG0/SH0, or TTB1 with T1SZ/TG1/SH1)
/// of an enabled walk: an input size the architecture allows for the granule (16..=39 bits of
/// T_xSZ: no 52-bit VAs, no small translation tables on these SMMUs), a granule the SMMU
/// walks, a shareability that is not reserved, and a root table aligned to its size, inside
/// the output size and inside the VM's RAM (clear of the shadow CDs).
/// One translation table range of a CD: its T_xSZ, TG_x, SH_x, TTB_x, and whether it is TTB1
/// (whose TG encoding differs).
struct Walk {
    tsz: u64,
    tg: u64,
    sh: u64,
    ttb: u64,
    tg1: bool,
}

fn cd_walk(w: Walk, out_bits: u32, vm: &VmSpec, caps: &SmmuCaps) -> Result<(), HypError> {
    let Walk { tsz, tg, sh, ttb, tg1 } = w;
    let g = granule_bits(tg, tg1).ok_or(HypError::ReservedField)?;
    if sh == 0b01 {
        return Err(HypError::ReservedField);
    }
    let supported = match g {
        12 => caps.granules & GRAN4K,
        14 => caps.granules & GRAN16K,
        _ => caps.granules & GRAN64K,
    };
    if supported == 0 || !(16..=39).contains(&tsz) {
        return Err(HypError::BadConfig);
    }
    // The root table resolves what the levels below it leave of the input address.
    let stride = g - 3;
    let above = (64 - tsz as u32) - g;
    let top = match above % stride {
        0 => stride,
        t => t,
    };
    let table = 8u64 << top;
    if ttb & (table - 1) != 0
        || ttb.checked_add(table).is_none_or(|end| end > 1u64 << out_bits)
        || !vm.holds(ttb, table)
    {
        return Err(HypError::BadConfig);
    }
    Ok(())
}

/// Whether every attribute of a MAIR value is an architected encoding: Device (0b0000dd00) or
/// Normal with both halves naming a cacheability (neither 0b0000).
fn mair_ok(mair: u64) -> bool {
    mair.to_le_bytes().iter().all(|&b| {
        let (hi, lo) = (b >> 4, b & 0xf);
        if hi == 0 {
            lo & 0b11 == 0
        } else {
            lo != 0
        }
    })
}

/// Checks one of VM `vm`'s context descriptors (read from its CD table) against what the real
/// SMMU `caps` implements, and returns the CD the hypervisor writes into its shadow table: the
/// VM's own when valid, all zeros (invalid: the SMMU faults the substream) when V is 0.
///
/// Refused: a field only the hypervisor may set (FORBIDDEN_FIELD); a reserved bit or encoding
/// — HAD, word 7, TG/SH/IPS/MAIR reserved encodings (RESERVED_FIELD); and whatever the SMMU
/// does not implement or the architecture leaves CONSTRAINED UNPREDICTABLE (BAD_CONFIG):
/// AArch32 tables, CD.A = 0 where terminated transactions must abort, stall without stall
/// support, HA/HD without HTTU, an endianness the SMMU does not walk, IPS beyond its
/// IDR5.OAS (0b110 included: the VM gets an error, QEMU never sees it), ASIDs wider than it
/// has, and for each enabled walk (EPD0/EPD1 = 0) the checks of `cd_walk`. Nothing is capped:
/// the shadow is exactly what the VM wrote, or nothing.
pub fn cd(c: &Cd, vm: &VmSpec, caps: &SmmuCaps) -> Result<Cd, HypError> {
    Ok(if cd_in_place(c, vm, caps)? { *c } else { Cd::default() })
}

/// [`cd`] without the copy (the SET_STE path): `Ok(true)` if `c` is valid and accepted as it
/// is, `Ok(false)` if it is invalid (V = 0: the shadow is all zeros).
#[inline]
pub fn cd_in_place(c: &Cd, vm: &VmSpec, caps: &SmmuCaps) -> Result<bool, HypError> {
    if c.v() == 0 {
        return Ok(false);
    }
    if (0..8).any(|i| c.0[i] & CD_FORBIDDEN[i] != 0) {
        return Err(HypError::ForbiddenField);
    }
    if (0..8).any(|i| c.0[i] & CD_RESERVED[i] != 0) || !mair_ok(c.mair()) {
        return Err(HypError::ReservedField);
    }
    let out_bits = ips_bits(c.ips()).ok_or(HypError::ReservedField)?;
    let endian_ok = match caps.ttendian {
        0b10 => c.endi() == 0,
        0b11 => c.endi() == 1,
        _ => true,
    };
    let httu_ok = (c.ha() == 0 || caps.httu >= 1) && (c.hd() == 0 || caps.httu >= 2);
    if c.aa64() == 0
        || (caps.term_abort && c.a() == 0)
        || (c.s() == 1 && !caps.stall)
        || !httu_ok
        || !endian_ok
        || c.ips() > caps.oas as u64
        || (!caps.asid16 && c.asid() > 0xff)
    {
        return Err(HypError::BadConfig);
    }
    if c.epd0() == 0 {
        let w = Walk { tsz: c.t0sz(), tg: c.tg0(), sh: c.sh0(), ttb: c.ttb0(), tg1: false };
        cd_walk(w, out_bits, vm, caps)?;
    }
    if c.epd1() == 0 {
        let w = Walk { tsz: c.t1sz(), tg: c.tg1(), sh: c.sh1(), ttb: c.ttb1(), tg1: true };
        cd_walk(w, out_bits, vm, caps)?;
    }
    Ok(true)
}

/// What to do with one valid command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandAction {
    /// Submit this (possibly rewritten: VMID forced) command.
    Submit(Command),
    /// Submit this configuration invalidation (CFGI_STE, CFGI_CD, CFGI_CD_ALL), after the
    /// hypervisor re-read the context descriptors of the stream it names.
    SubmitConfig(Command),
    /// Valid, but nothing to send: a CMD_SYNC (the batch ends with the hypervisor's own), or an
    /// ATC invalidation on an SMMU without ATS (no ATC can hold anything).
    Elide,
}

/// What happens to a command that passes its rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Sent as it is (VMID forced where the rule says).
    Submit,
    /// A configuration invalidation: sent, and the stream's shadow CDs refreshed first.
    Config,
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
    outcome: Verdict,
}

impl Rule {
    /// `FORBIDDEN_FIELD` if `c` sets a field only the hypervisor may set, else
    /// `RESERVED_FIELD` if it sets any other bit this opcode does not have (each word judged
    /// on its own).
    #[inline]
    fn check_fields(&self, c: &Command) -> Result<(), HypError> {
        if (c.0[0] & self.forbidden[0]) | (c.0[1] & self.forbidden[1]) != 0 {
            return Err(HypError::ForbiddenField);
        }
        if (c.0[0] & self.reserved[0]) | (c.0[1] & self.reserved[1]) != 0 {
            return Err(HypError::ReservedField);
        }
        Ok(())
    }
}

const fn rule(
    op: Opcode,
    allowed: &[Field],
    forbidden: &[Field],
    owned_sid: bool,
    force_vmid: bool,
    outcome: Verdict,
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
    rule(Opcode::CfgiSte, &[cmd::SID, cmd::LEAF], &[cmd::SSEC], true, false, Verdict::Config),
    rule(
        Opcode::CfgiCd,
        &[cmd::SID, cmd::SSID, cmd::LEAF],
        &[cmd::SSEC],
        true,
        false,
        Verdict::Config,
    ),
    rule(Opcode::CfgiCdAll, &[cmd::SID], &[cmd::SSEC], true, false, Verdict::Config),
    rule(Opcode::TlbiNhAll, &[], &[cmd::VMID], false, true, Verdict::Submit),
    rule(Opcode::TlbiNhAsid, &[cmd::ASID], &[cmd::VMID], false, true, Verdict::Submit),
    rule(
        Opcode::TlbiNhVa,
        &[cmd::ASID, cmd::NUM, cmd::SCALE, cmd::LEAF, cmd::TTL, cmd::TG, cmd::ADDR],
        &[cmd::VMID],
        false,
        true,
        Verdict::Submit,
    ),
    rule(
        Opcode::TlbiNhVaa,
        &[cmd::NUM, cmd::SCALE, cmd::LEAF, cmd::TTL, cmd::TG, cmd::ADDR],
        &[cmd::VMID],
        false,
        true,
        Verdict::Submit,
    ),
    rule(
        Opcode::AtcInv,
        &[cmd::SID, cmd::SSID, cmd::SSV, cmd::GLOBAL, cmd::SIZE, cmd::ADDR],
        &[],
        true,
        false,
        Verdict::IfAts,
    ),
    rule(
        Opcode::Sync,
        &[],
        &[cmd::SYNC_CS, cmd::SYNC_MSH, cmd::SYNC_MSIATTR, cmd::SYNC_MSIDATA, cmd::SYNC_MSIADDR],
        false,
        false,
        Verdict::Elide,
    ),
];

/// How the emulated SMMU treats an opcode of the host's command queue: one column of
/// [`HOST_OPCODES`], the only place that says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HostOp {
    /// Passed to the guests' INVALIDATE path exactly as the host wrote it and validated there
    /// by its rule in [`RULES`] (the host's VMID forced, its own streams only): the stage-1
    /// TLB, CD and ATC invalidations.
    Guest,
    /// CMD_SYNC, completed once everything before it completed on the real SMMU: a plain
    /// CMD_SYNC on the guests' path (which drops it: its batch ends with the hypervisor's own
    /// SYNC). CS none, SIG_IRQ (its MSI written into the host's RAM: the emulated SMMU checks
    /// the address) or SEV; 0b11 is reserved (the emulated SMMU checks that itself).
    Sync,
    /// PREFETCH_CONFIG, PREFETCH_ADDR: hints, nothing to do (a plain CMD_SYNC on the guests'
    /// path).
    Prefetch,
    /// TLBI_NSNH_ALL: every non-hypervisor TLB entry the host has, its VMID's TLBI_NH_ALL on
    /// the guests' path.
    NsnhAll,
    /// CFGI_STE: the host STE of the stream it names is read again and shadowed.
    RefreshSte,
    /// CFGI_STE_RANGE (CFGI_ALL is its Range 31): the host STEs of the streams in its range.
    RefreshRange,
    /// Not advertised (stage-2 and EL2 TLBIs, PRI, stall) or no such opcode: the queue stops
    /// (CERROR_ILL).
    Illegal,
}

/// A command the host's queue may carry besides [`RULES`], or carries with other rules than a
/// guest's: its field rule (no ownership: a refresh of a stream the host does not own does
/// nothing) and what the emulated SMMU does with it.
#[derive(Clone, Copy, Debug)]
pub struct HostRule {
    /// The fields it may set; any other bit set makes it illegal.
    pub rule: Rule,
    /// What the emulated SMMU does with it (never [`HostOp::Guest`] or [`HostOp::Illegal`]).
    pub op: HostOp,
}

const fn host_rule(op: Opcode, allowed: &[Field], forbidden: &[Field], treat: HostOp) -> HostRule {
    // Ownership, VMID and verdict are the guests' path's business: a host rule only checks
    // fields.
    HostRule { rule: rule(op, allowed, forbidden, false, false, Verdict::Elide), op: treat }
}

/// What the host's command queue may carry besides [`RULES`], and the rules its own CMD_SYNC
/// follows: the emulated SMMU executes these itself (STE refreshes, prefetches, its SYNCs) or
/// rewrites them (TLBI_NSNH_ALL) instead of passing them to the guests' path. A forbidden or
/// reserved bit set makes the command illegal (CERROR_ILL), as an SMMU that checks its commands
/// does: the secure bit, a reserved bit (a SYNC's MSI address bits 1:0 among them: an MSI is a
/// 4-byte aligned write). A SYNC's CS value and MSI address are checked by the emulated SMMU
/// itself (0b11 is reserved; the MSI must land in the host's own RAM).
pub const HOST_RULES: [HostRule; 6] = [
    host_rule(Opcode::CfgiSte, &[cmd::SID, cmd::LEAF], &[cmd::SSEC], HostOp::RefreshSte),
    host_rule(Opcode::CfgiSteRange, &[cmd::SID, cmd::RANGE], &[cmd::SSEC], HostOp::RefreshRange),
    host_rule(
        Opcode::PrefetchConfig,
        &[cmd::SID, cmd::SSID, cmd::SSV],
        &[cmd::SSEC],
        HostOp::Prefetch,
    ),
    host_rule(
        Opcode::PrefetchAddr,
        &[cmd::SID, cmd::SSID, cmd::SSV, cmd::PREFETCH_SIZE, cmd::PREFETCH_STRIDE, cmd::ADDR],
        &[cmd::SSEC],
        HostOp::Prefetch,
    ),
    host_rule(Opcode::TlbiNsnhAll, &[], &[], HostOp::NsnhAll),
    host_rule(
        Opcode::Sync,
        &[cmd::SYNC_CS, cmd::SYNC_MSH, cmd::SYNC_MSIATTR, cmd::SYNC_MSIDATA, cmd::SYNC_MSIADDR],
        &[],
        HostOp::Sync,
    ),
];

/// The host's command queue, opcode byte by opcode byte, built at compile time from [`RULES`]
/// and [`HOST_RULES`] (the host's rule wins where both have one): how the emulated SMMU treats
/// each opcode and the field rule it is checked against. Two columns rather than one array of
/// pairs, so that the hot path's question ("straight to the guests' path?") is one byte load
/// (the treatment column first: at the table's own address).
#[repr(C)]
pub struct HostOpcodes {
    /// [`HostOp::Guest`] for an opcode of [`RULES`] that [`HOST_RULES`] does not name, the
    /// host rule's treatment for one it names, [`HostOp::Illegal`] for every other byte.
    op: [HostOp; 256],
    /// The rule of every opcode that is not [`HostOp::Illegal`].
    rule: [Option<Rule>; 256],
}

/// See [`HostOpcodes`].
pub static HOST_OPCODES: HostOpcodes = {
    let mut t = HostOpcodes { op: [HostOp::Illegal; 256], rule: [None; 256] };
    let mut i = 0;
    while i < RULES.len() {
        t.op[RULES[i].op as usize] = HostOp::Guest;
        t.rule[RULES[i].op as usize] = Some(RULES[i]);
        i += 1;
    }
    let mut i = 0;
    while i < HOST_RULES.len() {
        let h = HOST_RULES[i];
        t.op[h.rule.op as usize] = h.op;
        t.rule[h.rule.op as usize] = Some(h.rule);
        i += 1;
    }
    t
};

/// How the emulated SMMU treats a host command with opcode byte `op`.
#[inline]
pub fn host_op(op: u8) -> HostOp {
    HOST_OPCODES.op[op as usize]
}

/// Checks the fields of a command in the host's queue that the emulated SMMU handles itself
/// (no ownership: a refresh of a stream it does not own does nothing). `BAD_COMMAND` for an
/// opcode no table has.
pub fn host_fields(c: &Command) -> Result<(), HypError> {
    HOST_OPCODES.rule[c.opcode_byte() as usize]
        .as_ref()
        .ok_or(HypError::BadCommand)?
        .check_fields(c)
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
    r.check_fields(c)?;
    if r.owned_sid && !owns(c.field(cmd::SID) as u32) {
        return Err(HypError::NotOwned);
    }
    let mut out = *c;
    if r.force_vmid {
        cmd::VMID.set(&mut out.0, vmid as u64);
    }
    Ok(match r.outcome {
        Verdict::Submit => CommandAction::Submit(out),
        Verdict::Config => CommandAction::SubmitConfig(out),
        Verdict::IfAts if caps.ats => CommandAction::Submit(out),
        Verdict::IfAts | Verdict::Elide => CommandAction::Elide,
    })
}

/// A CD as Linux's arm-smmu-v3 writes it for a DMA domain: 39-bit input, 4 KiB granule, TTB1
/// walks off, 36-bit output, write-back inner-shareable walks, faults recorded and aborted; its
/// root table at `ttb0`, ASID `asid`, MAIR `mair` (the tests' one description of it).
#[cfg(test)]
pub(crate) fn linux_cd(ttb0: u64, asid: u64, mair: u64) -> Cd {
    Cd::default()
        .with_t0sz(25)
        .with_ir0(1)
        .with_or0(1)
        .with_sh0(3)
        .with_epd1(1)
        .with_v(1)
        .with_ips(1)
        .with_aa64(1)
        .with_r(1)
        .with_a(1)
        .with_aset(1)
        .with_asid(asid)
        .with_ttb0(ttb0)
        .with_mair(mair)
}

#[cfg(test)]
mod tests {
    use super::*;

    use platform::MemRange;

    const VM: VmSpec = VmSpec::for_tests(1, "t", MemRange::new(0x4600_0000, 0x200_0000), 1, &[]);
    const CAPS: SmmuCaps = SmmuCaps::QEMU;

    fn s1(ctx: u64) -> Ste {
        Ste::default().with_v(1).with_config(SteConfig::S1).with_s1_context_ptr(ctx)
    }

    #[test]
    fn accepted_virtual_stes() {
        assert_eq!(virtual_ste(&Ste::default(), &VM, &CAPS), Ok(Domain::Blocked));
        let abort = Ste::default().with_v(1).with_config(SteConfig::Abort);
        assert_eq!(virtual_ste(&abort, &VM, &CAPS), Ok(Domain::Blocked));
        let bypass = Ste::default().with_v(1).with_config(SteConfig::Bypass);
        assert_eq!(virtual_ste(&bypass, &VM, &CAPS), Ok(Domain::Identity), "bypass -> stage 2");
        match virtual_ste(&s1(0x4600_1000).with_s1dss(2), &VM, &CAPS) {
            Ok(Domain::Nested(c)) => {
                assert_eq!((c.ctx_ptr, c.cdmax, c.dss), (0x4600_1000, 0, 2));
            }
            other => panic!("{other:?}"),
        }
        // An SMMU with substreams takes CD tables of up to 2^SSIDSIZE entries (as many as the
        // hypervisor allows).
        let ssid = SmmuCaps { ssid_bits: 16, ..SmmuCaps::QEMU };
        match virtual_ste(&s1(0x4600_1000).with_s1cdmax(2).with_s1dss(2), &VM, &ssid) {
            Ok(Domain::Nested(c)) => {
                assert_eq!((c.ctx_ptr, c.cdmax, c.dss), (0x4600_1000, 2, 2));
            }
            other => panic!("{other:?}"),
        }
        let c = s1(0x4600_1000).with_s1cdmax(MAX_S1CDMAX as u64);
        assert!(virtual_ste(&c, &VM, &ssid).is_ok(), "the largest table allowed");
        assert_eq!(virtual_ste(&c, &VM, &CAPS), Err(HypError::BadConfig), "QEMU: no substreams");
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
            assert_eq!(virtual_ste(v, &VM, &CAPS), Err(*e), "case {i}: {v:x?}");
        }
    }

    #[test]
    fn a_virtual_ste_must_fit_what_the_smmu_supports() {
        // An SMMU without substreams (IDR1.SSIDSIZE = 0) takes one CD per stream: S1CDMax = 1
        // would make it report C_BAD_STE, so the hypervisor refuses it first.
        let none = SmmuCaps { ssid_bits: 0, ..SmmuCaps::QEMU };
        let one = s1(0x4600_1000).with_s1cdmax(1);
        assert_eq!(virtual_ste(&one, &VM, &none), Err(HypError::BadConfig));
        assert!(virtual_ste(&s1(0x4600_1000), &VM, &none).is_ok());
        let two_bits = SmmuCaps { ssid_bits: 2, ..SmmuCaps::QEMU };
        assert!(virtual_ste(&s1(0x4600_1000).with_s1cdmax(2), &VM, &two_bits).is_ok());
        assert_eq!(
            virtual_ste(&s1(0x4600_1000).with_s1cdmax(3), &VM, &two_bits),
            Err(HypError::BadConfig)
        );
        // The whole table (64 bytes << S1CDMax) lies in the VM's RAM: four CDs end exactly at
        // its end, or straddle it by 64 bytes.
        assert!(virtual_ste(&s1(0x47ff_ff00).with_s1cdmax(2), &VM, &two_bits).is_ok());
        assert_eq!(
            virtual_ste(&s1(0x47ff_ff40).with_s1cdmax(2), &VM, &two_bits),
            Err(HypError::BadConfig)
        );
        let f = Features {
            idr0: host_abi::smmu::regs::Idr0(0x0d44_101b),
            idr1: host_abi::smmu::regs::Idr1::new(16, 0, 19, 19),
            idr5: host_abi::smmu::regs::Idr5(0x74),
        };
        assert_eq!(SmmuCaps::from_features(&f), none);
    }

    #[test]
    fn a_cd_table_in_the_shadow_cds_is_refused() {
        let sh = VM.shadow_cds();
        assert_eq!(virtual_ste(&s1(sh.base), &VM, &CAPS), Err(HypError::BadConfig));
        assert_eq!(virtual_ste(&s1(sh.base - 64), &VM, &CAPS).map(|d| d.kind()), Ok(2));
        let two = SmmuCaps { ssid_bits: 2, ..CAPS };
        let straddling = s1(sh.base - 64).with_s1cdmax(1);
        assert_eq!(virtual_ste(&straddling, &VM, &two), Err(HypError::BadConfig));
    }

    /// A CD as Linux's arm-smmu-v3 writes it, with its tables in VM's RAM.
    fn good_cd() -> Cd {
        linux_cd(0x4610_0000, 0xffff, 0x0000_00f4_0044_04ff)
    }

    fn with_field(c: Cd, f: Field, v: u64) -> Cd {
        let mut c = c;
        f.set(&mut c.0, v);
        c
    }

    #[test]
    fn accepted_cds_are_shadowed_exactly() {
        let ok = |c: Cd| {
            let r = cd(&c, &VM, &CAPS);
            assert_eq!(r, Ok(c), "{c:x?}");
        };
        ok(good_cd());
        // Every IPS up to the SMMU's OAS (44 bits on QEMU).
        for ips in 0..=4 {
            ok(good_cd().with_ips(ips));
        }
        // T0SZ at both ends of what the architecture allows here.
        ok(good_cd().with_t0sz(16));
        ok(good_cd().with_t0sz(39).with_ttb0(0x4610_0080));
        // 64 KiB granule (QEMU walks it): a 39-bit input needs an 8 KiB root table.
        ok(good_cd().with_tg0(1).with_ttb0(0x4610_2000));
        // 16 KiB: 25 bits above the page offset, 11 per level: a 64-byte root table.
        ok(good_cd().with_tg0(0b10).with_ttb0(0x4610_0040));
        // TTB1 walks too, with TG1's own encoding (0b10: 4 KiB).
        ok(good_cd().with_epd1(0).with_t1sz(25).with_tg1(0b10).with_sh1(3).with_ttb1(0x4620_0000));
        // A disabled walk's fields are not looked at.
        ok(good_cd().with_epd0(1).with_t0sz(0).with_tg0(3).with_sh0(1).with_ttb0(0x4020_0000));
        // Fields a VM owns: TBI, PAN, WXN, UWXN, AFFD, ASET, R, cacheability, any ASID.
        for f in [cd::TBI, cd::PAN, cd::WXN, cd::UWXN, cd::AFFD, cd::IR0, cd::OR0] {
            ok(with_field(good_cd(), f, u64::MAX));
        }
        ok(good_cd().with_asid(0).with_r(0).with_aset(0));
        // What only some SMMUs allow.
        let any_endian = SmmuCaps { ttendian: 0, ..CAPS };
        let big = good_cd().with_endi(1);
        assert_eq!(cd(&big, &VM, &any_endian), Ok(big));
        let httu = SmmuCaps { httu: 2, ..CAPS };
        let dirty = good_cd().with_ha(1).with_hd(1);
        assert_eq!(cd(&dirty, &VM, &httu), Ok(dirty));
        let term = SmmuCaps { term_abort: false, stall: true, ..CAPS };
        let c = good_cd().with_a(0).with_s(1);
        assert_eq!(cd(&c, &VM, &term), Ok(c));
    }

    #[test]
    fn an_invalid_cd_is_shadowed_as_zeros_whatever_else_it_holds() {
        let garbage = Cd([0x7fff_ffff, u64::MAX, u64::MAX, u64::MAX, 1, 1, 1, 1]);
        assert_eq!(cd(&garbage, &VM, &CAPS), Ok(Cd::default()));
    }

    #[test]
    fn refused_cds_name_the_problem() {
        let g = good_cd;
        let shadow = VM.shadow_cds().base;
        let cases: &[(Cd, HypError, &str)] = &[
            // Fields only the hypervisor may set.
            (with_field(g(), cd::NSCFG0, 1), HypError::ForbiddenField, "NSCFG0"),
            (with_field(g(), cd::NSCFG1, 1), HypError::ForbiddenField, "NSCFG1"),
            (with_field(g(), cd::HWU0, 1), HypError::ForbiddenField, "HWU0"),
            (with_field(g(), cd::HWU1, 8), HypError::ForbiddenField, "HWU1"),
            (with_field(g(), cd::AMAIR, 1), HypError::ForbiddenField, "AMAIR"),
            (with_field(g(), cd::IMPDEF, 1 << 63), HypError::ForbiddenField, "word 5"),
            (with_field(g(), cd::MPAM, 1), HypError::ForbiddenField, "PARTID"),
            // Reserved bits and encodings.
            (with_field(g(), cd::HAD0, 1), HypError::ReservedField, "HAD0"),
            (with_field(g(), cd::HAD1, 1), HypError::ReservedField, "HAD1"),
            (with_field(g(), cd::RES1_3_2, 1), HypError::ReservedField, "word 1 bit 2"),
            (with_field(g(), cd::RES1_59_52, 1), HypError::ReservedField, "word 1 bit 52"),
            (with_field(g(), cd::RES2_3_2, 2), HypError::ReservedField, "word 2 bit 3"),
            (with_field(g(), cd::RES2_59_52, 0x80), HypError::ReservedField, "word 2 bit 59"),
            (with_field(g(), cd::RES7, 1), HypError::ReservedField, "word 7"),
            (g().with_ips(0b111), HypError::ReservedField, "IPS 0b111"),
            (g().with_tg0(3), HypError::ReservedField, "TG0 0b11"),
            (
                g().with_epd1(0).with_t1sz(25).with_ttb1(0x4620_0000),
                HypError::ReservedField,
                "TG1 0b00",
            ),
            (g().with_sh0(1), HypError::ReservedField, "SH0 0b01"),
            (g().with_mair(0x01), HypError::ReservedField, "MAIR Device 0b0000_0001"),
            (g().with_mair(0xff40 << 8), HypError::ReservedField, "MAIR Normal 0b0100_0000"),
            // What the SMMU does not implement, or the architecture leaves unpredictable.
            (g().with_ips(0b110), HypError::BadConfig, "IPS 52 bits beyond OAS"),
            (g().with_ips(0b101), HypError::BadConfig, "IPS 48 bits beyond OAS"),
            (g().with_aa64(0), HypError::BadConfig, "AArch32 tables"),
            (g().with_a(0), HypError::BadConfig, "A = 0 with TERM_MODEL 1"),
            (g().with_s(1), HypError::BadConfig, "stall without stall support"),
            (g().with_ha(1), HypError::BadConfig, "HA without HTTU"),
            (g().with_hd(1), HypError::BadConfig, "HD without HTTU"),
            (g().with_endi(1), HypError::BadConfig, "big-endian walks"),
            (g().with_t0sz(15), HypError::BadConfig, "T0SZ 15"),
            (g().with_t0sz(40), HypError::BadConfig, "T0SZ 40"),
            (g().with_ttb0(0x4610_0800), HypError::BadConfig, "TTB0 misaligned"),
            (g().with_ttb0(0x4020_0000), HypError::BadConfig, "TTB0 in the hypervisor"),
            (g().with_ttb0(0x4400_0000), HypError::BadConfig, "TTB0 in another VM"),
            (g().with_ttb0(shadow), HypError::BadConfig, "TTB0 in the shadow CDs"),
            (g().with_ttb0(0x47ff_f000).with_tg0(1), HypError::BadConfig, "root table past RAM"),
            (
                g().with_epd1(0).with_t1sz(25).with_tg1(0b10).with_ttb1(0x5000_0000),
                HypError::BadConfig,
                "TTB1 outside RAM",
            ),
            (
                g().with_epd1(0).with_t1sz(12).with_tg1(0b10).with_ttb1(0x4620_0000),
                HypError::BadConfig,
                "T1SZ 12",
            ),
        ];
        for (c, e, what) in cases {
            assert_eq!(cd(c, &VM, &CAPS), Err(*e), "{what}: {c:x?}");
        }
        // Capabilities the real SMMU lacks.
        let narrow = SmmuCaps { oas: 1, asid16: false, httu: 1, ..CAPS };
        assert_eq!(cd(&g().with_ips(2), &VM, &narrow), Err(HypError::BadConfig), "IPS > OAS");
        assert_eq!(cd(&g(), &VM, &narrow), Err(HypError::BadConfig), "16-bit ASID");
        let c = g().with_asid(0xff).with_ha(1);
        assert_eq!(cd(&c, &VM, &narrow), Ok(c), "8-bit ASID, access flag updates");
        let c = g().with_asid(0xff).with_ha(1).with_hd(1);
        assert_eq!(cd(&c, &VM, &narrow), Err(HypError::BadConfig), "no dirty-state updates");
        let be_only = SmmuCaps { ttendian: 0b11, ..CAPS };
        assert_eq!(cd(&g(), &VM, &be_only), Err(HypError::BadConfig), "little-endian walks");
        let only4k = SmmuCaps { granules: GRAN4K, ..CAPS };
        let c = g().with_tg0(1).with_ttb0(0x4610_2000);
        assert_eq!(cd(&c, &VM, &only4k), Err(HypError::BadConfig), "64 KiB granule");
        let c = g().with_tg0(0b10).with_ttb0(0x4610_0040);
        assert_eq!(cd(&c, &VM, &only4k), Err(HypError::BadConfig), "16 KiB granule");
        // Each granule is looked up as itself: an SMMU without 4 KiB refuses a 4 KiB walk
        // whatever else it has, one without 16 KiB a 16 KiB walk, one without 64 KiB a 64 KiB.
        let no4k = SmmuCaps { granules: GRAN16K | GRAN64K, ..CAPS };
        assert_eq!(cd(&g(), &VM, &no4k), Err(HypError::BadConfig), "no 4 KiB granule");
        let c16 = g().with_tg0(0b10).with_ttb0(0x4610_0040);
        let no16k = SmmuCaps { granules: GRAN4K | GRAN64K, ..CAPS };
        assert_eq!(cd(&c16, &VM, &no16k), Err(HypError::BadConfig), "no 16 KiB granule");
        assert_eq!(cd(&c16, &VM, &SmmuCaps { granules: GRAN16K, ..CAPS }), Ok(c16));
        let c64 = g().with_tg0(1).with_ttb0(0x4610_2000);
        let no64k = SmmuCaps { granules: GRAN4K | GRAN16K, ..CAPS };
        assert_eq!(cd(&c64, &VM, &no64k), Err(HypError::BadConfig), "no 64 KiB granule");
        assert_eq!(cd(&c64, &VM, &SmmuCaps { granules: GRAN64K, ..CAPS }), Ok(c64));
        // A root table beyond the output size (RAM above 4 GiB, 32-bit IPS).
        let high = VM.with_mem(MemRange::new(0x1_0000_0000, 0x200_0000));
        let c = g().with_ips(0).with_ttb0(0x1_0010_0000);
        assert_eq!(cd(&c, &high, &CAPS), Err(HypError::BadConfig), "TTB0 beyond IPS");
        assert!(cd(&c.with_ips(1), &high, &CAPS).is_ok());
        // A root table that ends exactly at the top of the output size is inside it.
        let top = VM.with_mem(MemRange::new(0xfe00_0000, 0x200_0000));
        let c = g().with_ips(0).with_ttb0(0xffff_f000);
        assert_eq!(cd(&c, &top, &CAPS), Ok(c), "a root table in the last page below 4 GiB");
    }

    fn owns(s: u32) -> bool {
        s == 0x18
    }

    #[test]
    fn commands_are_checked_and_vmid_forced() {
        let ok = |c: Command| command(&c, 3, &owns, &CAPS);
        let config = |c: Command| Ok(CommandAction::SubmitConfig(c));
        assert_eq!(ok(Command::cfgi_ste(0x18)), config(Command::cfgi_ste(0x18)));
        assert_eq!(ok(Command::cfgi_cd(0x18, 1)), config(Command::cfgi_cd(0x18, 1)));
        assert_eq!(ok(Command::cfgi_cd_all(0x18)), config(Command::cfgi_cd_all(0x18)));
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
            command(
                &Command::atc_inv_all(0x18),
                3,
                &owns,
                &SmmuCaps { ats: true, ..SmmuCaps::QEMU }
            ),
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
        for r in RULES.iter().chain(HOST_RULES.iter().map(|h| &h.rule)) {
            let h = HOST_OPCODES.rule[r.op as usize].as_ref().expect("a host rule");
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
        // A SYNC may say how it completes and where its MSI goes (the address is the emulated
        // SMMU's to check); an MSI address is 4-byte aligned: word 1 bits 1:0 are reserved, as
        // are bits 63:52.
        let sync = HOST_OPCODES.rule[Opcode::Sync as usize].unwrap();
        assert_eq!(sync.forbidden, [0, 0]);
        assert_eq!(host_fields(&Command([0x46 | 3 << 12 | 3 << 22 | 0xf << 24, 0])), Ok(()));
        let msi = Command([0x46 | 1 << 12 | 0xdead_beef << 32, 0x000f_ffff_ffff_fffc]);
        assert_eq!(host_fields(&msi), Ok(()));
        for bit in [0, 1, 52, 63] {
            let c = Command([msi.0[0], msi.0[1] | 1 << bit]);
            assert_eq!(host_fields(&c), Err(HypError::ReservedField), "word 1 bit {bit}");
        }
        // Bits set in both words, the same ones: each word is judged on its own (the two
        // masked words are or-ed, never compared).
        let both = Command([0x03 | 1 << 20, 1 << 20]); // CFGI_STE: RES0 bit 20 of each word
        assert_eq!(host_fields(&both), Err(HypError::ReservedField));
    }

    #[test]
    fn the_host_opcode_table_is_the_rules_and_the_host_rules() {
        // An opcode of RULES that HOST_RULES does not name goes to the guests' path with the
        // guests' rule; one HOST_RULES names is treated its own way with the host's rule; no
        // other byte has a rule, and each of those is illegal.
        for op in 0..=255u8 {
            let guest = RULES.iter().find(|r| r.op as u8 == op);
            let host = HOST_RULES.iter().find(|h| h.rule.op as u8 == op);
            let (want_op, want_rule) = match (host, guest) {
                (Some(h), _) => (h.op, Some(h.rule)),
                (None, Some(g)) => (HostOp::Guest, Some(*g)),
                (None, None) => (HostOp::Illegal, None),
            };
            assert_eq!(host_op(op), want_op, "opcode {op:#x}");
            let rule = HOST_OPCODES.rule[op as usize];
            assert_eq!(rule.map(|r| r.op as u8), want_rule.map(|r| r.op as u8), "{op:#x}");
            assert_eq!(
                rule.map(|r| (r.forbidden, r.reserved)),
                want_rule.map(|r| (r.forbidden, r.reserved))
            );
        }
        // The host's own treatments are neither of the two that other tables imply.
        for h in HOST_RULES {
            assert!(!matches!(h.op, HostOp::Guest | HostOp::Illegal), "{:?}", h.rule.op);
        }
        // What the emulated SMMU passes through unchanged: the stage-1 TLB, CD and ATC
        // invalidations, and nothing else.
        let guest: std::vec::Vec<u8> =
            (0..=255u8).filter(|&o| host_op(o) == HostOp::Guest).collect();
        assert_eq!(guest, [0x05, 0x06, 0x10, 0x11, 0x12, 0x13, 0x40]);
    }
}
