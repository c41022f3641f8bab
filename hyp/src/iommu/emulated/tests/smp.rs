//! Two host CPUs on the emulated SMMU at once, as an SMP Linux host drives it: Linux's lock-free
//! command queue (`arm_smmu_cmdq_issue_cmdlist`), one CPU's entries published by the other's
//! CMDQ_PROD write, CMD_SYNCs polled through CMDQ_CONS by one CPU while the other writes
//! entries and PROD, the queue full and wrapping, and STE rewrites racing another CPU's
//! commands. Each trapped access is one step of one CPU and reaches the emulated SMMU whole
//! (the front door's lock); the CPUs' stores to the queue and the stream table are steps of
//! their own, in any order a seeded scheduler picks. What must hold in every interleaving:
//!
//! * every host command reaches the real SMMU exactly once, in queue order (nothing read
//!   beyond PROD: an entry of the previous lap would be sent twice, a never-written one stops
//!   the queue);
//! * the queue never stops and CONS never passes PROD;
//! * every CMD_SYNC completes within a bounded number of CONS polls once PROD covers it;
//! * once a CPU's CFGI_STE + CMD_SYNC completed, the stream's shadow is the STE that CPU wrote;
//! * the host's event thread (Linux's `arm_smmu_evtq_thread`: EVTQ_PROD read, each record read
//!   and given back with its own EVTQ_CONS write, the overflow acknowledged) racing the
//!   records the emulated SMMU writes on either CPU's accesses reads every record of its
//!   device's faults once, whole and in order, except those the emulated SMMU counted as
//!   discarded on an overflow it flagged.

use super::*;
use std::format;
use std::string::String;

/// Command-queue size: 8 entries, so the queue fills and wraps all the time.
const QLOG2: u32 = 3;
const CAP: u64 = 1 << QLOG2;
/// CONS polls a CPU may make for one CMD_SYNC once PROD covers it: the emulated SMMU consumes
/// everything up to PROD on the PROD write itself (the queue is smaller than its budget), so
/// the first poll must already see it.
const SYNC_POLLS: u32 = 1;
/// Batches each CPU issues per schedule.
const BATCHES: u32 = 12;
/// Event queue size (8 entries: it overflows now and then).
const EVQLOG2: u32 = 3;
/// Faults the host's device makes per schedule.
const FAULTS: u64 = 40;
/// The host's device's fault record with tag `t` (its input address): F_TRANSLATION on stream
/// 0x10.
fn fault(t: u64) -> [u64; 4] {
    [0x10 | 0x10 << 32, 0, t << 12, 0]
}

/// Linux's event thread, between two of its steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EvPhase {
    /// Waiting for the event interrupt.
    Idle,
    /// About to read EVTQ_PROD.
    ReadProd,
    /// About to read the record at CONS, or find the queue empty.
    Drain,
    /// About to write EVTQ_CONS after a record.
    WriteCons,
    /// About to acknowledge an overflow (CONS.OVFLG = PROD.OVFLG) and go idle.
    SyncOvf,
}

/// The event thread's state: its copies of the queue's indices (raw register values).
struct EvThread {
    phase: EvPhase,
    prod: u32,
    cons: u32,
    /// The last tag read.
    last: u64,
    /// Records read.
    read: u64,
    /// Overflows seen (PROD.OVFLG toggled).
    overflows: u32,
}

/// A small deterministic random source (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Linux's shared command-queue state (`cmdq->q.llq`, `owner_prod`, the valid map), with
/// positions counted from the start (a register value is a position modulo twice the size).
#[derive(Default)]
struct Shared {
    /// Next free position, and whether an owner is gathering (`CMDQ_PROD_OWNED_FLAG`).
    prod: u64,
    owned: bool,
    /// The last CONS a CPU read from the SMMU (for the space check).
    cons: u64,
    /// The position the next owner waits for before it writes CMDQ_PROD.
    owner_prod: u64,
    /// The position each slot last holds a valid entry for.
    valid: [Option<u64>; CAP as usize],
    /// Every command written, by position.
    written: Vec<Option<Command>>,
    /// The highest PROD written to the SMMU.
    prod_reg: u64,
}

/// Where one CPU is in issuing a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// About to reserve room (reading CONS first when the queue looks full).
    Reserve,
    /// Writing entry `i` of the batch.
    Write(usize),
    /// Marking the batch's entries valid.
    MarkValid,
    /// Owner: waiting for the previous owner to finish.
    WaitPrevOwner,
    /// Owner: stopping the gathering, taking the latest PROD.
    Gather,
    /// Owner: waiting for every entry up to `upto` to be valid.
    WaitValid { upto: u64 },
    /// Owner: writing CMDQ_PROD = `upto`.
    WriteProd { upto: u64 },
    /// Polling CONS until it passes the batch's CMD_SYNC.
    WaitSync,
    /// Nothing to do.
    Done,
}

struct Cpu {
    id: usize,
    phase: Phase,
    batch: Vec<Command>,
    /// The batch's first position.
    start: u64,
    owner: bool,
    /// Polls since PROD covered the batch's SYNC.
    polls: u32,
    batches: u32,
    /// Tags the CPU's invalidations (the VA's page number).
    seq: u64,
    /// The STE this CPU's batch rewrites (CPU 1 only), and what it asks for.
    ste: Option<Ste>,
}

impl Cpu {
    fn new(id: usize) -> Self {
        Cpu {
            id,
            phase: Phase::Done,
            batch: Vec::new(),
            start: 0,
            owner: false,
            polls: 0,
            batches: 0,
            seq: 0,
            ste: None,
        }
    }
}

/// The STEs CPU 1 alternates stream 0x10 between.
fn host_stes() -> [Ste; 2] {
    [Ste::default().with_v(1).with_config(SteConfig::Bypass), Ste::default().with_v(1)]
}

/// The position a register value means, given the latest known position `near` (at most a
/// queue's worth away).
fn position(raw: u32, near: u64) -> u64 {
    let lap = 2 * CAP;
    let base = near - near % lap;
    let mut p = base + (raw as u64 & (lap - 1));
    if p > near + CAP {
        p -= lap;
    } else if p + CAP < near {
        p += lap;
    }
    p
}

struct Machine {
    w: World,
    s: Shared,
    cpus: [Cpu; 2],
    rng: Rng,
    /// Real-SMMU commands consumed before the run.
    consumed_before: usize,
    /// How often the interleavings this test is about happened.
    seen: Seen,
    ev: EvThread,
    /// Faults the device made so far (their tags are 1..=faults).
    faults: u64,
    /// The event interrupt was raised and not yet taken.
    ev_irq: bool,
}

/// Interleavings that happened (a schedule that never makes them shows nothing).
#[derive(Default, Debug, Clone, Copy)]
struct Seen {
    /// A CMDQ_PROD write that handed on the other CPU's entries.
    prod_for_other: u32,
    /// A CPU found the queue full and polled CONS.
    full: u32,
    /// A CONS poll for a SYNC while the other CPU was writing entries.
    poll_during_write: u32,
    /// A CFGI_STE + SYNC completed and the new STE checked.
    ste_checked: u32,
    /// A non-owner's SYNC completed (another CPU's PROD write covered it).
    sync_by_other_prod: u32,
    /// Records the emulated SMMU wrote on a command CPU's access while the event thread was
    /// in the middle of a drain.
    records_during_drain: u32,
    /// Overflows the event thread acknowledged.
    overflows: u32,
}

impl Machine {
    fn new(seed: u64) -> Self {
        let mut w = World::new();
        w.linux_reset();
        // The same driver with an 8-entry queue: disable, move, enable.
        w.w(off::CR0, 4, (Cr0::SMMUEN | Cr0::EVENTQEN).bits() as u64);
        w.w(off::CMDQ_BASE, 8, CMDQ | QLOG2 as u64);
        w.w(off::CMDQ_PROD, 4, 0);
        w.w(off::CMDQ_CONS, 4, 0);
        // An 8-entry event queue too.
        w.w(off::CR0, 4, (Cr0::SMMUEN | Cr0::CMDQEN).bits() as u64);
        w.w(off::EVTQ_BASE, 8, EVTQ | EVQLOG2 as u64);
        w.w(off::EVTQ_PROD, 4, 0);
        w.w(off::EVTQ_CONS, 4, 0);
        w.w(off::CR0, 4, Cr0::RUNNING.bits() as u64);
        // Stream 0x10 bypass (identity) to begin with.
        w.host_ste(0x10, host_stes()[0]);
        let consumed_before = w.io.regs_mut().consumed.len();
        Machine {
            w,
            s: Shared::default(),
            cpus: [Cpu::new(0), Cpu::new(1)],
            rng: Rng(seed),
            consumed_before,
            seen: Seen::default(),
            ev: EvThread { phase: EvPhase::Idle, prod: 0, cons: 0, last: 0, read: 0, overflows: 0 },
            faults: 0,
            ev_irq: false,
        }
    }

    /// What the front door does after each of the host's accesses: its pending records into
    /// its event queue, its event interrupt raised.
    fn after_access(&mut self, by_event_thread: bool) {
        let before = self.w.v.counters.events_delivered;
        if SmmuCalls::events_pending(&mut self.w.io, 0) {
            let mut ctx = Context {
                mem: HostMemory { spec: HOST, mem: &mut self.w.ram },
                smmu: &mut self.w.io,
            };
            self.w.v.deliver_events(&mut ctx);
        }
        if !by_event_thread
            && self.w.v.counters.events_delivered != before
            && self.ev.phase != EvPhase::Idle
        {
            self.seen.records_during_drain += 1;
        }
        if self.w.v.take_irqs().eventq {
            self.ev_irq = true;
        }
    }

    fn read_reg(&mut self, off: usize, by_event_thread: bool) -> u32 {
        let v = self.w.r(off) as u32;
        self.after_access(by_event_thread);
        v
    }

    fn write_reg(&mut self, off: usize, v: u32, by_event_thread: bool) {
        self.w.w(off, 4, v as u64);
        self.after_access(by_event_thread);
    }

    /// One step of the event thread.
    fn ev_step(&mut self) -> Result<(), String> {
        let mask = (2u32 << EVQLOG2) - 1;
        let ev = &mut self.ev;
        match ev.phase {
            EvPhase::Idle => {
                if self.ev_irq {
                    self.ev_irq = false;
                    ev.phase = EvPhase::ReadProd;
                }
            }
            EvPhase::ReadProd => {
                let prod = self.read_reg(off::EVTQ_PROD, true);
                let ev = &mut self.ev;
                if (prod ^ ev.prod) & Q_OVFLG != 0 {
                    ev.overflows += 1;
                }
                ev.prod = prod;
                ev.phase = EvPhase::Drain;
            }
            EvPhase::Drain => {
                if ev.prod & mask == ev.cons & mask {
                    // Empty as far as it knows: look at PROD once more, or finish.
                    let prod = self.read_reg(off::EVTQ_PROD, true);
                    let ev = &mut self.ev;
                    if (prod ^ ev.prod) & Q_OVFLG != 0 {
                        ev.overflows += 1;
                    }
                    ev.prod = prod;
                    if prod & mask == ev.cons & mask {
                        ev.phase = EvPhase::SyncOvf;
                    }
                    return Ok(());
                }
                let slot = (ev.cons & ((1 << EVQLOG2) - 1)) as u64;
                let at = EVTQ + slot * 32;
                let r: [u64; 4] = core::array::from_fn(|i| self.w.ram.get(at + i as u64 * 8));
                let ev = &mut self.ev;
                let tag = r[2] >> 12;
                if r != fault(tag) || tag <= ev.last || tag > self.faults {
                    return Err(format!(
                        "the event thread read {r:x?} at slot {slot} after tag {}",
                        ev.last
                    ));
                }
                ev.last = tag;
                ev.read += 1;
                ev.cons = (ev.cons & Q_OVFLG) | ((ev.cons + 1) & mask);
                ev.phase = EvPhase::WriteCons;
            }
            EvPhase::WriteCons => {
                let cons = ev.cons;
                self.write_reg(off::EVTQ_CONS, cons, true);
                self.ev.phase = EvPhase::Drain;
            }
            EvPhase::SyncOvf => {
                ev.cons = (ev.prod & Q_OVFLG) | (ev.cons & mask);
                let cons = ev.cons;
                self.write_reg(off::EVTQ_CONS, cons, true);
                self.ev.phase = EvPhase::Idle;
            }
        }
        Ok(())
    }

    fn cons(&mut self) -> Result<u64, String> {
        let raw = self.read_reg(off::CMDQ_CONS, false);
        if raw >> 24 & 0x7f != 0 || self.w.v.registers().cmdq_stopped() {
            return Err(format!("the queue stopped: CMDQ_CONS {raw:#x}"));
        }
        let c = position(raw, self.s.prod_reg);
        if c > self.s.prod_reg {
            return Err(format!("CONS {c} passed PROD {}", self.s.prod_reg));
        }
        self.s.cons = self.s.cons.max(c);
        Ok(c)
    }

    /// A new batch for CPU `i`: 1 to 3 invalidations (CPU 1: sometimes an STE rewrite and its
    /// CFGI_STE instead), a CMD_SYNC at the end of most.
    fn next_batch(&mut self, i: usize) {
        let cpu = &mut self.cpus[i];
        cpu.batch.clear();
        cpu.ste = None;
        if cpu.id == 1 && self.rng.below(3) == 0 {
            let ste = host_stes()[(cpu.batches % 2) as usize];
            cpu.ste = Some(ste);
            cpu.batch.push(Command::cfgi_ste(0x10));
            cpu.batch.push(Command::sync());
        } else {
            for _ in 0..1 + self.rng.below(3) {
                cpu.seq += 1;
                cpu.batch.push(Command::tlbi_nh_va(0, cpu.id as u16 + 1, cpu.seq << 12));
            }
            if self.rng.below(4) != 0 {
                cpu.batch.push(Command::sync());
            }
        }
        cpu.phase = Phase::Reserve;
        cpu.polls = 0;
        // The STE is written before the batch that invalidates it.
        if let Some(ste) = self.cpus[i].ste {
            self.w.host_ste(0x10, ste);
        }
    }

    /// One step of CPU `i`.
    fn step(&mut self, i: usize) -> Result<(), String> {
        let phase = self.cpus[i].phase;
        match phase {
            Phase::Done => {
                if self.cpus[i].batches < BATCHES {
                    self.next_batch(i);
                }
            }
            Phase::Reserve => {
                let n = self.cpus[i].batch.len() as u64;
                if self.s.prod + n - self.s.cons > CAP {
                    // Looks full: read CONS (Linux's poll_until_not_full).
                    self.seen.full += 1;
                    self.cons()?;
                    return Ok(());
                }
                let cpu = &mut self.cpus[i];
                cpu.start = self.s.prod;
                cpu.owner = !self.s.owned;
                self.s.owned = true;
                self.s.prod += n;
                cpu.phase = Phase::Write(0);
            }
            Phase::Write(k) => {
                let cpu = &mut self.cpus[i];
                let pos = cpu.start + k as u64;
                let c = cpu.batch[k];
                let slot = pos % CAP;
                self.w.ram.put(CMDQ + slot * 16, &c.0);
                if self.s.written.len() <= pos as usize {
                    self.s.written.resize(pos as usize + 1, None);
                }
                self.s.written[pos as usize] = Some(c);
                cpu.phase =
                    if k + 1 < cpu.batch.len() { Phase::Write(k + 1) } else { Phase::MarkValid };
            }
            Phase::MarkValid => {
                let cpu = &self.cpus[i];
                for p in cpu.start..cpu.start + cpu.batch.len() as u64 {
                    self.s.valid[(p % CAP) as usize] = Some(p);
                }
                self.cpus[i].phase =
                    if self.cpus[i].owner { Phase::WaitPrevOwner } else { self.after_prod(i) };
            }
            Phase::WaitPrevOwner => {
                if self.s.owner_prod == self.cpus[i].start {
                    self.cpus[i].phase = Phase::Gather;
                }
            }
            Phase::Gather => {
                self.s.owned = false;
                self.cpus[i].phase = Phase::WaitValid { upto: self.s.prod };
            }
            Phase::WaitValid { upto } => {
                let start = self.cpus[i].start;
                if (start..upto).all(|p| self.s.valid[(p % CAP) as usize] == Some(p)) {
                    self.cpus[i].phase = Phase::WriteProd { upto };
                }
            }
            Phase::WriteProd { upto } => {
                let raw = upto % (2 * CAP);
                let other = &self.cpus[1 - i];
                if other.phase != Phase::Done
                    && other.start >= self.cpus[i].start
                    && other.start < upto
                {
                    self.seen.prod_for_other += 1;
                }
                self.s.prod_reg = upto;
                self.write_reg(off::CMDQ_PROD, raw as u32, false);
                self.s.owner_prod = upto;
                self.cpus[i].phase = self.after_prod(i);
            }
            Phase::WaitSync => {
                let cpu = &self.cpus[i];
                let sync_at = cpu.start + cpu.batch.len() as u64 - 1;
                let covered = self.s.prod_reg > sync_at;
                if matches!(self.cpus[1 - i].phase, Phase::Write(_)) {
                    self.seen.poll_during_write += 1;
                }
                let cons = self.cons()?;
                if cons > sync_at {
                    if let Some(ste) = self.cpus[i].ste {
                        let want = match validate::virtual_ste(&ste, HOST, &SmmuCaps::QEMU) {
                            Ok(d) => self.w.io.encoded(0x10, &d).unwrap(),
                            Err(e) => panic!("{e:?}"),
                        };
                        let got = self.w.shadow(0x10);
                        if got != want {
                            return Err(format!(
                                "cpu 1's CFGI_STE + SYNC completed with the old STE in use: {got:x?}, not {want:x?}"
                            ));
                        }
                        self.seen.ste_checked += 1;
                    }
                    if !self.cpus[i].owner {
                        self.seen.sync_by_other_prod += 1;
                    }
                    self.finish(i);
                } else if covered {
                    let cpu = &mut self.cpus[i];
                    cpu.polls += 1;
                    if cpu.polls > SYNC_POLLS {
                        return Err(format!(
                            "cpu {i}: CMD_SYNC at {sync_at} not complete after {} polls with PROD at {} (CONS {cons})",
                            cpu.polls, self.s.prod_reg
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Where CPU `i` goes once its entries are handed on: waiting for its SYNC, or done.
    fn after_prod(&mut self, i: usize) -> Phase {
        if self.cpus[i].batch.last() == Some(&Command::sync()) {
            Phase::WaitSync
        } else {
            self.cpus[i].batches += 1;
            Phase::Done
        }
    }

    fn finish(&mut self, i: usize) {
        self.cpus[i].batches += 1;
        self.cpus[i].phase = Phase::Done;
    }

    fn all_done(&self) -> bool {
        self.cpus.iter().all(|c| c.batches == BATCHES && c.phase == Phase::Done)
            && self.faults == FAULTS
    }

    /// Runs a whole schedule, then checks what reached the real SMMU.
    fn run(&mut self) -> Result<(), String> {
        let mut steps = 0u32;
        while !self.all_done() {
            steps += 1;
            if steps > 100_000 {
                return Err("no progress".into());
            }
            match self.rng.below(8) {
                // The device faults (the real SMMU records it; the service takes it on its
                // next entry).
                0 if self.faults < FAULTS => {
                    self.faults += 1;
                    self.w.io.regs_mut().post_event(fault(self.faults));
                }
                1 | 2 => self.ev_step()?,
                n => self.step(n as usize % 2)?,
            }
        }
        // The event thread finishes: every record the host was given is read.
        let mut guard = 0;
        self.ev_irq = true;
        while self.ev.phase != EvPhase::Idle || self.ev_irq {
            self.ev_step()?;
            guard += 1;
            if guard > 1000 {
                return Err("the event thread never finished".into());
            }
            if self.ev.phase == EvPhase::Idle && SmmuCalls::events_pending(&mut self.w.io, 0) {
                self.after_access(true);
            }
        }
        let discarded = self.w.v.counters.events_discarded;
        if self.ev.read + discarded != FAULTS {
            return Err(format!(
                "{FAULTS} faults: {} records read, {discarded} counted discarded",
                self.ev.read
            ));
        }
        if (discarded > 0) != (self.ev.overflows > 0) {
            return Err(format!(
                "{discarded} records discarded, {} overflows flagged",
                self.ev.overflows
            ));
        }
        self.seen.overflows += self.ev.overflows;
        // Whatever no SYNC waited for is consumed by now too.
        let c = self.cons()?;
        if c != self.s.prod_reg || self.s.prod_reg != self.s.prod {
            return Err(format!("left in the queue: CONS {c}, PROD {}", self.s.prod));
        }
        let vmid = HOST.vmid();
        let tlbi = Command::tlbi_nh_va(0, 0, 0).opcode_byte();
        let want: Vec<[u64; 2]> = self
            .s
            .written
            .iter()
            .map(|c| c.expect("every position written"))
            .filter(|c| c.opcode_byte() == tlbi)
            .map(|mut c| {
                cmd::VMID.set(&mut c.0, vmid as u64);
                c.0
            })
            .collect();
        let sent: Vec<[u64; 2]> = self.w.io.regs_mut().consumed[self.consumed_before..]
            .iter()
            .filter(|c| Command(**c).opcode_byte() == tlbi)
            .copied()
            .collect();
        if sent != want {
            return Err(format!(
                "the real SMMU got {} invalidations, not the {} the host queued, in order",
                sent.len(),
                want.len()
            ));
        }
        Ok(())
    }
}

fn schedules() -> u64 {
    std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

#[test]
fn two_host_cpus_on_linuxs_lock_free_command_queue_in_every_interleaving_tried() {
    let mut total = Seen::default();
    for seed in 0..schedules() {
        let mut m = Machine::new(seed);
        if let Err(e) = m.run() {
            panic!("schedule {seed}: {e}");
        }
        let s = m.seen;
        total.prod_for_other += s.prod_for_other;
        total.full += s.full;
        total.poll_during_write += s.poll_during_write;
        total.ste_checked += s.ste_checked;
        total.sync_by_other_prod += s.sync_by_other_prod;
        total.records_during_drain += s.records_during_drain;
        total.overflows += s.overflows;
    }
    std::println!("{total:?}");
    // Every interleaving this is about happened, many times.
    let Seen {
        prod_for_other,
        full,
        poll_during_write,
        ste_checked,
        sync_by_other_prod,
        records_during_drain,
        overflows,
    } = total;
    for (n, what) in [
        (prod_for_other, "PROD writes handing on the other CPU's entries"),
        (full, "full-queue polls"),
        (poll_during_write, "SYNC polls while the other CPU wrote entries"),
        (ste_checked, "STE rewrites checked after their SYNC"),
        (sync_by_other_prod, "SYNCs completed by the other CPU's PROD write"),
        (records_during_drain, "records written on a command CPU's access during a drain"),
        (overflows, "event-queue overflows acknowledged"),
    ] {
        assert!(n >= 20, "only {n} {what}");
    }
}

#[test]
fn positions_are_recovered_from_register_values_around_the_last_known_one() {
    assert_eq!(position(0, 0), 0);
    assert_eq!(position(3, 0), 3);
    assert_eq!(position(15, 17), 15);
    assert_eq!(position(1, 16), 17);
    assert_eq!(position(1, 30), 33, "across a lap");
    assert_eq!(position(15, 33), 31, "just behind");
}
