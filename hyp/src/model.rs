//! A software SMMUv3 on the host and an exhaustive explorer of event sequences that checks the
//! invariant: for every stream, at every instant, the effective translation is abort or exactly
//! the translation of the domain the stream is attached to (old or new while an attach is in
//! flight) — never bypass, never stale.
//!
//! The model is driven through the same [`SmmuRegs`] the real SMMU is, and it is the SMMU power
//! domain too, so suspend, resume and injected power losses go through the real driver and
//! policy code ([`Iommu`]). After every register write and every consumed command it computes
//! each stream's effective translation the way the hardware would:
//!
//! * unpowered: nothing passes (abort);
//! * SMMUEN = 0: GBPA decides (abort or bypass);
//! * SMMUEN = 1: the STE the SMMU holds — it caches an STE as soon as it can (the worst case
//!   for staleness) and drops it only on CFGI_STE / CFGI_ALL.
//!
//! Bypass is accepted only in the window the hardware itself imposes: after an unexpected power
//! loss on a platform whose GBPA resets to bypass, until the hypervisor's first GBPA write.
//!
//! [`explore`] walks every sequence of events (votes of three VMs, attach in every domain type,
//! invalidations) breadth-first up to a depth, with a power loss injected before every register
//! write of every event, for both GBPA reset values, and reports the states and transitions it
//! checked or the shortest sequence that breaks the invariant.

extern crate std;

use crate::iommu::{Iommu, IommuOps};
use crate::pm::Vote;
use crate::smmu::driver::Smmu;
use crate::smmu::regs::{cr0, off};
use crate::smmu::ste::{self, Domain, S1Config, S2Config};
use crate::smmu::{Gbpa, SmmuRegs};
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use host_abi::smmu::{Command, Ste};
use platform::power::{GbpaReset, PowerRegs, SmmuPowerDomain};
use platform::qemu_virt::MANIFEST;
use std::sync::Mutex;

/// What a stream does with a transaction right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effective {
    /// Aborted.
    Abort,
    /// Passed untranslated.
    Bypass,
    /// Translated by this (used bits of the) STE.
    Translate([u64; 8]),
    /// SMMUEN = 1 on a stream table the hypervisor did not program (its registers were lost):
    /// the SMMU would fetch whatever lies there.
    Garbage,
}

/// The model's state, shared by its register interface and its power domain.
#[derive(Debug)]
pub struct ModelState {
    regs: BTreeMap<usize, u32>,
    gbpa_reset: GbpaReset,
    powered: bool,
    /// After a power loss on a bypass-reset platform, until the first GBPA write.
    hw_window: bool,
    cache: BTreeMap<u32, [u64; 8]>,
    /// Register writes by the driver so far.
    pub writes: u64,
    /// Inject a power loss just before driver write number N.
    pub inject_at: Option<u64>,
    /// Streams checked, with the effective translations allowed for each.
    pub allowed: BTreeMap<u32, Vec<[u64; 8]>>,
    /// Violations seen (descriptions).
    pub violations: Vec<String>,
    /// Invariant checks performed.
    pub checks: u64,
    /// Base-register halves written by the driver since the last reset.
    written: BTreeSet<usize>,
    /// SMMUEN was just set on tables lost to a power cut, until the driver's read-back check
    /// disables it again: a window no software can close (the cut falls between its last check
    /// and its enable). Counted, and reported by the explorer.
    garbage_window: bool,
    /// Such windows seen.
    pub garbage_windows: u64,
}

impl ModelState {
    fn new(gbpa_reset: GbpaReset) -> Self {
        let mut regs = BTreeMap::new();
        regs.insert(off::IDR0, 0x0d44_101b);
        regs.insert(off::IDR1, 16 | (16 << 6) | (19 << 16) | (19 << 21));
        regs.insert(off::IDR5, 0x55);
        regs.insert(off::GBPA, gbpa_reset.register_value());
        Self {
            regs,
            gbpa_reset,
            powered: true,
            hw_window: gbpa_reset == GbpaReset::Bypass,
            cache: BTreeMap::new(),
            writes: 0,
            inject_at: None,
            allowed: BTreeMap::new(),
            violations: Vec::new(),
            checks: 0,
            written: BTreeSet::new(),
            garbage_window: false,
            garbage_windows: 0,
        }
    }

    fn base_valid(&self, o: usize) -> bool {
        self.written.contains(&o) && self.written.contains(&(o + 4))
    }

    fn reg(&self, o: usize) -> u32 {
        *self.regs.get(&o).unwrap_or(&0)
    }

    fn reg64(&self, o: usize) -> u64 {
        self.reg(o) as u64 | (self.reg(o + 4) as u64) << 32
    }

    /// Registers to reset values, caches lost (power loss or power-off).
    fn reset(&mut self) {
        let keep = [off::IDR0, off::IDR1, off::IDR5];
        self.regs.retain(|o, _| keep.contains(o));
        self.regs.insert(off::GBPA, self.gbpa_reset.register_value());
        self.cache.clear();
        self.written.clear();
        self.hw_window = self.gbpa_reset == GbpaReset::Bypass;
    }

    fn fetch_ste(&self, sid: u32) -> Option<[u64; 8]> {
        if !self.base_valid(off::STRTAB_BASE) {
            return None;
        }
        let base = self.reg64(off::STRTAB_BASE) & ((1 << 52) - 1) & !0x3f;
        let log2 = self.reg(off::STRTAB_BASE_CFG) & 0x3f;
        if base == 0 || (sid as u64) >> log2 != 0 {
            return None;
        }
        // SAFETY: the driver gave the SMMU the address of its own (host) stream table.
        Some(unsafe { *((base + sid as u64 * 64) as *const [u64; 8]) })
    }

    /// The effective translation of `sid`, caching the STE like an eager SMMU would.
    pub fn effective(&mut self, sid: u32) -> Effective {
        if !self.powered {
            return Effective::Abort;
        }
        if self.reg(off::CR0) & cr0::SMMUEN == 0 {
            return if Gbpa(self.reg(off::GBPA)).abort() {
                Effective::Abort
            } else {
                Effective::Bypass
            };
        }
        if !self.base_valid(off::STRTAB_BASE) || !self.written.contains(&off::STRTAB_BASE_CFG) {
            return Effective::Garbage;
        }
        let entry = match self.cache.get(&sid) {
            Some(e) => *e,
            None => match self.fetch_ste(sid) {
                Some(e) => {
                    self.cache.insert(sid, e);
                    e
                }
                None => return Effective::Abort,
            },
        };
        match ste::effective(&Ste(entry)) {
            None => Effective::Abort,
            Some(x) => Effective::Translate(x),
        }
    }

    fn check(&mut self, when: &str) {
        self.check_with(&|| String::from(when));
    }

    /// Checks every stream; `when` describes the moment (formatted only on a violation).
    fn check_with(&mut self, when: &dyn Fn() -> String) {
        let sids: Vec<u32> = self.allowed.keys().copied().collect();
        for sid in sids {
            self.checks += 1;
            let e = self.effective(sid);
            let ok = match e {
                Effective::Abort => true,
                Effective::Bypass => self.hw_window,
                Effective::Translate(x) => self.allowed[&sid].contains(&x),
                Effective::Garbage => self.garbage_window,
            };
            if !ok {
                let v = format!("stream {sid:#x} is {e:x?} {}", when());
                if !self.violations.contains(&v) {
                    self.violations.push(v);
                }
            }
        }
    }

    fn run_cmdq(&mut self) {
        let base = self.reg64(off::CMDQ_BASE);
        let log2 = (base & 0x1f) as u32;
        let addr = base & ((1 << 52) - 1) & !0x1f;
        let mask = (2u32 << log2) - 1;
        if !self.base_valid(off::CMDQ_BASE) || addr == 0 || self.reg(off::CR0) & cr0::CMDQEN == 0 {
            return;
        }
        loop {
            let prod = self.reg(off::CMDQ_PROD) & mask;
            let cons = self.reg(off::CMDQ_CONS) & mask;
            if prod == cons {
                return;
            }
            let i = (cons & ((1 << log2) - 1)) as u64;
            // SAFETY: the driver's own command queue.
            let c = unsafe { *((addr + i * 16) as *const [u64; 2]) };
            match c[0] & 0xff {
                0x03 => {
                    self.cache.remove(&((c[0] >> 32) as u32));
                }
                0x04 => self.cache.clear(),
                _ => {}
            }
            self.regs.insert(off::CMDQ_CONS, (cons + 1) & mask);
            self.check("after a command");
        }
    }

    fn driver_write(&mut self, o: usize, v: u32) {
        self.writes += 1;
        if self.inject_at == Some(self.writes) {
            self.reset();
            self.check("after an injected power loss");
        }
        if !self.powered {
            self.violations.push(format!("register {o:#x} written while the SMMU is off"));
            return;
        }
        match o {
            off::GBPA => {
                self.regs.insert(o, v & !Gbpa::UPDATE);
                self.hw_window = false;
            }
            off::CR0 => {
                self.regs.insert(o, v);
                self.regs.insert(off::CR0ACK, v);
                if v & cr0::SMMUEN == 0 {
                    self.cache.clear();
                    self.garbage_window = false;
                } else if !self.base_valid(off::STRTAB_BASE) {
                    self.garbage_window = true;
                    self.garbage_windows += 1;
                }
            }
            off::CMDQ_PROD => {
                self.regs.insert(o, v);
                self.run_cmdq();
            }
            off::GERRORN => {
                self.regs.insert(o, v);
            }
            _ => {
                self.regs.insert(o, v);
                self.written.insert(o);
            }
        }
        self.check_with(&|| format!("after writing {v:#x} to register {o:#x}"));
    }
}

/// The model's register interface (what the driver talks to).
#[derive(Clone)]
pub struct ModelRegs(pub Arc<Mutex<ModelState>>);

impl SmmuRegs for ModelRegs {
    fn read32(&mut self, o: usize) -> u32 {
        self.0.lock().unwrap().reg(o)
    }
    fn write32(&mut self, o: usize, v: u32) {
        self.0.lock().unwrap().driver_write(o, v)
    }
}

/// The model's power domain.
pub struct ModelPower(pub Arc<Mutex<ModelState>>);

impl SmmuPowerDomain for ModelPower {
    fn gbpa_reset(&self) -> GbpaReset {
        self.0.lock().unwrap().gbpa_reset
    }
    fn is_on(&self) -> bool {
        self.0.lock().unwrap().powered
    }
    fn power_off(&mut self, _regs: &mut dyn PowerRegs) {
        let mut s = self.0.lock().unwrap();
        s.reset();
        s.powered = false;
        s.check("after power-off");
    }
    fn power_on(&mut self, _regs: &mut dyn PowerRegs) {
        let mut s = self.0.lock().unwrap();
        s.powered = true;
        s.check("after power-on");
    }
    fn inject_loss(&mut self, _regs: &mut dyn PowerRegs) {
        let mut s = self.0.lock().unwrap();
        s.reset();
        s.check("after an injected power loss");
    }
}

/// An event of the explored system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// VM votes (true: allow-off).
    Vote(u32, bool),
    /// VM attaches its stream: 0 blocked, 1 identity, 2 nested.
    Attach(u32, u8),
    /// VM invalidates (TLBI_NH_ALL + CFGI_CD_ALL of its stream).
    Invalidate(u32),
}

/// Abstract state: votes and domains of the three VMs.
type Abstract = ([bool; 3], [u8; 3]);

fn domain(kind: u8, vm: u32) -> Domain {
    match kind {
        0 => Domain::Blocked,
        1 => Domain::Identity,
        _ => Domain::Nested(S1Config {
            ctx_ptr: MANIFEST.vms[vm as usize].mem.base + 0x1000,
            cdmax: 0,
            fmt: 0,
            dss: 0,
            cir: 1,
            cor: 1,
            csh: 3,
        }),
    }
}

fn s2(vm: u32) -> S2Config {
    S2Config::vm(MANIFEST.vms[vm as usize].vmid(), 0x4030_0000 + vm as u64 * 0x1000)
}

fn sid(vm: u32) -> u32 {
    MANIFEST.vms[vm as usize].devices[0].rid()
}

fn expected(kind: u8, vm: u32) -> Vec<[u64; 8]> {
    ste::effective(&ste::encode(&domain(kind, vm), &s2(vm))).into_iter().collect()
}

/// A system under exploration: the real driver and policy on the model.
struct System {
    state: Arc<Mutex<ModelState>>,
    io: Iommu<ModelRegs>,
    abs: Abstract,
}

impl System {
    fn new(reset: GbpaReset) -> System {
        let state = Arc::new(Mutex::new(ModelState::new(reset)));
        let mut smmu = Smmu::init(ModelRegs(state.clone()), 0x20, true).expect("init on the model");
        // The model consumes commands as soon as PROD moves: a batch not consumed at once
        // never will be (the SMMU lost power); don't spin.
        smmu.poll_limit = 4;
        let mut io = Iommu::new(smmu, &MANIFEST, Box::new(ModelPower(state.clone())));
        io.fault_injection = true;
        for vm in 0..3 {
            io.set_stage2(vm, s2(vm));
        }
        {
            let mut s = state.lock().unwrap();
            for vm in 0..3 {
                s.allowed.insert(sid(vm), Vec::new());
            }
            s.check("after boot");
        }
        System { state, io, abs: ([false; 3], [0; 3]) }
    }

    fn apply(&mut self, e: Event, inject_at: Option<u64>) {
        {
            let mut s = self.state.lock().unwrap();
            s.inject_at = inject_at.map(|k| s.writes + k);
            if let Event::Attach(vm, kind) = e {
                // While the attach is in flight, the old and the new translation are both right.
                let old = self.abs.1[vm as usize];
                let mut ok = expected(old, vm);
                ok.extend(expected(kind, vm));
                s.allowed.insert(sid(vm), ok);
            }
        }
        match e {
            Event::Vote(vm, allow) => {
                self.io.vote(vm, if allow { Vote::AllowOff } else { Vote::NeedOn });
                self.abs.0[vm as usize] = allow;
            }
            Event::Attach(vm, kind) => {
                let _ = self.io.attach(vm, sid(vm), domain(kind, vm));
                self.abs.1[vm as usize] = kind;
            }
            Event::Invalidate(vm) => {
                let mut cmds = [Command::tlbi_nh_all(0), Command::cfgi_cd_all(sid(vm))];
                let _ = self.io.invalidate(vm, &mut cmds);
            }
        }
        let mut s = self.state.lock().unwrap();
        s.inject_at = None;
        // At the end of an event no window may remain open.
        s.garbage_window = false;
        for vm in 0..3u32 {
            let k = self.abs.1[vm as usize];
            s.allowed.insert(sid(vm), expected(k, vm));
        }
        s.check_with(&|| format!("after {e:?}"));
    }

    fn writes(&self) -> u64 {
        self.state.lock().unwrap().writes
    }
}

/// A sequence of events, each with the register write before which power was lost (if any).
pub type Trace = Vec<(Event, Option<u64>)>;

/// What an exploration found.
#[derive(Debug, Default)]
pub struct Report {
    /// Distinct abstract states reached.
    pub states: usize,
    /// Transitions executed (each event, with and without each injected power loss).
    pub transitions: usize,
    /// Invariant checks performed.
    pub checks: u64,
    /// Instants where SMMUEN was set on lost tables before the read-back check disabled it.
    pub garbage_windows: u64,
    /// The shortest failing sequence and what broke, if any.
    pub violation: Option<(Trace, String)>,
}

fn events() -> Vec<Event> {
    let mut v = Vec::new();
    for vm in 0..3 {
        v.push(Event::Vote(vm, true));
        v.push(Event::Vote(vm, false));
        for k in 0..3 {
            v.push(Event::Attach(vm, k));
        }
        v.push(Event::Invalidate(vm));
    }
    v
}

/// Breadth-first exploration up to `depth` events for one GBPA reset value.
pub fn explore(depth: usize, reset: GbpaReset) -> Report {
    let mut report = Report::default();
    let mut seen: BTreeSet<Abstract> = BTreeSet::new();
    let mut queue: VecDeque<(Vec<Event>, usize)> = VecDeque::new();
    seen.insert(([false; 3], [0; 3]));
    queue.push_back((Vec::new(), 0));
    let replay = |path: &[Event]| {
        let mut sys = System::new(reset);
        for e in path {
            sys.apply(*e, None);
        }
        sys
    };
    while let Some((path, d)) = queue.pop_front() {
        if d == depth {
            continue;
        }
        for e in events() {
            // Without injection first, to learn how many writes the event makes.
            let mut sys = replay(&path);
            let before = sys.writes();
            sys.apply(e, None);
            let n = sys.writes() - before;
            report.transitions += 1;
            let mut failures = core::mem::take(&mut sys.state.lock().unwrap().violations);
            let abs = sys.abs;
            report.checks += sys.state.lock().unwrap().checks;
            let mut culprit = None;
            if failures.is_empty() {
                for k in 1..=n {
                    let mut sys = replay(&path);
                    sys.apply(e, Some(k));
                    // The next hypercall that touches the hardware recovers.
                    sys.apply(Event::Invalidate(0), None);
                    report.transitions += 1;
                    report.checks += sys.state.lock().unwrap().checks;
                    report.garbage_windows += sys.state.lock().unwrap().garbage_windows;
                    let v = core::mem::take(&mut sys.state.lock().unwrap().violations);
                    if !v.is_empty() {
                        failures = v;
                        culprit = Some(k);
                        break;
                    }
                }
            }
            if let Some(first) = failures.first() {
                let mut p: Trace = path.iter().map(|e| (*e, None)).collect();
                p.push((e, culprit));
                report.violation = Some((p, first.clone()));
                report.states = seen.len();
                return report;
            }
            if seen.insert(abs) {
                let mut p = path.clone();
                p.push(e);
                queue.push_back((p, d + 1));
            }
        }
    }
    report.states = seen.len();
    report
}

/// Human-readable summary of a report.
pub fn describe(r: &Report, reset: GbpaReset) -> String {
    match &r.violation {
        None => format!(
            "GBPA resets to {reset:?}: invariant holds in {} states, {} transitions, {} checks \
             ({} instants with SMMUEN set on tables lost to a power cut, closed by the driver's \
             read-back check)",
            r.states, r.transitions, r.checks, r.garbage_windows
        ),
        Some((path, what)) => {
            let steps: Vec<String> = path
                .iter()
                .map(|(e, k)| match k {
                    None => format!("{e:?}"),
                    Some(k) => format!("{e:?} with power lost before its write {k}"),
                })
                .collect();
            format!(
                "GBPA resets to {reset:?}: VIOLATION: {what}\n  shortest sequence: {}",
                steps.join(" -> ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_invariant_holds_in_every_reachable_state() {
        for reset in [GbpaReset::Abort, GbpaReset::Bypass] {
            let r = explore(5, reset);
            std::eprintln!("{}", describe(&r, reset));
            assert!(r.violation.is_none(), "{}", describe(&r, reset));
            assert!(r.states >= 10 && r.transitions > 30);
        }
    }

    #[test]
    fn the_model_catches_a_missing_invalidation() {
        // Changing an STE without CFGI_STE leaves the SMMU on the old entry: stale.
        let mut sys = System::new(GbpaReset::Abort);
        sys.apply(Event::Attach(1, 1), None);
        assert!(sys.state.lock().unwrap().violations.is_empty());
        let target = ste::encode(&domain(2, 1), &s2(1));
        for w in 0..8 {
            sys.io.smmu.write_ste_word(sid(1), w, target.0[w]);
        }
        let mut s = sys.state.lock().unwrap();
        s.allowed.insert(sid(1), expected(2, 1));
        s.check("after an STE write without invalidation");
        assert!(s.violations.iter().any(|v| v.contains("0x18")), "{:?}", s.violations);
    }

    #[test]
    fn the_model_catches_bypass() {
        // A platform whose GBPA resets to bypass, powered off without the refusal: the window
        // at power-on is bypass, and the model reports it once the hypervisor has written GBPA.
        let mut sys = System::new(GbpaReset::Bypass);
        let mut s = sys.state.lock().unwrap();
        s.hw_window = false;
        s.regs.insert(off::CR0, 0);
        s.regs.insert(off::GBPA, 0);
        s.check("with SMMUEN = 0 and GBPA bypass");
        assert!(s.violations.iter().any(|v| v.contains("Bypass")));
        drop(s);
        let _ = &mut sys;
    }
}
