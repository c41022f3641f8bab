//! Stream table entries: the domains a stream can be in, the physical STE the hypervisor
//! builds for each, what the SMMU makes of any 64-byte STE ([`effective`]), and hitless
//! updates ([`plan`]).
//!
//! # Why the write order is safe
//!
//! The SMMU may fetch an STE at any moment and cache it until a CFGI_STE + SYNC; a fetch may
//! see each 64-bit word at any value it held since the last such sync point (words are
//! single-copy atomic, the whole entry is not). [`plan`] therefore changes, between two sync
//! points, either only bits the current configuration does not use (any mixture still decodes
//! to the old configuration), or exactly one word whose change switches from the old
//! configuration to the new one (any mixture is old or new), or — when two or more used words
//! must change — goes through an abort configuration first ("break before make"). The unit
//! test enumerates every mixture for every pair of representative configurations.

use super::order::Coherency;
use host_abi::smmu::{fields_mask, ste as f, Field, Ste, SteConfig};

/// Stage-2 parameters of a VM, from its stage-2 page table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2Config {
    /// VMID.
    pub vmid: u16,
    /// Root table address.
    pub ttb: u64,
    /// 64 - input address bits.
    pub t0sz: u8,
    /// Starting level encoding (S2SL0).
    pub sl0: u8,
    /// Output size encoding (S2PS).
    pub ps: u8,
}

impl S2Config {
    /// A VM's stage 2 in the hypervisor's one layout ([`crate::vm::stage2::VM_STAGE2`], the same
    /// one VTCR_EL2 describes to the CPU).
    pub const fn vm(vmid: u16, ttb: u64) -> Self {
        let l = crate::vm::stage2::VM_STAGE2;
        Self { vmid, ttb, t0sz: l.t0sz(), sl0: l.sl0(), ps: l.ps() }
    }
}

/// A VM's stage-1 context as its STE describes it (addresses are IPAs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S1Config {
    /// CD table IPA.
    pub ctx_ptr: u64,
    /// log2 of the number of CDs.
    pub cdmax: u8,
    /// CD table format (0: linear).
    pub fmt: u8,
    /// Default substream behaviour.
    pub dss: u8,
    /// CD fetch attributes (inner, outer cacheability; shareability).
    pub cir: u8,
    /// See `cir`.
    pub cor: u8,
    /// See `cir`.
    pub csh: u8,
}

/// The domain a stream is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// Every transaction aborts.
    Blocked,
    /// Stage 2 only: device addresses are the owner's IPAs, limited to its memory.
    Identity,
    /// The owner's stage 1 (its CD table and page tables, in its memory) on its stage 2.
    Nested(S1Config),
}

impl Domain {
    /// 0 blocked, 1 identity, 2 nested (returned to VMs by SET_STE).
    pub const fn kind(&self) -> u64 {
        match self {
            Domain::Blocked => 0,
            Domain::Identity => 1,
            Domain::Nested(_) => 2,
        }
    }
}

impl core::fmt::Display for Domain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Domain::Blocked => f.write_str("blocked (abort)"),
            Domain::Identity => f.write_str("identity (the VM's stage 2)"),
            Domain::Nested(s1) => write!(
                f,
                "nested (CD table at IPA {:#x}, {} CDs, on the VM's stage 2)",
                s1.ctx_ptr,
                1u32 << s1.cdmax
            ),
        }
    }
}

/// A 64-byte stream table entry, as eight words.
pub type SteWords = [u64; 8];

/// The STE that aborts every transaction and records nothing: V = 1, Config = abort
/// (0b000). The only definition: the stream table starts with it, and blocking writes it.
pub const ABORT_WORDS: SteWords = [1, 0, 0, 0, 0, 0, 0, 0];

/// [`ABORT_WORDS`] as an [`Ste`].
pub const fn abort() -> Ste {
    Ste(ABORT_WORDS)
}

/// Memory attributes of the SMMU's walks of a VM's tables (its stage 2, and the CD tables):
/// (inner cacheability, outer cacheability, shareability).
struct WalkAttrs(u64, u64, u64);

impl WalkAttrs {
    /// Write-back cacheable, inner shareable (a coherent SMMU), or non-cacheable, outer
    /// shareable (a non-coherent one: its walks go to memory past the CPUs' caches).
    const fn of(coherency: Coherency) -> Self {
        match coherency {
            Coherency::Coherent => WalkAttrs(1, 1, 3),
            Coherency::NonCoherent => WalkAttrs(0, 0, 2),
        }
    }
}

fn with_s2(s: Ste, s2: &S2Config, a: &WalkAttrs) -> Ste {
    s.with_s2vmid(s2.vmid as u64)
        .with_s2t0sz(s2.t0sz as u64)
        .with_s2sl0(s2.sl0 as u64)
        .with_s2ir0(a.0)
        .with_s2or0(a.1)
        .with_s2sh0(a.2)
        .with_s2tg(0)
        .with_s2ps(s2.ps as u64)
        .with_s2aa64(1)
        .with_s2r(1)
        .with_s2ptw(1)
        .with_s2ttb(s2.ttb)
}

/// The physical STE for `domain` on the VM whose stage 2 is `s2`, for a coherent SMMU (see
/// [`encode_for`]).
pub fn encode(domain: &Domain, s2: &S2Config) -> Ste {
    encode_for(domain, s2, Coherency::Coherent)
}

/// The physical STE for `domain` on the VM whose stage 2 is `s2`. Never bypass: "identity"
/// is stage-2 translation. On a coherent SMMU the stage-2 walks are write-back cacheable and
/// inner shareable and the CD fetches take the VM's attributes; on a non-coherent one both are
/// non-cacheable and outer shareable (the hypervisor's shadow CDs and the VM's stage 2 are
/// cleaned to the point of coherency, which is where such a walk reads them).
pub fn encode_for(domain: &Domain, s2: &S2Config, coherency: Coherency) -> Ste {
    let a = WalkAttrs::of(coherency);
    match domain {
        Domain::Blocked => abort(),
        Domain::Identity => with_s2(Ste::default().with_v(1).with_config(SteConfig::S2), s2, &a),
        Domain::Nested(s1) => {
            let (cir, cor, csh) = match coherency {
                Coherency::Coherent => (s1.cir as u64, s1.cor as u64, s1.csh as u64),
                Coherency::NonCoherent => (a.0, a.1, a.2),
            };
            with_s2(
                Ste::default()
                    .with_v(1)
                    .with_config(SteConfig::Nested)
                    .with_s1fmt(s1.fmt as u64)
                    .with_s1_context_ptr(s1.ctx_ptr)
                    .with_s1cdmax(s1.cdmax as u64)
                    .with_s1dss(s1.dss as u64)
                    .with_s1cir(cir)
                    .with_s1cor(cor)
                    .with_s1csh(csh),
                s2,
                &a,
            )
        }
    }
}

const fn mask(fields: &[Field]) -> [u64; 8] {
    fields_mask(fields)
}

const fn union(a: [u64; 8], b: [u64; 8]) -> [u64; 8] {
    let mut m = a;
    let mut i = 0;
    while i < 8 {
        m[i] |= b[i];
        i += 1;
    }
    m
}

const OVERRIDES: [Field; 7] =
    [f::MEMATTR, f::MTCFG, f::ALLOCCFG, f::SHCFG, f::NSCFG, f::PRIVCFG, f::INSTCFG];
const S1_FIELDS: [Field; 10] = [
    f::S1FMT,
    f::S1_CONTEXT_PTR,
    f::S1CDMAX,
    f::S1DSS,
    f::S1CIR,
    f::S1COR,
    f::S1CSH,
    f::S1STALLD,
    f::EATS,
    f::STRW,
];
const S2_FIELDS: [Field; 16] = [
    f::S2VMID,
    f::S2T0SZ,
    f::S2SL0,
    f::S2IR0,
    f::S2OR0,
    f::S2SH0,
    f::S2TG,
    f::S2PS,
    f::S2AA64,
    f::S2ENDI,
    f::S2AFFD,
    f::S2PTW,
    f::S2S,
    f::S2R,
    f::S2TTB,
    f::EATS,
];

/// Used bits per configuration, computed at compile time (this is on the SET_STE path).
const USED_INVALID: [u64; 8] = mask(&[f::V]);
const USED_ABORT: [u64; 8] = mask(&[f::V, f::CONFIG]);
const USED_BYPASS: [u64; 8] = union(USED_ABORT, mask(&OVERRIDES));
const USED_S1: [u64; 8] = union(USED_BYPASS, mask(&S1_FIELDS));
const USED_S2: [u64; 8] = union(union(USED_BYPASS, mask(&S2_FIELDS)), mask(&[f::STRW]));
const USED_NESTED: [u64; 8] = union(USED_S1, mask(&S2_FIELDS));

/// The bits the SMMU uses for the configuration `s` describes.
pub fn used(s: &Ste) -> [u64; 8] {
    if s.v() == 0 {
        return USED_INVALID;
    }
    match s.config() {
        None | Some(SteConfig::Abort) => USED_ABORT,
        Some(SteConfig::Bypass) => USED_BYPASS,
        Some(SteConfig::S1) => USED_S1,
        Some(SteConfig::S2) => USED_S2,
        Some(SteConfig::Nested) => USED_NESTED,
    }
}

/// What the SMMU does with `s`: `None` if every transaction aborts (invalid, abort, or a
/// reserved configuration), otherwise the used bits of the entry (two STEs with equal
/// effective values translate identically).
pub fn effective(s: &Ste) -> Option<[u64; 8]> {
    match (s.v(), s.config()) {
        (0, _) | (_, None) | (_, Some(SteConfig::Abort)) => None,
        _ => {
            let u = used(s);
            let mut e = [0u64; 8];
            for i in 0..8 {
                e[i] = s.0[i] & u[i];
            }
            Some(e)
        }
    }
}

/// Most steps a plan has: three phases (unused bits, switch, clean-up) or break-before-make
/// (abort word, the other words, the final word), each word at most once per phase.
pub const MAX_STEPS: usize = 24;

/// One 64-bit store into the STE, and whether a CFGI_STE + SYNC must follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Word index.
    pub word: usize,
    /// Value stored.
    pub value: u64,
    /// Invalidate the SMMU's copy and wait before the next step.
    pub sync_after: bool,
}

/// An ordered list of steps (no heap: this runs on the hypercall path). The SMMU service keeps
/// one and refills it ([`plan_into`]): a plan is a few hundred bytes, and without FP/SIMD
/// registers each copy or clear of one costs hundreds of instructions.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    steps: [Step; MAX_STEPS],
    len: usize,
}

impl Default for Plan {
    fn default() -> Self {
        Self::new()
    }
}

impl Plan {
    /// An empty plan.
    pub const fn new() -> Self {
        Self { steps: [Step { word: 0, value: 0, sync_after: false }; MAX_STEPS], len: 0 }
    }

    fn phase(&mut self, cur: &mut Ste, target: &[u64; 8], words: impl Iterator<Item = usize>) {
        let start = self.len;
        for w in words {
            if cur.0[w] != target[w] {
                self.steps[self.len] = Step { word: w, value: target[w], sync_after: false };
                self.len += 1;
                cur.0[w] = target[w];
            }
        }
        if self.len > start {
            self.steps[self.len - 1].sync_after = true;
        }
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps[..self.len]
    }

    /// Sync points (CFGI_STE + SYNC pairs) the plan needs.
    pub fn syncs(&self) -> usize {
        self.steps().iter().filter(|s| s.sync_after).count()
    }
}

/// The hitless order of stores that turns `cur` into `target` (see the module docs).
pub fn plan(cur: &Ste, target: &Ste) -> Plan {
    let mut p = Plan::new();
    plan_into(cur, target, &mut p);
    p
}

/// [`plan`], written into `p` (whatever it held before).
pub fn plan_into(cur: &Ste, target: &Ste, p: &mut Plan) {
    p.len = 0;
    if cur == target {
        return;
    }
    let (uc, ut) = (used(cur), used(target));
    let mut now = *cur;
    // Phase 1: every bit the current configuration ignores takes its final value.
    let mut unused_update = [0u64; 8];
    for i in 0..8 {
        unused_update[i] = (cur.0[i] & uc[i]) | (target.0[i] & !uc[i]);
    }
    // Words that still differ in bits the target uses: each must change while in use.
    let critical = (0..8).filter(|&i| (unused_update[i] ^ target.0[i]) & ut[i] != 0).count();
    if critical <= 1 {
        p.phase(&mut now, &unused_update, 0..8);
        // Phase 2: the one word that switches configuration, all its bits at once.
        let mut switch = now.0;
        for i in 0..8 {
            if (now.0[i] ^ target.0[i]) & ut[i] != 0 {
                switch[i] = target.0[i];
            }
        }
        p.phase(&mut now, &switch, 0..8);
        // Phase 3: bits the new configuration ignores (left over from the old one).
        p.phase(&mut now, &target.0, 0..8);
    } else {
        // Break before make: word 0 to abort (keeping what the target has elsewhere in it),
        // then the other words, then word 0.
        let aborted =
            Ste([target.0[0], 0, 0, 0, 0, 0, 0, 0]).with_v(1).with_config(SteConfig::Abort).0[0];
        let mut w0 = now.0;
        w0[0] = aborted;
        p.phase(&mut now, &w0, 0..1);
        p.phase(&mut now, &target.0, 1..8);
        p.phase(&mut now, &target.0, 0..1);
    }
    debug_assert_eq!(now, *target);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn configs() -> Vec<Ste> {
        let vm1 = S2Config::vm(2, 0x4030_0000);
        let vm2 = S2Config::vm(3, 0x4031_0000);
        let s1 = |ctx: u64, cdmax: u8, dss: u8| {
            Domain::Nested(S1Config { ctx_ptr: ctx, cdmax, fmt: 0, dss, cir: 1, cor: 1, csh: 3 })
        };
        vec![
            abort(),
            Ste::default(), // V = 0
            Ste::default().with_v(1).with_config(SteConfig::Bypass),
            encode(&Domain::Identity, &vm1),
            encode(&Domain::Identity, &vm2),
            encode(&s1(0x4600_1000, 0, 0), &vm1),
            encode(&s1(0x4600_2000, 0, 0), &vm1),
            encode(&s1(0x4600_1000, 2, 0), &vm1),
            encode(&s1(0x4600_1000, 0, 1), &vm1),
            encode(&s1(0x4600_1000, 0, 2), &vm1),
            encode(&s1(0x4800_1000, 1, 2), &vm2),
            // Attribute overrides (word 1) that every translating configuration uses:
            // switching stage 1 on or off keeps them but changes the stage-1 bits beside.
            shared_attrs(encode(&Domain::Identity, &vm1)),
            shared_attrs(encode(&s1(0x4600_1000, 0, 0), &vm1)),
        ]
    }

    /// `s` with SHCFG = 1 (shareability from the incoming transaction).
    fn shared_attrs(mut s: Ste) -> Ste {
        host_abi::smmu::ste::SHCFG.set(&mut s.0, 1);
        s
    }

    /// Applies `plan` to `old` and checks every STE the SMMU could observe: within each
    /// segment between sync points, any mixture of each word's values in that segment.
    fn check_transition(old: &Ste, new: &Ste) -> usize {
        check_steps(old, new, plan(old, new).steps()).unwrap()
    }

    fn check_steps(old: &Ste, new: &Ste, steps: &[Step]) -> Result<usize, std::string::String> {
        let ok = |s: &Ste| {
            let e = effective(s);
            e.is_none() || e == effective(old) || e == effective(new)
        };
        let mut now = *old;
        let mut checked = 0;
        let mut seg: Vec<Step> = Vec::new();
        let mut segments = Vec::new();
        for st in steps {
            seg.push(*st);
            if st.sync_after {
                segments.push(core::mem::take(&mut seg));
            }
        }
        assert!(seg.is_empty(), "every plan ends with a sync point");
        for seg in segments {
            // Values each word can show during this segment.
            let mut choices: Vec<Vec<u64>> = now.0.iter().map(|&w| vec![w]).collect();
            for st in &seg {
                choices[st.word].push(st.value);
            }
            let total: usize = choices.iter().map(|c| c.len()).product();
            for mut n in 0..total {
                let mut s = Ste::default();
                for (w, c) in choices.iter().enumerate() {
                    s.0[w] = c[n % c.len()];
                    n /= c.len();
                }
                if !ok(&s) {
                    return Err(std::format!("{old:x?} -> {new:x?}: observable {s:x?} is neither"));
                }
                checked += 1;
            }
            for st in &seg {
                now.0[st.word] = st.value;
            }
        }
        assert_eq!(now, *new);
        Ok(checked)
    }

    #[test]
    fn a_non_coherent_smmu_walks_stage_2_and_fetches_cds_non_cacheable() {
        let vm1 = S2Config::vm(2, 0x4030_0000);
        let s1 =
            S1Config { ctx_ptr: 0x4600_1000, cdmax: 0, fmt: 0, dss: 0, cir: 1, cor: 1, csh: 3 };
        for d in [Domain::Identity, Domain::Nested(s1)] {
            let c = encode_for(&d, &vm1, Coherency::Coherent);
            let n = encode_for(&d, &vm1, Coherency::NonCoherent);
            assert_eq!(c, encode(&d, &vm1));
            assert_eq!((c.s2ir0(), c.s2or0(), c.s2sh0()), (1, 1, 3), "write-back, inner shareable");
            assert_eq!((n.s2ir0(), n.s2or0(), n.s2sh0()), (0, 0, 2), "non-cacheable, outer");
            // Nothing else differs.
            let attrs = mask(&[f::S2IR0, f::S2OR0, f::S2SH0, f::S1CIR, f::S1COR, f::S1CSH]);
            for (w, m) in attrs.iter().enumerate() {
                assert_eq!(c.0[w] & !m, n.0[w] & !m, "word {w}");
            }
        }
        let c = encode_for(&Domain::Nested(s1), &vm1, Coherency::Coherent);
        let n = encode_for(&Domain::Nested(s1), &vm1, Coherency::NonCoherent);
        assert_eq!((c.s1cir(), c.s1cor(), c.s1csh()), (1, 1, 3), "the VM's own");
        assert_eq!((n.s1cir(), n.s1cor(), n.s1csh()), (0, 0, 2), "non-cacheable, outer");
        assert_eq!(encode_for(&Domain::Blocked, &vm1, Coherency::NonCoherent), abort());
    }

    #[test]
    fn the_checker_catches_a_naive_update() {
        // Writing every changed word with a single sync at the end is not hitless for a change
        // of VMID and stage-2 table: a fetch could combine the new VMID with the old table.
        let a = encode(&Domain::Identity, &S2Config::vm(2, 0x4030_0000));
        let b = encode(&Domain::Identity, &S2Config::vm(3, 0x4031_0000));
        let mut naive: Vec<Step> = (0..8)
            .filter(|&w| a.0[w] != b.0[w])
            .map(|w| Step { word: w, value: b.0[w], sync_after: false })
            .collect();
        naive.last_mut().unwrap().sync_after = true;
        assert!(check_steps(&a, &b, &naive).is_err());
        assert!(check_steps(&a, &b, plan(&a, &b).steps()).is_ok());
    }

    #[test]
    fn every_transition_is_hitless() {
        let cs = configs();
        let mut transitions = 0;
        let mut states = 0;
        for a in &cs {
            for b in &cs {
                states += check_transition(a, b);
                transitions += 1;
            }
        }
        std::eprintln!(
            "hitless STE updates: {transitions} transitions, {states} observable states checked"
        );
        assert_eq!(transitions, cs.len() * cs.len());
    }

    #[test]
    fn plans_are_as_short_as_the_change_allows() {
        let vm1 = S2Config::vm(2, 0x4030_0000);
        let id = encode(&Domain::Identity, &vm1);
        // Abort -> identity: stage-2 words first (unused by abort), then word 0: 2 syncs.
        let p = plan(&abort(), &id);
        assert_eq!(p.syncs(), 2);
        assert_eq!(p.steps().last().unwrap().word, 0);
        // Identity -> abort: word 0 first, then the stale stage-2 words.
        let p = plan(&id, &abort());
        assert_eq!(p.steps()[0].word, 0);
        // Identity for another VM changes VMID and S2TTB: break before make.
        let p = plan(&id, &encode(&Domain::Identity, &S2Config::vm(3, 0x4031_0000)));
        assert_eq!(effective(&Ste([p.steps()[0].value, 0, 0, 0, 0, 0, 0, 0])), None);
        assert_eq!(p.syncs(), 3);
        assert_eq!(plan(&id, &id).steps().len(), 0);
        // A new CD table pointer (word 0 only) is one store and one sync, hitless without
        // passing through abort; so is identity -> nested for the same VM after its unused
        // stage-1 attributes (word 1) are written.
        let s1 = |ctx| {
            let c = S1Config { ctx_ptr: ctx, cdmax: 0, fmt: 0, dss: 0, cir: 1, cor: 1, csh: 3 };
            encode(&Domain::Nested(c), &vm1)
        };
        let p = plan(&s1(0x4600_1000), &s1(0x4600_2000));
        assert_eq!((p.steps().len(), p.syncs()), (1, 1));
        let p = plan(&id, &s1(0x4600_1000));
        assert_eq!(p.syncs(), 2);
        assert_eq!(p.steps().last().unwrap().word, 0);
    }

    #[test]
    fn identity_is_stage_2_never_bypass() {
        let s = encode(&Domain::Identity, &S2Config::vm(2, 0x4030_0000));
        assert_eq!(s.config(), Some(SteConfig::S2));
        assert_eq!(s.s2vmid(), 2);
        assert_eq!(s.s2ttb(), 0x4030_0000);
        assert_eq!(s.s2aa64(), 1);
        assert_eq!(s.s2ptw(), 1, "stage-1 walks that reach device memory fault");
        let n = encode(
            &Domain::Nested(S1Config {
                ctx_ptr: 0x4600_1000,
                cdmax: 0,
                fmt: 0,
                dss: 0,
                cir: 0,
                cor: 0,
                csh: 0,
            }),
            &S2Config::vm(2, 0x4030_0000),
        );
        assert_eq!(n.config(), Some(SteConfig::Nested));
        assert_eq!(n.s1_context_ptr(), 0x4600_1000);
        assert_eq!(effective(&abort()), None);
    }

    #[test]
    fn domains_are_named_for_the_log() {
        use std::string::ToString;
        let s1 =
            S1Config { ctx_ptr: 0x4600_1000, cdmax: 3, fmt: 0, dss: 0, cir: 0, cor: 0, csh: 0 };
        assert_eq!(Domain::Blocked.to_string(), "blocked (abort)");
        assert_eq!(Domain::Identity.to_string(), "identity (the VM's stage 2)");
        assert_eq!(
            Domain::Nested(s1).to_string(),
            "nested (CD table at IPA 0x46001000, 8 CDs, on the VM's stage 2)"
        );
        let kinds = [Domain::Blocked, Domain::Identity, Domain::Nested(s1)].map(|d| d.kind());
        assert_eq!(kinds, [0, 1, 2]);
    }
}
