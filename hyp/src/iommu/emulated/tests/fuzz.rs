//! Property-based fuzzing of the SMMU the Linux host is given (proptest): the host's attack
//! surface. Random sequences of what a host can do to its emulated SMMU — 32/64-bit register
//! loads and stores at any offset (biased to the architected ones), stores into its own RAM
//! (STEs of every shape, level-1 descriptors, queue entries), commands of every opcode with
//! edge fields, queues and tables placed inside, across the end of and outside its RAM, PROD
//! and CONS values beyond the queue — mixed with what happens around it (events the real SMMU
//! records for the host's and the guests' streams, global errors, unexpected power losses,
//! guests attaching their streams and voting). Each step runs through the real emulated SMMU
//! ([`VirtualSmmu`]), the real SMMU service and the software SMMU, the way the EL2 side
//! drives them (`el2::front_door::HostSmmuDevice`). After every primitive operation:
//!
//! * nothing panicked;
//! * every stream's real STE is exactly the encoding of its domain (nested CD table inside its
//!   owner's RAM), and a stream changed only through its owner (the host's operations never
//!   touch a guest's stream);
//! * a host stream's shadow changed only when the architecture says its STE is read (SMMUEN
//!   toggled, or a CFGI_STE/CFGI_STE_RANGE/CFGI_ALL consumed), and then it is exactly what
//!   validating the STE its table holds gives (an independent walk of the host's table);
//! * while the host's SMMUEN is 0 each of its streams is blocked; GBPA reads ABORT; the host's
//!   power vote is its SMMUEN, and the SMMU is powered while it is 1;
//! * every command the real SMMU consumed is the hypervisor's own (SYNC; CFGI_STE of a stream
//!   it re-shadowed; the resume set after a power-on) or an invalidation with the host's VMID
//!   on a host stream; while power stays on, the invalidations sent are exactly the host's
//!   consumed commands as the guests' path makes them, in order;
//! * the queue: an enabled, unstopped queue is empty (every command consumed), CONS never
//!   passes PROD, and a stop says why (ILL for an illegal command, ABT for an entry outside
//!   the host's RAM) with CMDQ_ERR active;
//! * the emulated SMMU reads only the host's RAM (its command queue, and the level-1
//!   descriptors and STEs of its own streams), writes only event records into its event queue
//!   while enabled, and only records of the host's own streams (none of a guest's).
//!
//! A failure prints the primitive operations in the corpus format; `hyp/fuzz/vsmmu-corpus.txt`
//! holds seed sequences (replayed in order, and used as random prefixes) and every failure
//! found. `cargo test` runs a bounded number of sequences (`FUZZ_CASES`, default 128);
//! `cargo xtask fuzz --cases N` runs more (its `fuzz::` filter includes this module).

use super::*;
use crate::iommu::driver::queue::QueuePtr;
use crate::iommu::pm::Power;
use crate::iommu::service::SmmuService;
use crate::iommu::soft::fake::{self, FakeSmmu};
use crate::iommu::validate::CommandAction;
use host_abi::smmu::regs::{
    strtab_cfg, IrqCtrl, BASE_ADDR_MASK, BASE_RA, Q_OVFLG, STRTAB_ADDR_MASK,
};
use host_abi::smmu::SteConfig;
use platform::power::GbpaReset;
use platform::qemu_virt::MANIFEST;
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

const HOST: &VmSpec = &MANIFEST.vms[0];
/// The host's streams: its three PCI functions and one more beyond 12 bits (two-level tables
/// with more than one level-1 descriptor).
static HOST_STREAMS: [u32; 4] = [0x10, 0x28, 0x30, 0x1000];
/// The guests' streams (owner, stream); 0x1001 shares a level-2 span with the host's 0x1000.
const GUEST_STREAMS: [(u32, u32); 3] = [(1, 0x18), (2, 0x20), (2, 0x1001)];
/// A stream nobody owns.
const UNOWNED: u32 = 0x99;

fn host_vmid() -> u16 {
    HOST.vmid()
}

use crate::iommu::service::tests::service_with;

fn all_sids() -> Vec<u32> {
    HOST_STREAMS.iter().copied().chain(GUEST_STREAMS.iter().map(|g| g.1)).collect()
}

/// The host's RAM, sparse (4 KiB pages, zero until written), recording every access the
/// emulated SMMU makes through [`GuestMemory`].
#[derive(Default)]
struct HostRam {
    pages: BTreeMap<u64, Vec<u8>>,
    /// Reads by the emulated SMMU: (VM, IPA, range length, buffer length).
    reads: RefCell<Vec<(u32, u64, u64, u64)>>,
    /// Writes by the emulated SMMU: (VM, IPA, range length, bytes).
    writes: Vec<(u32, u64, u64, Vec<u8>)>,
}

impl HostRam {
    fn byte(&self, a: u64) -> u8 {
        self.pages.get(&(a & !0xfff)).map_or(0, |p| p[(a & 0xfff) as usize])
    }

    /// The host writes its own RAM (what lies outside it goes nowhere: it cannot write there).
    fn put(&mut self, a: u64, words: &[u64]) {
        for (i, w) in words.iter().enumerate() {
            for (j, b) in w.to_le_bytes().iter().enumerate() {
                let x = a.wrapping_add(i as u64 * 8 + j as u64);
                if HOST.holds(x, 1) {
                    let p = self.pages.entry(x & !0xfff).or_insert_with(|| vec![0; 4096]);
                    p[(x & 0xfff) as usize] = *b;
                }
            }
        }
    }

    /// The word at `a`, as the host's RAM holds it (the harness's own look, not recorded).
    fn get(&self, a: u64) -> u64 {
        let mut b = [0u8; 8];
        for (j, x) in b.iter_mut().enumerate() {
            *x = self.byte(a.wrapping_add(j as u64));
        }
        u64::from_le_bytes(b)
    }
}

/// It serves every VM, so that whatever range the emulated SMMU makes reaches it and is judged
/// (recorded with its VM) rather than refused unseen.
impl GuestMemory for HostRam {
    fn serves(&self, _vm: u32) -> bool {
        true
    }
    fn copy_out(&self, r: ServedRange, out: &mut [u8]) {
        self.reads.borrow_mut().push((r.vm(), r.ipa(), r.len(), out.len() as u64));
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.byte(r.ipa().wrapping_add(i as u64));
        }
    }
    fn copy_in(&mut self, r: ServedRange, data: &[u8]) {
        self.writes.push((r.vm(), r.ipa(), r.len(), data.to_vec()));
        if r.vm() == 0 && HOST.holds(r.ipa(), data.len() as u64) {
            for (i, b) in data.iter().enumerate() {
                let x = r.ipa() + i as u64;
                let p = self.pages.entry(x & !0xfff).or_insert_with(|| vec![0; 4096]);
                p[(x & 0xfff) as usize] = *b;
            }
        }
    }
}

/// One primitive operation (a line of the corpus).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    /// The host stores `val` (`size` bytes) at register offset `off`: `w off size val`.
    Write { off: usize, size: u8, val: u64 },
    /// The host loads `size` bytes at `off`: `r off size`.
    Read { off: usize, size: u8 },
    /// The host writes words into its RAM at `addr` (what lies outside goes nowhere):
    /// `m addr words...`.
    Mem { addr: u64, words: Vec<u64> },
    /// The real SMMU records an event; its interrupt is taken at EL2: `ev w0 w1 w2 w3`.
    Event([u64; 4]),
    /// The real SMMU raises global errors (never CMDQ_ERR, which only follows a bad command);
    /// its interrupt is taken at EL2: `gerr bits`.
    Gerror(u32),
    /// Guest `vm` attaches its stream `sid`: 0 blocked, 1 identity, 2 nested: `attach vm sid k`.
    Attach { vm: u32, sid: u32, kind: u8 },
    /// Guest `vm` votes: `vote vm allow_off`.
    Vote { vm: u32, allow_off: bool },
    /// The SMMU loses power unexpectedly: `loss`.
    PowerLoss,
}

impl core::fmt::Display for Op {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Op::Write { off, size, val } => write!(f, "w {off:x} {size:x} {val:x}"),
            Op::Read { off, size } => write!(f, "r {off:x} {size:x}"),
            Op::Mem { addr, words } => {
                write!(f, "m {addr:x}")?;
                for w in words {
                    write!(f, " {w:x}")?;
                }
                Ok(())
            }
            Op::Event(e) => write!(f, "ev {:x} {:x} {:x} {:x}", e[0], e[1], e[2], e[3]),
            Op::Gerror(b) => write!(f, "gerr {b:x}"),
            Op::Attach { vm, sid, kind } => write!(f, "attach {vm:x} {sid:x} {kind:x}"),
            Op::Vote { vm, allow_off } => write!(f, "vote {vm:x} {:x}", *allow_off as u8),
            Op::PowerLoss => write!(f, "loss"),
        }
    }
}

fn parse_op(line: &str) -> Op {
    let mut it = line.split_whitespace();
    let kind = it.next().expect("an operation");
    let n: Vec<u64> = it
        .map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).expect("corpus hex"))
        .collect();
    let arg = |i: usize| *n.get(i).unwrap_or_else(|| panic!("corpus line {line:?}: argument {i}"));
    match kind {
        "w" => Op::Write { off: arg(0) as usize, size: arg(1) as u8, val: arg(2) },
        "r" => Op::Read { off: arg(0) as usize, size: arg(1) as u8 },
        "m" => Op::Mem { addr: arg(0), words: n[1..].to_vec() },
        "ev" => Op::Event([arg(0), arg(1), arg(2), arg(3)]),
        "gerr" => Op::Gerror(arg(0) as u32),
        "attach" => Op::Attach { vm: arg(0) as u32, sid: arg(1) as u32, kind: arg(2) as u8 },
        "vote" => Op::Vote { vm: arg(0) as u32, allow_off: arg(1) != 0 },
        "loss" => Op::PowerLoss,
        _ => panic!("corpus line {line:?}: unknown operation"),
    }
}

/// The seed sequences of `hyp/fuzz/vsmmu-corpus.txt`: `== name` starts one, then one operation
/// per line (`#` comments).
fn seeds() -> Vec<(String, Vec<Op>)> {
    let text = include_str!("../../../../fuzz/vsmmu-corpus.txt");
    let mut out: Vec<(String, Vec<Op>)> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(name) = line.strip_prefix("==") {
            out.push((name.trim().to_string(), Vec::new()));
        } else {
            out.last_mut().expect("a sequence starts with `== name`").1.push(parse_op(line));
        }
    }
    out
}

/// Where the host puts its stream table and queues (Linux's reset sequence with these).
#[derive(Clone, Copy, Debug)]
struct Layout {
    strtab: u64,
    two_level: bool,
    log2size: u32,
    split: u32,
    cmdq: u64,
    cmdq_log2: u32,
    evtq: u64,
    evtq_log2: u32,
}

const LINEAR: Layout = Layout {
    strtab: 0x4410_0000,
    two_level: false,
    log2size: 13,
    split: 0,
    cmdq: 0x4420_0000,
    cmdq_log2: 3,
    evtq: 0x4430_0000,
    evtq_log2: 2,
};

const TWO_LEVEL: Layout = Layout { two_level: true, split: 8, ..LINEAR };

/// Where the level-2 tables of a two-level table go.
const L2_AREA: u64 = 0x4500_0000;

/// What a host does: one primitive operation, or several as Linux's driver would do them.
#[derive(Clone, Debug)]
enum Step {
    /// One operation.
    Op(Op),
    /// Linux's reset sequence with this layout (level-1 descriptors written for its streams).
    Reset(Layout),
    /// The host writes STE `sid` where its table says (making a level-2 table first if its
    /// level-1 descriptor is invalid), then (`cfgi`) CFGI_STE + SYNC.
    Ste { sid: u32, words: [u64; 8], cfgi: bool },
    /// The host writes the level-1 descriptor covering `sid`.
    L1 { sid: u32, desc: u64 },
    /// The host writes commands at PROD and moves PROD past them and `extra` entries more.
    Cmds { cmds: Vec<[u64; 2]>, extra: u32 },
    /// CMDQ_CONS = PROD + delta (the queue's own pointers, bogus ones included).
    CmdqCons(u32),
    /// EVTQ_CONS = the event queue's PROD + delta (with the overflow flag if `ovf`).
    EvtqCons { delta: u32, ovf: bool },
    /// Linux's CMDQ_ERR recovery: the command at CONS replaced by a SYNC, GERRORN = GERROR.
    Recover,
    /// A corpus sequence.
    Seed(usize),
}

/// The state one operation is judged against.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Snap {
    streams: Vec<(u32, Option<Domain>, [u64; 8])>,
    cr0: Cr0,
    cmdq_base: u64,
    cmdq_log2: u32,
    cons: u32,
    gerror: u32,
    resumes: u64,
    losses: u64,
    suspends: u64,
    power: Power,
    consumed: usize,
    /// Accesses of the emulated SMMU that stopped at its work budget.
    budget_stops: u64,
    /// Where the host's event queue takes its next record, if enabled and not full.
    evtq_slot: Option<u64>,
}

/// What the architecture (and the documented design) says a host command does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Completes, nothing to send (CMD_SYNC, PREFETCH_CONFIG, an ATC_INV without ATS).
    Nothing,
    /// This goes to the real SMMU.
    Send(Command),
    /// The host STEs of these streams are re-read.
    Refresh(u32, u64),
    /// A CMD_SYNC that completes with its MSI: this 32-bit value written at this address (4
    /// bytes of the host's RAM).
    Msi(u64, u32),
    /// Stops the queue (CERROR_ILL).
    Illegal,
}

fn expect(c: &Command, caps: &SmmuCaps) -> Expect {
    let sid = c.field(cmd::SID) as u32;
    let owns = |s: u32| HOST_STREAMS.contains(&s);
    // The bits each command the emulated SMMU executes itself may have set, from the
    // architecture's layouts (word 0 bits 7:0 are the opcode): anything else set, the secure
    // bit included, is illegal.
    let only = |w0: u64, w1: u64| c.0[0] & !(w0 | 0xff) == 0 && c.0[1] & !w1 == 0;
    const SID: u64 = 0xffff_ffff << 32;
    const SSID_SSV: u64 = 0xf_ffff << 12 | 1 << 11;
    match c.opcode_byte() {
        0x46 => {
            // CS none, IRQ (MSI advertised) or SEV (0b11 reserved), MSH, MSIATTR, MSIDATA,
            // MSIADDR bits 51:2. With CS = IRQ the MSI must be 4 bytes of the host's RAM.
            let cs = c.field(cmd::SYNC_CS);
            let (addr, data) = (c.field(cmd::SYNC_MSIADDR) << 2, c.field(cmd::SYNC_MSIDATA));
            if cs == 3
                || !only(0x3 << 12 | 0x3 << 22 | 0xf << 24 | 0xffff_ffff << 32, 0xf_ffff_ffff_fffc)
            {
                Expect::Illegal
            } else if cs == 1 {
                if HOST.holds(addr, 4) {
                    Expect::Msi(addr, data as u32)
                } else {
                    Expect::Illegal
                }
            } else {
                Expect::Nothing
            }
        }
        // PREFETCH_CONFIG and PREFETCH_ADDR (Size, Stride, Address): hints, nothing to do.
        0x01 if only(SID | SSID_SSV, 0) => Expect::Nothing,
        0x02 if only(SID | SSID_SSV, !0xc00) => Expect::Nothing,
        0x03 if only(SID, 1) => Expect::Refresh(sid, 1),
        0x04 if only(SID, 0x1f) => {
            let r = c.field(cmd::RANGE);
            if r >= 31 {
                Expect::Refresh(0, 1 << 32)
            } else {
                let n = 2u64 << r;
                Expect::Refresh((sid as u64 & !(n - 1)) as u32, n)
            }
        }
        0x30 if only(0, 0) => Expect::Send(Command::tlbi_nh_all(host_vmid())),
        0x05 | 0x06 | 0x10..=0x13 | 0x40 => match validate::command(c, host_vmid(), &owns, caps) {
            Ok(CommandAction::Submit(x) | CommandAction::SubmitConfig(x)) => Expect::Send(x),
            Ok(CommandAction::Elide) => Expect::Nothing,
            Err(_) => Expect::Illegal,
        },
        _ => Expect::Illegal,
    }
}

struct World {
    io: SmmuService<FakeSmmu>,
    ram: HostRam,
    v: VirtualSmmu,
    /// Event records the real SMMU recorded for the host's streams.
    host_events: Vec<[u64; 4]>,
    /// Every operation so far (printed with a violation).
    trace: Vec<Op>,
    /// The real SMMU recorded the last [`Op::Event`].
    event_accepted: bool,
    /// The last access that consumed stopped at its budget with commands left, and nothing
    /// has consumed since.
    left_at_budget: bool,
}

type Check = Result<(), String>;

/// How often each interesting thing happened across the run (printed with `--nocapture`).
static COVERAGE: [core::sync::atomic::AtomicU64; 14] =
    [const { core::sync::atomic::AtomicU64::new(0) }; 14];
const COVERAGE_NAMES: [&str; 14] = [
    "ops",
    "ops consuming host commands",
    "invalidations sent exactly as expected (non-empty)",
    "host streams re-shadowed",
    "... to identity",
    "... to nested",
    "queue stops: ILL",
    "queue stops: ABT",
    "event records written to the host's queue",
    "ops with the SMMU powered off",
    "power-ons (resumes/losses) during an op",
    "STE reads by the emulated SMMU",
    "host records the real SMMU recorded, checked into the host's queue",
    "CMD_SYNC MSIs checked in the host's memory",
];

fn hit(i: usize) {
    COVERAGE[i].fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

impl World {
    fn new() -> Self {
        let max = all_sids().into_iter().max().unwrap();
        let mut io = service_with(FakeSmmu::qemu(), max, GbpaReset::Abort);
        io.injector = Some(0);
        io.add_streams(0, 0x1000, 1);
        io.add_streams(2, 0x1001, 1);
        let mut host: Vec<u32> = io.streams_of(0).collect();
        host.sort_unstable();
        assert_eq!(host, HOST_STREAMS, "the manifest's host streams changed");
        for (vm, sid) in GUEST_STREAMS {
            assert!(io.owns(vm, sid));
        }
        // As `el2::front_door::init_host_smmu`: its SMMU starts disabled, its vote allow-off.
        let v = VirtualSmmu::new(0, &HOST_STREAMS, &io.caps(), true);
        io.vote(0, Vote::AllowOff);
        let mut w = World {
            io,
            ram: HostRam::default(),
            v,
            host_events: Vec::new(),
            trace: vec![],
            event_accepted: false,
            left_at_budget: false,
        };
        // The guests' streams in use: a host action must leave them as they are.
        w.io.attach(1, 0x18, guest_domain(1, 1), &crate::vm::memory::NoMemory).unwrap();
        w.io.attach(2, 0x1001, guest_domain(2, 2), &crate::vm::memory::NoMemory).unwrap();
        w
    }

    fn ctx_write(&mut self, off: usize, size: u8, val: u64) {
        let mut ctx =
            Context { mem: HostMemory { spec: HOST, mem: &mut self.ram }, smmu: &mut self.io };
        self.v.write(off, size, val, &mut ctx);
    }

    /// What `el2::front_door` does after the service ran: the host's events into its queue
    /// (when it has any), its interrupts taken.
    fn deliver(&mut self) {
        if SmmuCalls::events_pending(&mut self.io, 0) {
            let mut ctx =
                Context { mem: HostMemory { spec: HOST, mem: &mut self.ram }, smmu: &mut self.io };
            self.v.deliver_events(&mut ctx);
        }
        let _ = self.v.take_irqs();
        let _ = self.v.take_notices();
    }

    fn snap(&mut self) -> Snap {
        let streams =
            all_sids().into_iter().map(|s| (s, self.io.domain_of(s), self.io.ste(s).0)).collect();
        let r = self.v.registers();
        let pm = self.io.pm_counters();
        let (eprod, econs) = r.evtq_ptrs();
        let evtq_slot = (r.cr0().contains(Cr0::EVENTQEN)
            && crate::iommu::driver::queue::space(eprod, econs) > 0)
            .then(|| (r.evtq_base() & BASE_ADDR_MASK) + eprod.index() as u64 * 32);
        Snap {
            streams,
            cr0: r.cr0(),
            cmdq_base: r.cmdq_base(),
            cmdq_log2: r.cmdq_log2(),
            cons: r.cmdq_ptrs().1.raw(),
            gerror: self.v.read(off::GERROR, 4) as u32,
            resumes: pm.resumes,
            losses: pm.losses,
            suspends: pm.suspends,
            power: self.io.power(),
            consumed: self.io.regs_mut().consumed.len(),
            budget_stops: self.v.counters.budget_stops,
            evtq_slot,
        }
    }

    /// Runs one operation and checks every property.
    fn op(&mut self, op: &Op) -> Check {
        self.trace.push(op.clone());
        let before = self.snap();
        self.ram.reads.borrow_mut().clear();
        self.ram.writes.clear();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.act(op)));
        let checked = match ran {
            Ok(()) => self.check(op, &before),
            Err(p) => Err(format!(
                "{op}: panicked: {}",
                p.downcast_ref::<String>()
                    .map(String::as_str)
                    .or(p.downcast_ref::<&str>().copied())
                    .unwrap_or("?")
            )),
        };
        checked.map_err(|e| {
            let mut s = format!("{e}\nafter these operations (corpus format):\n");
            for o in &self.trace {
                s += &format!("{o}\n");
            }
            s
        })
    }

    /// Does one operation the way the EL2 side does it.
    fn act(&mut self, op: &Op) {
        match op {
            Op::Write { off, size, val } => {
                self.ctx_write(*off, *size, *val);
                self.deliver();
            }
            Op::Read { off, size } => {
                if *off == off::EVTQ_PROD {
                    // As on hardware, PROD shows what the real SMMU recorded so far.
                    self.io.service_hardware();
                    self.deliver();
                }
                let _ = self.v.read(*off, *size);
            }
            Op::Mem { addr, words } => self.ram.put(*addr, words),
            Op::Event(e) => {
                let sid = (e[0] >> 32) as u32;
                if self.io.owner_of(sid) == Some(0) {
                    self.host_events.push(*e);
                }
                // The device's fault, recorded if the real SMMU is on and has room.
                let real = &mut self.io.regs_mut().smmu;
                self.event_accepted =
                    real.post_event(&mut fake::HostMemory, e) == EventPost::Written;
                self.io.service_hardware();
                self.deliver();
            }
            Op::Gerror(bits) => {
                if self.io.power() == Power::On {
                    self.io.regs_mut().raise(Gerror::from_bits_truncate(*bits) - Gerror::CMDQ_ERR);
                    self.io.service_hardware();
                }
                self.deliver();
            }
            Op::Attach { vm, sid, kind } => {
                let _ = self.io.attach(
                    *vm,
                    *sid,
                    guest_domain(*vm, *kind),
                    &crate::vm::memory::NoMemory,
                );
                self.deliver();
            }
            Op::Vote { vm, allow_off } => {
                self.io.vote(*vm, if *allow_off { Vote::AllowOff } else { Vote::NeedOn });
                self.deliver();
            }
            Op::PowerLoss => {
                let _ = self.io.inject_power_loss(0);
            }
        }
    }

    /// Where the host's table puts STE `sid` now, by an independent walk of the architecture's
    /// linear or two-level format: (level-1 descriptor address if two-level, STE address).
    /// `None` for the STE: beyond the table, or no level-2 table spans it.
    fn ste_addr(&self, sid: u32) -> (Option<u64>, Option<u64>) {
        let s = self.v.registers();
        let cfg = s.strtab_cfg();
        let base = s.strtab_base() & STRTAB_ADDR_MASK;
        let log2 = (cfg & 0x3f).min(s.id().idr1().sidsize());
        if (sid as u64) >> log2 != 0 {
            return (None, None);
        }
        if (cfg >> 16) & 3 != 1 {
            return (None, Some(base + sid as u64 * 64));
        }
        let split = ((cfg >> 6) & 0x1f).min(log2);
        let l1 = base + (sid >> split) as u64 * 8;
        if !HOST.holds(l1, 8) {
            return (Some(l1), None);
        }
        let desc = self.ram.get(l1);
        let span = (desc & 0x1f) as u32;
        let index = sid as u64 & ((1 << split) - 1);
        if span == 0 || span > split + 1 || index >> (span - 1) != 0 {
            return (Some(l1), None);
        }
        (Some(l1), Some((desc & STRTAB_ADDR_MASK) + index * 64))
    }

    /// The effective SPLIT of the host's two-level table.
    fn split(&self) -> u32 {
        let s = self.v.registers();
        let cfg = s.strtab_cfg();
        ((cfg >> 6) & 0x1f).min((cfg & 0x3f).min(s.id().idr1().sidsize()))
    }

    /// The domain the host's STE of `sid` asks for now (blocked while its SMMU is disabled).
    fn host_domain(&self, sid: u32) -> Domain {
        if !self.v.registers().cr0().contains(Cr0::SMMUEN) {
            return Domain::Blocked;
        }
        match self.ste_addr(sid).1 {
            Some(a) if HOST.holds(a, 64) => {
                let words: [u64; 8] = core::array::from_fn(|i| self.ram.get(a + i as u64 * 8));
                let caps = self.io.caps();
                let d = validate::virtual_ste(&Ste(words), HOST, &caps).unwrap_or(Domain::Blocked);
                // A nested STE whose CD table holds a CD validation refuses blocks the stream
                // (the emulated SMMU counts it in cds_refused).
                if let Domain::Nested(s1) = d {
                    for i in 0..1u64 << s1.cdmax {
                        let at = s1.ctx_ptr + i * 64;
                        let c = host_abi::smmu::Cd(core::array::from_fn(|w| {
                            self.ram.get(at + w as u64 * 8)
                        }));
                        if !HOST.holds(at, 64) || validate::cd(&c, HOST, &caps).is_err() {
                            return Domain::Blocked;
                        }
                    }
                }
                d
            }
            _ => Domain::Blocked,
        }
    }

    fn check(&mut self, op: &Op, b: &Snap) -> Check {
        let after = self.snap();
        hit(0);
        if after.power == Power::Off {
            hit(9);
        }
        if after.resumes != b.resumes || after.losses != b.losses {
            hit(10);
        }
        let host_op = matches!(op, Op::Write { .. } | Op::Read { .. } | Op::Mem { .. });
        let r = self.v.registers().clone();
        let en = r.cr0().contains(Cr0::SMMUEN);

        // The command queue: what was consumed, and where it stopped.
        let (prod, cons) = r.cmdq_ptrs();
        let qbase = r.cmdq_base() & BASE_ADDR_MASK;
        let cap = prod.capacity();
        let cmdqen = r.cr0().contains(Cr0::CMDQEN);
        let same_queue = b.cmdq_base == r.cmdq_base() && b.cmdq_log2 == r.cmdq_log2();
        let k = if (b.cr0.contains(Cr0::CMDQEN) || cmdqen) && same_queue {
            cons.raw().wrapping_sub(b.cons) & (2 * cap - 1)
        } else {
            0
        };
        if k != 0 && !host_op {
            return Err(format!("{op}: the host's queue moved without the host"));
        }
        let start = QueuePtr::new(r.cmdq_log2(), b.cons);
        let to_prod = prod.raw().wrapping_sub(start.raw()) & (2 * cap - 1);
        if k > to_prod {
            return Err(format!("{op}: CONS passed PROD ({:#x} -> {:#x})", b.cons, cons.raw()));
        }
        let stopped = r.cmdq_stopped();
        let cons_reg = self.v.read(off::CMDQ_CONS, 4) as u32;
        let err = cons_reg >> 24 & 0x7f;
        // Commands may be left only when the access did its budget's worth of work (each
        // command looked at counts at least one unit, so at least a budget's worth of commands,
        // less what refreshes and submissions cost, was consumed).
        let budget_stop = self.v.counters.budget_stops != b.budget_stops;
        // Or when an earlier access stopped at its budget and this operation is not one that
        // makes the emulated SMMU go on (a CMDQ_PROD write, a CMDQ_CONS read): what that access
        // left waits for the host's next poll.
        let goes_on = matches!(op, Op::Write { off: off::CMDQ_PROD, .. })
            || matches!(op, Op::Read { off: off::CMDQ_CONS, .. });
        let still_left = self.left_at_budget && k == 0 && !goes_on;
        let left = cmdqen && prod.raw() != cons.raw() && !stopped;
        self.left_at_budget = left && (budget_stop || still_left);
        if left && !budget_stop && !still_left {
            return Err(format!(
                "{op}: commands left in a running queue (PROD {prod:?}, CONS {cons:?})"
            ));
        }
        if budget_stop && k == 0 {
            return Err(format!("{op}: stopped at the budget without consuming anything"));
        }
        let caps = self.io.caps();
        let newly_stopped = (b.gerror ^ after.gerror) & Gerror::CMDQ_ERR.bits() != 0;
        if newly_stopped {
            if !stopped || !cmdqen {
                return Err(format!("{op}: CMDQ_ERR toggled without stopping the queue"));
            }
            let at = qbase + cons.index() as u64 * 16;
            let want = if !HOST.holds(at, 16) {
                cerror::ABT
            } else {
                let c = Command([self.ram.get(at), self.ram.get(at + 8)]);
                if expect(&c, &caps) != Expect::Illegal {
                    return Err(format!("{op}: the queue stopped on a legal command {c:x?}"));
                }
                cerror::ILL
            };
            if err != want {
                return Err(format!("{op}: the queue stopped with CONS.ERR {err}, not {want}"));
            }
            hit(if want == cerror::ILL { 6 } else { 7 });
        }

        // What the consumed host commands ask for.
        let mut refresh: Vec<u32> = Vec::new();
        if b.cr0.contains(Cr0::SMMUEN) != en {
            refresh.extend(HOST_STREAMS);
        }
        let mut expected = Vec::new();
        // The last MSI each consumed CMD_SYNC asked for.
        let mut msi = None;
        if k > 0 {
            hit(1);
        }
        for j in 0..k {
            let at = qbase + start.advance(j).index() as u64 * 16;
            if !HOST.holds(at, 16) {
                return Err(format!(
                    "{op}: consumed a queue entry outside the host's RAM ({at:#x})"
                ));
            }
            let c = Command([self.ram.get(at), self.ram.get(at + 8)]);
            match expect(&c, &caps) {
                Expect::Nothing => {}
                Expect::Msi(addr, data) => msi = Some((addr, data)),
                Expect::Send(x) => expected.push(x.0),
                Expect::Refresh(first, n) => refresh.extend(
                    HOST_STREAMS
                        .iter()
                        .filter(|s| **s as u64 >= first as u64 && (**s as u64) < first as u64 + n),
                ),
                Expect::Illegal => {
                    return Err(format!("{op}: consumed an illegal command {c:x?} at {at:#x}"))
                }
            }
        }

        // The last MSI is in the host's memory (the checked write path: nothing lands outside
        // its RAM, which the memory's record of writes checks too).
        if let Some((addr, data)) = msi {
            hit(13);
            if self.ram.get(addr) as u32 != data {
                return Err(format!("{op}: no MSI {data:#x} at {addr:#x} for a consumed SYNC"));
            }
        }

        // Every command the real SMMU consumed.
        let resumed = after.resumes != b.resumes
            || after.losses != b.losses
            || matches!(op, Op::Gerror(bits) if bits & Gerror::SFM_ERR.bits() != 0);
        let sent: Vec<[u64; 2]> = self.io.regs_mut().consumed[b.consumed..].to_vec();
        let mut invalidations = Vec::new();
        for c in &sent {
            let opc = c[0] & 0xff;
            let sid = (c[0] >> 32) as u32;
            let vmid = (c[0] >> 32 & 0xffff) as u16;
            let ok = match opc {
                0x46 => true,
                0x03 => match op {
                    Op::Attach { sid: s, .. } => sid == *s,
                    _ => host_op && refresh.contains(&sid),
                },
                0x04 | 0x20 | 0x30 => {
                    resumed
                        && [Command::cfgi_all(), Command::tlbi_el2_all(), Command::tlbi_nsnh_all()]
                            .iter()
                            .any(|x| x.0 == *c)
                }
                0x05 | 0x06 | 0x40 => host_op && HOST_STREAMS.contains(&sid),
                0x10..=0x13 => host_op && vmid == host_vmid(),
                _ => false,
            };
            if !ok {
                return Err(format!("{op}: the real SMMU was sent {c:x?}"));
            }
            if !matches!(opc, 0x46 | 0x03 | 0x04 | 0x20 | 0x30) {
                invalidations.push(*c);
            }
        }
        let power_steady = b.power == Power::On
            && after.power == Power::On
            && after.resumes == b.resumes
            && after.losses == b.losses
            && after.suspends == b.suspends;
        if host_op && power_steady && invalidations != expected {
            return Err(format!(
                "{op}: sent {invalidations:x?} for the host's commands, not {expected:x?}"
            ));
        }
        if host_op && power_steady && !expected.is_empty() {
            hit(2);
        }

        // Streams: every STE is its domain's, changed only by its owner, and a host stream's
        // only when its STE was to be read, to what that STE asks for.
        let changer = match op {
            Op::Attach { vm, .. } => Some(*vm),
            _ if host_op => Some(0),
            _ => None,
        };
        for (old, new) in b.streams.iter().zip(after.streams.iter()) {
            let (sid, dom, words) = new;
            let owner = self.io.owner_of(*sid).unwrap();
            let d = dom.ok_or(format!("stream {sid:#x} has no domain"))?;
            if Some(Ste(*words)) != self.io.encoded(*sid, &d) {
                return Err(format!("{op}: stream {sid:#x}: STE {words:x?} is not {d:x?}'s"));
            }
            if let Domain::Nested(c) = d {
                if !MANIFEST.vms[owner as usize].holds(c.ctx_ptr, 64 << c.cdmax) {
                    return Err(format!("{op}: stream {sid:#x}: CD table outside vm {owner}"));
                }
            }
            if old != new && changer != Some(owner) {
                return Err(format!(
                    "{op}: stream {sid:#x} of vm {owner} changed: {old:x?} -> {new:x?}"
                ));
            }
            if owner == 0 && host_op {
                if refresh.contains(sid) {
                    let want = self.host_domain(*sid);
                    hit(3);
                    match want {
                        Domain::Identity => hit(4),
                        Domain::Nested(_) => hit(5),
                        Domain::Blocked => {}
                    }
                    if d != want {
                        return Err(format!(
                            "{op}: host stream {sid:#x} shadowed as {d:x?}, its STE asks for {want:x?}"
                        ));
                    }
                } else if old.1 != new.1 {
                    return Err(format!("{op}: host stream {sid:#x} re-shadowed unasked"));
                }
            }
            if owner == 0 && !en && d != Domain::Blocked {
                return Err(format!("{op}: SMMUEN = 0, yet host stream {sid:#x} is {d:x?}"));
            }
        }
        if self.v.read(off::GBPA, 4) != Gbpa::ABORT as u64 {
            return Err(format!("{op}: GBPA does not read ABORT"));
        }
        let pm = self.io.pm_status();
        if (pm.votes_allow_off & 1 == 0) != en {
            return Err(format!("{op}: SMMUEN {en}, vote mask {:#x}", pm.votes_allow_off));
        }
        if en && self.io.power() != Power::On {
            return Err(format!("{op}: the host's SMMU is enabled, the real one is off"));
        }

        // Memory: reads of the host's RAM only (its queue, its streams' descriptors and STEs).
        let places: Vec<(Option<u64>, Option<u64>)> =
            HOST_STREAMS.iter().map(|s| self.ste_addr(*s)).collect();
        let qend = qbase + (16u64 << r.cmdq_log2());
        for &(vm, ipa, len, out) in self.ram.reads.borrow().iter() {
            if vm != 0 || !HOST.holds(ipa, len) || len != out {
                return Err(format!("{op}: read {len:#x} bytes at {ipa:#x} of vm {vm}"));
            }
            let queue = len % 16 == 0 && ipa >= qbase && ipa + len <= qend;
            let ste = len == 64 && places.iter().any(|p| p.1 == Some(ipa));
            let l1 = len == 8 && places.iter().any(|p| p.0 == Some(ipa));
            // A CD table one of its streams' STEs (in its table, or shadowed) points at.
            let cds = places.iter().filter_map(|p| p.1).any(|a| {
                let v = Ste(core::array::from_fn(|i| self.ram.get(a + i as u64 * 8)));
                v.s1_context_ptr() == ipa && 64 << v.s1cdmax() == len
            }) || after.streams.iter().any(|(_, d, _)| {
                matches!(d, Some(Domain::Nested(c)) if c.ctx_ptr == ipa && 64 << c.cdmax == len)
            });
            if ste {
                hit(11);
            }
            if !(queue || ste || l1 || cds) {
                return Err(format!(
                    "{op}: read {len:#x} bytes at {ipa:#x}: not its queue or STEs"
                ));
            }
        }
        // Writes: event records of its own streams, into its enabled event queue.
        let ebase = r.evtq_base() & BASE_ADDR_MASK;
        let eend = ebase + (32u64 << r.evtq_log2());
        for (vm, ipa, len, data) in &self.ram.writes {
            let (ipa, len) = (*ipa, *len);
            let inside = *vm == 0 && HOST.holds(ipa, len) && len == data.len() as u64;
            let slot =
                len == 32 && ipa >= ebase && ipa + 32 <= eend && (ipa - ebase).is_multiple_of(32);
            if !inside || !slot || !r.cr0().contains(Cr0::EVENTQEN) {
                return Err(format!("{op}: wrote {len:#x} bytes at {ipa:#x} of vm {vm}"));
            }
            let rec: [u64; 4] = core::array::from_fn(|i| {
                u64::from_le_bytes(data[i * 8..i * 8 + 8].try_into().unwrap())
            });
            if self.io.owner_of((rec[0] >> 32) as u32) != Some(0)
                || !self.host_events.contains(&rec)
            {
                return Err(format!("{op}: wrote a record that is not the host's: {rec:x?}"));
            }
            hit(8);
        }
        // A host record the real SMMU recorded reaches the host's queue if it has room.
        if let Op::Event(e) = op {
            if self.event_accepted && self.io.owner_of((e[0] >> 32) as u32) == Some(0) {
                if let Some(slot) = b.evtq_slot {
                    let bytes: Vec<u8> = e.iter().flat_map(|w| w.to_le_bytes()).collect();
                    let want =
                        if HOST.holds(slot, 32) { vec![(0, slot, 32, bytes)] } else { vec![] };
                    if self.ram.writes != want {
                        return Err(format!("{op}: the host's record did not reach its queue"));
                    }
                    if want.is_empty() && !r.active_errors().contains(Gerror::EVENTQ_ABT_ERR) {
                        return Err(format!("{op}: a record lost without EVENTQ_ABT_ERR"));
                    }
                    hit(12);
                }
            }
        }
        // The emulated SMMU raises only what it has: command and event-queue errors.
        let gerror = self.v.read(off::GERROR, 4) as u32;
        if gerror & !(Gerror::CMDQ_ERR | Gerror::EVENTQ_ABT_ERR).bits() != 0 {
            return Err(format!("{op}: GERROR {gerror:#x}"));
        }
        Ok(())
    }

    /// Runs one step (its operations, each checked).
    fn run(&mut self, s: &Step) -> Check {
        match s {
            Step::Op(op) => self.op(op),
            Step::Seed(i) => {
                for op in &seeds()[*i].1 {
                    self.op(op)?;
                }
                Ok(())
            }
            Step::Reset(l) => self.linux_reset(l),
            Step::Ste { sid, words, cfgi } => {
                let (l1, mut at) = self.ste_addr(*sid);
                if let (Some(l1), None) = (l1, at) {
                    // Two-level, no level-2 table yet: one for this span first.
                    let split = self.split();
                    let l2 = L2_AREA + ((*sid >> split) as u64) * (64 << split);
                    self.op(&Op::Mem { addr: l1, words: vec![l2 | (split as u64 + 1)] })?;
                    at = self.ste_addr(*sid).1;
                }
                if let Some(at) = at {
                    self.op(&Op::Mem { addr: at, words: words.to_vec() })?;
                }
                if *cfgi {
                    self.cmds(&[Command::cfgi_ste(*sid).0, Command::sync().0], 0)?;
                }
                Ok(())
            }
            Step::L1 { sid, desc } => match self.ste_addr(*sid).0 {
                Some(l1) => self.op(&Op::Mem { addr: l1, words: vec![*desc] }),
                None => Ok(()),
            },
            Step::Cmds { cmds, extra } => self.cmds(cmds, *extra),
            Step::CmdqCons(delta) => {
                let (prod, _) = self.v.registers().cmdq_ptrs();
                let val = prod.advance(*delta).raw() as u64;
                self.op(&Op::Write { off: off::CMDQ_CONS, size: 4, val })
            }
            Step::EvtqCons { delta, ovf } => {
                let (prod, _) = self.v.registers().evtq_ptrs();
                let val = prod.advance(*delta).raw() | if *ovf { 1 << 31 } else { 0 };
                self.op(&Op::Write { off: off::EVTQ_CONS, size: 4, val: val as u64 })
            }
            Step::Recover => {
                let gerror = self.v.read(off::GERROR, 4);
                let gerrorn = self.v.read(off::GERRORN, 4);
                self.op(&Op::Read { off: off::GERROR, size: 4 })?;
                if (gerror ^ gerrorn) & Gerror::CMDQ_ERR.bits() as u64 != 0 {
                    let r = self.v.registers();
                    let (_, cons) = r.cmdq_ptrs();
                    let at = (r.cmdq_base() & BASE_ADDR_MASK) + cons.index() as u64 * 16;
                    self.op(&Op::Read { off: off::CMDQ_CONS, size: 4 })?;
                    self.op(&Op::Mem { addr: at, words: Command::sync().0.to_vec() })?;
                }
                self.op(&Op::Write { off: off::GERRORN, size: 4, val: gerror })
            }
        }
    }

    /// Commands written at PROD, then PROD moved past them and `extra` entries more.
    fn cmds(&mut self, cmds: &[[u64; 2]], extra: u32) -> Check {
        let r = self.v.registers();
        let (prod, _) = r.cmdq_ptrs();
        let base = r.cmdq_base() & BASE_ADDR_MASK;
        // One store per run of entries up to the queue's end.
        let mut run: Option<(u64, Vec<u64>)> = None;
        for (i, c) in cmds.iter().enumerate() {
            let at = base + prod.advance(i as u32).index() as u64 * 16;
            match &mut run {
                Some((a, words)) if *a + words.len() as u64 * 8 == at => words.extend(c),
                _ => {
                    if let Some((addr, words)) = run.replace((at, c.to_vec())) {
                        self.op(&Op::Mem { addr, words })?;
                    }
                }
            }
        }
        if let Some((addr, words)) = run {
            self.op(&Op::Mem { addr, words })?;
        }
        let val = prod.advance(cmds.len() as u32).advance(extra).raw() as u64;
        self.op(&Op::Write { off: off::CMDQ_PROD, size: 4, val })
    }

    /// Linux's reset sequence (`arm_smmu_device_reset`) with layout `l`.
    fn linux_reset(&mut self, l: &Layout) -> Check {
        let w = |off: usize, size: u8, val: u64| Op::Write { off, size, val };
        let cfg = if l.two_level {
            strtab_cfg::FMT_2LVL | strtab_cfg::split(l.split) | l.log2size
        } else {
            strtab_cfg::log2size(l.log2size)
        };
        for op in [
            w(off::CR0, 4, 0),
            w(off::GBPA, 4, (Gbpa::UPDATE | Gbpa::ABORT) as u64),
            w(off::IRQ_CTRL, 4, 0),
            w(off::CR1, 4, 0xd75),
            w(off::CR2, 4, 0x2),
            w(off::STRTAB_BASE, 8, l.strtab | BASE_RA),
            w(off::STRTAB_BASE_CFG, 4, cfg as u64),
            w(off::CMDQ_BASE, 8, l.cmdq | BASE_RA | l.cmdq_log2 as u64),
            w(off::CMDQ_PROD, 4, 0),
            w(off::CMDQ_CONS, 4, 0),
        ] {
            self.op(&op)?;
        }
        if l.two_level {
            let split = self.split();
            for sid in HOST_STREAMS {
                if let Some(l1) = self.ste_addr(sid).0 {
                    let l2 = L2_AREA + ((sid >> split) as u64) * (64 << split);
                    self.op(&Op::Mem { addr: l1, words: vec![l2 | (split as u64 + 1)] })?;
                }
            }
        }
        self.op(&w(off::CR0, 4, Cr0::CMDQEN.bits() as u64))?;
        self.cmds(&[Command::cfgi_all().0, Command::tlbi_nsnh_all().0, Command::sync().0], 0)?;
        let irqs = (IrqCtrl::EVENTQ_IRQEN | IrqCtrl::GERROR_IRQEN).bits() as u64;
        for op in [
            w(off::EVTQ_BASE, 8, l.evtq | BASE_RA | l.evtq_log2 as u64),
            w(off::EVTQ_PROD, 4, 0),
            w(off::EVTQ_CONS, 4, 0),
            w(off::IRQ_CTRL, 4, irqs),
            w(off::CR0, 4, (Cr0::CMDQEN | Cr0::EVENTQEN).bits() as u64),
            w(off::CR0, 4, Cr0::RUNNING.bits() as u64),
        ] {
            self.op(&op)?;
        }
        Ok(())
    }
}

/// A guest's domain of kind `kind` (0 blocked, 1 identity, 2 nested on a CD table in its RAM),
/// as validation makes it from a virtual STE.
fn guest_domain(vm: u32, kind: u8) -> Domain {
    let cd = MANIFEST.vms[vm as usize].mem.base + 0x3000;
    let v = match kind % 3 {
        0 => Ste::default(),
        1 => Ste::default().with_v(1).with_config(SteConfig::Bypass),
        _ => Ste::default().with_v(1).with_config(SteConfig::S1).with_s1_context_ptr(cd),
    };
    validate::virtual_ste(&v, &MANIFEST.vms[vm as usize], &SmmuCaps::QEMU).unwrap()
}

// ---- Strategies ----

fn word() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), (0u32..64).prop_map(|b| 1u64 << b), any::<u64>(), 0u64..600]
}

/// Addresses inside, at the edges of and outside the host's RAM.
fn places() -> Vec<u64> {
    let ram = HOST.mem;
    vec![
        0x4410_0000,
        0x4420_0000,
        0x4430_0000,
        0x4440_0000,
        ram.base,
        ram.end() - 0x40,
        ram.end() - 0x80,
        ram.end() - 0x1000,
        ram.end(),
        ram.base - 0x40,
        MANIFEST.vms[1].mem.base,
        MANIFEST.vms[2].mem.base + 0x1000,
        0x4020_0000,
        0,
        0x000f_ffff_ffff_ffc0,
        1 << 52 | 0x4410_0000,
    ]
}

fn place() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => prop::sample::select(places()),
        1 => (0u64..0x1000_0000).prop_map(|x| HOST.mem.base + (x & !0x3f)),
        1 => any::<u64>(),
    ]
}

fn layout() -> impl Strategy<Value = Layout> {
    let random = (
        place(),
        any::<bool>(),
        prop::sample::select(vec![0u32, 1, 5, 8, 13, 16, 63]),
        prop::sample::select(vec![0u32, 1, 6, 8, 10, 13, 31]),
        place(),
        prop::sample::select(vec![0u32, 1, 2, 3, 5, 8, 19, 31]),
        place(),
        prop::sample::select(vec![0u32, 1, 2, 5, 19, 31]),
    )
        .prop_map(|(strtab, two_level, log2size, split, cmdq, cmdq_log2, evtq, evtq_log2)| {
            Layout { strtab, two_level, log2size, split, cmdq, cmdq_log2, evtq, evtq_log2 }
        });
    let small = (prop::sample::select(vec![0u32, 1, 2, 3, 8, 10]), 0u32..3, any::<bool>())
        .prop_map(|(cmdq_log2, evtq_log2, two)| Layout {
            cmdq_log2,
            evtq_log2,
            ..if two { TWO_LEVEL } else { LINEAR }
        });
    prop_oneof![2 => Just(LINEAR), 2 => Just(TWO_LEVEL), 2 => small, 3 => random]
}

fn sid() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => prop::sample::select(HOST_STREAMS.to_vec()),
        2 => prop::sample::select(GUEST_STREAMS.iter().map(|g| g.1).collect::<Vec<_>>()),
        1 => prop::sample::select(vec![UNOWNED, 0, 0x1fff, 0x2000, u32::MAX]),
        1 => any::<u32>(),
    ]
}

fn vmid() -> impl Strategy<Value = u16> {
    prop_oneof![3 => Just(0u16), 1 => 1u16..4, 1 => any::<u16>()]
}

/// The commands Linux's driver (and an attacker) writes, with edge fields.
fn linux_command() -> impl Strategy<Value = [u64; 2]> {
    (sid(), vmid(), any::<u16>(), 0u64..32, 0usize..18, word()).prop_map(
        |(sid, vmid, asid, range, which, x)| {
            let c = match which {
                0 => Command::cfgi_ste(sid),
                1 => {
                    let mut c = Command::cfgi_all();
                    cmd::RANGE.set(&mut c.0, range);
                    cmd::SID.set(&mut c.0, sid as u64);
                    c
                }
                2 => Command::cfgi_all(),
                3 => Command::cfgi_cd(sid, x as u32 & 0xfffff),
                4 => Command::cfgi_cd_all(sid),
                5 => Command::tlbi_nh_all(vmid),
                6 => Command::tlbi_nh_asid(vmid, asid),
                7 => Command::tlbi_nh_va(vmid, asid, x),
                8 => Command([0x13 | (vmid as u64) << 32, x & !0xfff]), // TLBI_NH_VAA
                9 => Command::tlbi_s12_vmall(vmid),
                10 => Command::tlbi_el2_all(),
                11 => Command::tlbi_nsnh_all(),
                12 => Command::atc_inv_all(sid),
                13 => {
                    // CMD_SYNC with completion signal and MSI fields.
                    let mut c = Command::sync();
                    cmd::SYNC_CS.set(&mut c.0, range & 3);
                    if range & 4 != 0 {
                        cmd::SYNC_MSIADDR.set(&mut c.0, x >> 2);
                    } else if asid & 1 != 0 {
                        // A page of the host's RAM no structure of the layouts uses.
                        cmd::SYNC_MSIADDR.set(&mut c.0, (0x4460_0000 | (x & 0xffc)) >> 2);
                    }
                    if range & 8 != 0 {
                        cmd::SYNC_MSIDATA.set(&mut c.0, x & 0xffff_ffff);
                    }
                    if range & 16 != 0 {
                        cmd::SYNC_MSH.set(&mut c.0, 3);
                        cmd::SYNC_MSIATTR.set(&mut c.0, 0xf);
                    }
                    c
                }
                14 => Command([0x01 | (sid as u64) << 32, 0]), // PREFETCH_CONFIG
                15 => Command([0x41 | (sid as u64) << 32, x]), // PRI_RESP
                16 => Command([0x44 | (sid as u64) << 32, x]), // RESUME
                _ => Command::sync(),
            };
            c.0
        },
    )
}

/// Long runs of what Linux sends while a device is busy (invalidations, syncs), now and then a
/// CFGI_STE or an illegal command: batches beyond one hypercall's and wrapping the queue.
fn burst() -> impl Strategy<Value = Vec<[u64; 2]>> {
    let one = (0u32..40, any::<u16>(), any::<u64>(), prop::sample::select(HOST_STREAMS.to_vec()))
        .prop_map(|(k, asid, va, sid)| {
            match k {
                0..=14 => Command::tlbi_nh_va(0, asid, va),
                15..=22 => Command::tlbi_nh_asid(0, asid),
                23..=28 => Command::sync(),
                29..=32 => Command::cfgi_cd(sid, 0),
                33..=34 => Command([0x01 | (sid as u64) << 32, 0]),
                35..=36 => Command::atc_inv_all(sid),
                37 => Command::tlbi_nsnh_all(),
                38 => Command::cfgi_ste(sid),
                _ => Command::tlbi_s12_vmall(0),
            }
            .0
        });
    prop::collection::vec(one, 1..700)
}

/// Commands: Linux's own, every opcode with random fields, and single-bit flips.
fn command() -> impl Strategy<Value = [u64; 2]> {
    let any_op = (any::<u8>(), word(), word()).prop_map(|(op, a, b)| [a & !0xff | op as u64, b]);
    prop_oneof![
        6 => linux_command(),
        2 => any_op,
        2 => (linux_command(), 0u32..128).prop_map(|(mut c, b)| {
            c[(b / 64) as usize] ^= 1 << (b % 64);
            c
        }),
    ]
}

/// STEs: valid ones of every kind, every single-bit STE, valid ones with a bit flipped, noise.
fn ste_words() -> impl Strategy<Value = [u64; 8]> {
    let ram = HOST.mem;
    let s1 = |cd: u64| Ste::default().with_v(1).with_config(SteConfig::S1).with_s1_context_ptr(cd);
    let valid: Vec<[u64; 8]> = vec![
        Ste::default().0,
        Ste::default().with_v(1).with_config(SteConfig::Abort).0,
        Ste::default().with_v(1).with_config(SteConfig::Bypass).0,
        s1(0x4440_0000).with_s1cir(1).with_s1cor(1).with_s1csh(3).0,
        s1(ram.end() - 64).0,
        s1(ram.end() - 32).0,
        s1(ram.end()).0,
        s1(ram.base - 64).0,
        s1(MANIFEST.vms[1].mem.base).0,
        s1(0x4020_0000).0,
        s1(0x4440_0000).with_s1cdmax(1).0,
        s1(0x4440_0000).with_s1dss(2).0,
        s1(0x4440_0000).with_s1fmt(1).0,
        Ste::default()
            .with_v(1)
            .with_config(SteConfig::S2)
            .with_s2vmid(1)
            .with_s2ttb(0x4400_0000)
            .0,
        Ste::default().with_v(1).with_config(SteConfig::Nested).with_s2vmid(2).0,
        Ste::default().with_v(1).with_config_bits(0b010).0,
    ];
    let good: Vec<[u64; 8]> = vec![
        Ste::default().with_v(1).with_config(SteConfig::Bypass).0,
        s1(0x4440_0000).with_s1cir(1).with_s1cor(1).with_s1csh(3).0,
        s1(ram.end() - 64).with_s1dss(2).0,
        Ste::default().with_v(1).with_config(SteConfig::Abort).0,
    ];
    prop_oneof![
        3 => prop::sample::select(good),
        2 => prop::sample::select(valid.clone()),
        2 => (0usize..512).prop_map(|b| {
            let mut w = [0u64; 8];
            w[b / 64] = 1 << (b % 64);
            w
        }),
        2 => (prop::sample::select(valid), 0usize..512).prop_map(|(mut w, b)| {
            w[b / 64] ^= 1 << (b % 64);
            w
        }),
        1 => prop::array::uniform8(word()),
    ]
}

/// Register offsets: the architected ones, their neighbours, and anywhere in the two pages.
fn offset() -> impl Strategy<Value = usize> {
    let o = [
        off::IDR0,
        off::IDR1,
        off::IDR5,
        off::IIDR,
        off::AIDR,
        off::CR0,
        off::CR0ACK,
        off::CR1,
        off::CR2,
        off::STATUSR,
        off::GBPA,
        off::AGBPA,
        off::IRQ_CTRL,
        off::IRQ_CTRLACK,
        off::GERROR,
        off::GERRORN,
        off::GERROR_IRQ_CFG0,
        off::GERROR_IRQ_CFG1,
        off::STRTAB_BASE,
        off::STRTAB_BASE + 4,
        off::STRTAB_BASE_CFG,
        off::CMDQ_BASE,
        off::CMDQ_BASE + 4,
        off::CMDQ_PROD,
        off::CMDQ_CONS,
        off::EVTQ_BASE,
        off::EVTQ_BASE + 4,
        off::EVTQ_IRQ_CFG0,
        off::PRIQ_BASE,
        off::EVTQ_PROD,
        off::EVTQ_CONS,
        off::PRIQ_PROD,
        0xa8,
        0x7000,
        0xe00,
        0x1_0000,
        0x1_fffc,
        0x1_fff8,
    ];
    prop_oneof![5 => prop::sample::select(o.to_vec()), 1 => (0usize..0x8000).prop_map(|w| w * 4)]
}

fn reg_value() -> impl Strategy<Value = u64> {
    let cr0 = [
        0u64,
        Cr0::CMDQEN.bits() as u64,
        (Cr0::CMDQEN | Cr0::EVENTQEN).bits() as u64,
        Cr0::RUNNING.bits() as u64,
        Cr0::SMMUEN.bits() as u64,
        (Cr0::SMMUEN | Cr0::CMDQEN).bits() as u64,
        (Cr0::SMMUEN | Cr0::EVENTQEN).bits() as u64,
        Cr0::all().bits() as u64,
        0xffff_ffff,
    ];
    prop_oneof![
        3 => word(),
        2 => prop::sample::select(cr0.to_vec()),
        2 => (place(), 0u64..32).prop_map(|(p, l)| p | l),
    ]
}

fn write_op() -> impl Strategy<Value = Op> {
    (offset(), any::<bool>(), reg_value()).prop_map(|(off, wide, val)| {
        let size = if wide && off % 8 == 0 { 8 } else { 4 };
        Op::Write { off, size, val: if size == 4 { val & 0xffff_ffff } else { val } }
    })
}

fn read_op() -> impl Strategy<Value = Op> {
    (offset(), any::<bool>())
        .prop_map(|(off, wide)| Op::Read { off, size: if wide && off % 8 == 0 { 8 } else { 4 } })
}

fn mem_op() -> impl Strategy<Value = Op> {
    let at = prop_oneof![
        2 => (prop::sample::select(vec![0x4410_0000u64, 0x4420_0000, 0x4430_0000, L2_AREA]), 0u64..64)
            .prop_map(|(b, i)| b + i * 16),
        1 => place(),
    ];
    (at, prop::collection::vec(word(), 1..9)).prop_map(|(addr, words)| Op::Mem { addr, words })
}

fn event_op() -> impl Strategy<Value = Op> {
    let ty = prop_oneof![prop::sample::select(vec![0x10u64, 0x01, 0x04, 0x0a, 0x0b]), 0u64..256];
    (sid(), ty, word(), any::<u64>(), word()).prop_map(|(sid, ty, w0, w2, w3)| {
        Op::Event([(w0 & 0xffff_ff00) | ty | (sid as u64) << 32, w0 >> 32, w2, w3])
    })
}

fn step() -> impl Strategy<Value = Step> {
    let guest = prop::sample::select(GUEST_STREAMS.to_vec());
    let gerr = prop::sample::select(vec![
        Gerror::SFM_ERR.bits(),
        Gerror::EVENTQ_ABT_ERR.bits(),
        Gerror::MSI_CMDQ_ABT_ERR.bits(),
        Gerror::MSI_GERROR_ABT_ERR.bits(),
    ]);
    let extra = prop_oneof![6 => Just(0u32), 1 => 1u32..20, 1 => any::<u32>()];
    prop_oneof![
        6 => write_op().prop_map(Step::Op),
        2 => read_op().prop_map(Step::Op),
        6 => (prop::collection::vec(command(), 1..6), extra)
            .prop_map(|(cmds, extra)| Step::Cmds { cmds, extra }),
        1 => burst().prop_map(|cmds| Step::Cmds { cmds, extra: 0 }),
        5 => (sid(), ste_words(), prop::bool::weighted(0.8))
            .prop_map(|(sid, words, cfgi)| Step::Ste { sid, words, cfgi }),
        1 => (sid(), place(), 0u64..32).prop_map(|(sid, p, span)| Step::L1 { sid, desc: p | span }),
        2 => mem_op().prop_map(Step::Op),
        3 => event_op().prop_map(Step::Op),
        2 => layout().prop_map(Step::Reset),
        2 => Just(Step::Recover),
        1 => any::<u32>().prop_map(Step::CmdqCons),
        1 => (0u32..80, any::<bool>()).prop_map(|(delta, ovf)| Step::EvtqCons { delta, ovf }),
        1 => (guest, 0u8..3).prop_map(|((vm, sid), kind)| Step::Op(Op::Attach { vm, sid, kind })),
        1 => (1u32..3, any::<bool>()).prop_map(|(vm, allow_off)| Step::Op(Op::Vote { vm, allow_off })),
        1 => Just(Step::Op(Op::PowerLoss)),
        1 => gerr.prop_map(|b| Step::Op(Op::Gerror(b))),
        1 => (0..seeds().len()).prop_map(Step::Seed),
    ]
}

/// Sequences: mostly from a reset (Linux's layouts or random ones) or a corpus seed.
fn sequence() -> impl Strategy<Value = Vec<Step>> {
    let first = prop_oneof![
        4 => layout().prop_map(Step::Reset),
        2 => (0..seeds().len()).prop_map(Step::Seed),
        1 => step(),
    ];
    (first, prop::collection::vec(step(), 1..24)).prop_map(|(f, mut rest)| {
        rest.insert(0, f);
        rest
    })
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128)
}

#[test]
fn the_vsmmu_corpus_replays_without_a_violation() {
    let s = seeds();
    assert!(s.len() >= 5, "the corpus lost its seeds");
    for (name, ops) in &s {
        let mut w = World::new();
        for op in ops {
            if let Err(e) = w.op(op) {
                panic!("seed {name}: {e}");
            }
        }
    }
}

/// Random sequences through every check; prints how often the interesting paths were taken.
#[test]
fn random_host_sequences_keep_every_property() {
    use proptest::test_runner::{Config, TestError, TestRunner};
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        rng_seed: crate::hypercall_fuzz::rng_seed(),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&sequence(), |steps| {
        let mut w = World::new();
        for s in &steps {
            if let Err(e) = w.run(s) {
                return Err(TestCaseError::fail(e));
            }
        }
        Ok(())
    });
    std::println!("vsmmu fuzz: {} sequences", cases());
    for (n, c) in COVERAGE_NAMES.iter().zip(COVERAGE.iter()) {
        std::println!("{:>12} {n}", c.load(core::sync::atomic::Ordering::Relaxed));
    }
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, steps)) => {
            panic!("{why}\nminimal failing sequence of steps: {steps:#x?}")
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn the_checker_notices_a_shadow_the_host_did_not_ask_for() {
    // A stream changed behind the emulated SMMU's back (as a bug would): the refresh oracle
    // says so.
    let mut w = World::new();
    w.run(&Step::Reset(LINEAR)).unwrap();
    let before = w.snap();
    w.io.attach(0, 0x10, Domain::Identity, &crate::vm::memory::NoMemory).unwrap();
    w.io.regs_mut().consumed.truncate(before.consumed);
    let e = w.check(&Op::Read { off: off::IDR0, size: 4 }, &before).unwrap_err();
    assert!(e.contains("re-shadowed unasked"), "{e}");
    // And a guest's stream changed by a host operation.
    let before = w.snap();
    w.io.attach(1, 0x18, Domain::Blocked, &crate::vm::memory::NoMemory).unwrap();
    w.io.regs_mut().consumed.truncate(before.consumed);
    let e = w.check(&Op::Read { off: off::IDR0, size: 4 }, &before).unwrap_err();
    assert!(e.contains("of vm 1 changed"), "{e}");
}

#[test]
fn the_checker_notices_a_write_outside_the_event_queue() {
    let mut w = World::new();
    w.run(&Step::Reset(LINEAR)).unwrap();
    let before = w.snap();
    let r = GuestRange::of(HOST, 0x4410_0000, 32).unwrap();
    w.ram.write(r, &[0; 32]).unwrap();
    let e = w.check(&Op::Read { off: off::IDR0, size: 4 }, &before).unwrap_err();
    assert!(e.contains("wrote 0x20 bytes at 0x44100000"), "{e}");
}

/// Found by this fuzzer: a CMDQ_PROD "behind" CONS with the same wrap flag (the queue more than
/// full) made `queue::used` underflow: a panic in a debug build, and in the EL2 (release) build
/// about 2^32 commands re-read around the ring under the SMMU service's lock. The distance is
/// now taken modulo twice the queue size: every command up to PROD is consumed once around.
#[test]
fn regression_a_prod_behind_cons_is_consumed_around_the_ring() {
    let mut w = World::new();
    w.run(&Step::Reset(LINEAR)).unwrap();
    assert_eq!(w.v.registers().cmdq_ptrs().1.raw(), 3, "the reset batch consumed");
    w.run(&Step::Op(Op::Mem { addr: 0x4420_0000, words: [Command::sync().0; 8].concat() }))
        .unwrap();
    let commands = w.v.counters.commands;
    w.run(&Step::Op(Op::Write { off: off::CMDQ_PROD, size: 4, val: 1 })).unwrap();
    assert_eq!(w.v.counters.commands - commands, 14, "(1 - 3) mod 16 entries, once each");
    let (prod, cons) = w.v.registers().cmdq_ptrs();
    assert_eq!(cons, prod);
    assert!(!w.v.registers().cmdq_stopped());
}

/// Found by this fuzzer: an EVTQ_CONS "ahead of" PROD made posting the host's next record
/// underflow (`queue::space`). Such a queue is more than full: the record is discarded and the
/// overflow flagged, as for a full queue.
#[test]
fn regression_an_event_queue_cons_ahead_of_prod_is_an_overflow() {
    let mut w = World::new();
    w.run(&Step::Reset(LINEAR)).unwrap();
    w.run(&Step::Op(Op::Write { off: off::EVTQ_CONS, size: 4, val: 1 })).unwrap();
    w.run(&Step::Op(Op::Event([0x10 | 0x10 << 32, 0, 0x1000, 0]))).unwrap();
    assert_eq!(w.v.read(off::EVTQ_PROD, 4), Q_OVFLG as u64, "overflow flagged, nothing written");
    assert_eq!((w.v.counters.events_delivered, w.v.counters.events_discarded), (0, 1));
}
