//! What one trapped access makes the emulated SMMU do with the host's command queue, decided
//! before anything is done. [`Plan::make`] reads the commands from CONS on, within the access's
//! budget ([`ACCESS_BUDGET`]), and writes down as data what to do with them:
//!
//! * runs of commands for the guests' INVALIDATE path ([`Step::Submit`]: each one batch with
//!   one real SYNC), as the host wrote them or as [`for_guest_path`] rewrites them;
//! * refreshes of the host's STEs ([`Step::Refresh`]): the streams the CFGI_STE* commands since
//!   the last refresh named, each once however many commands named it, before any later
//!   invalidation and before CONS moves;
//! * where the queue ends up ([`End`]): CONS past everything planned, or stopped on an illegal
//!   command (or an entry outside the host's RAM) with its CONS.ERR.
//!
//! The emulated SMMU then carries the plan out against the SMMU service, in order, and stops
//! early only if the service refuses a command of a submission (the queue then stops there).
//! Pure: the queue is read through [`Queue`], nothing else is touched, so the planning is
//! host-tested on its own.

use super::{for_guest_path, host_sync_ok, pass_through, translate, HostCommand};
use super::{ACCESS_BUDGET, REFRESH_COST, SEND_COST};
use crate::iommu::soft::MemFault;
use crate::vm::memory::GuestRange;
use alloc::vec;
use alloc::vec::Vec;
use host_abi::smmu::regs::cerror;
use host_abi::smmu::{cmd, Command, Opcode};
use host_abi::INVALIDATE_MAX;

/// The most commands one access looks at: each costs at least one unit of [`ACCESS_BUDGET`],
/// and none is looked at once the budget is spent.
pub const MAX_COMMANDS: usize = ACCESS_BUDGET as usize;

/// The most steps one plan holds. Every step but the last two costs at least [`SEND_COST`] of
/// the budget (a submission exactly that, a refresh at least [`REFRESH_COST`]), and planning
/// goes on only while the budget is not spent: at most `ACCESS_BUDGET / SEND_COST` steps
/// before the last look at the queue, two more in it (a refresh and a submission), and two at
/// the end (the last batch and the last refresh).
pub const MAX_STEPS: usize = (ACCESS_BUDGET / SEND_COST) as usize + 4;

const _: () = assert!(SEND_COST <= REFRESH_COST && SEND_COST > 0);
// A batch of INVALIDATE_MAX commands gathered means the budget is spent (see `Plan::make`).
const _: () = assert!(INVALIDATE_MAX >= ACCESS_BUDGET as u64);

/// The most stream refreshes one plan holds beyond one of each stream. A refresh planned before
/// a run costs [`REFRESH_COST`] a stream, and planning goes on after it only while the budget
/// is not spent: until then fewer than this many streams are refreshed. The refresh that spends
/// it ends the access (nothing is marked after it); otherwise the access ends with at most one
/// refresh of each stream.
const MAX_REFRESHES_BEFORE: usize = (ACCESS_BUDGET / REFRESH_COST) as usize;

/// The host's command queue, as the planner reads it.
pub trait Queue {
    /// Copies the commands from `k` entries after CONS on into `out`, as many as fit without
    /// going past the queue's end: `Some(Ok(n))` for `n` (at least one) commands, `Some(Err)`
    /// if the entry `k` after CONS is outside what the host may give, `None` if there is no
    /// command there (the queue is empty beyond `k`, disabled or stopped).
    fn fetch(&mut self, k: u32, out: &mut [Command]) -> Option<Result<usize, MemFault>>;
    /// How many commands the queue holds beyond the first `k` after CONS.
    fn after(&self, k: u32) -> u32;
    /// Every command from CONS up to PROD into `out`, if there are 1 to `out.len()`: `Ok(n)`.
    /// Otherwise `Err(m)`, the first `m` of them in `out` as [`Self::fetch`] from CONS would
    /// give them (0 for an empty queue or one holding more; the commands before the queue's
    /// end if they wrap round it; if an entry is out of reach, at most the ones before it).
    fn fetch_all(&mut self, out: &mut [Command]) -> Result<usize, usize>;
    /// Where a CMD_SYNC's MSI may be written at `addr`: four bytes, 4-byte aligned, in the
    /// host's own RAM (never the hypervisor's, a guest's, or the shadow CDs the hypervisor
    /// keeps in it); `None` if not.
    fn msi_target(&self, addr: u64) -> Option<GuestRange>;
}

/// A CMD_SYNC that completes with an MSI (CS = SIG_IRQ): `data` written at `addr` (checked with
/// [`Queue::msi_target`] when planned) once it and everything before it completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    /// The SYNC's entry after CONS.
    pub at: u16,
    /// MSIADDR's four bytes, checked ([`Queue::msi_target`]).
    pub range: GuestRange,
    /// MSIDATA.
    pub data: u32,
}

/// The MSI a host CMD_SYNC asks for: `Some((MSIADDR, MSIDATA))` if it is a CMD_SYNC with
/// CS = SIG_IRQ (which, with IDR0.MSI advertised, completes with that write and nothing else).
#[inline]
pub fn msi_of(c: &Command) -> Option<(u64, u32)> {
    (c.opcode_byte() == Opcode::Sync as u8 && c.field(cmd::SYNC_CS) == cmd::SYNC_CS_IRQ)
        .then(|| (c.field(cmd::SYNC_MSIADDR) << 2, c.field(cmd::SYNC_MSIDATA) as u32))
}

/// The most commands [`Plan::short`] takes: Linux's strict unmap writes one or a few
/// TLBI_NH_VAs and a CMD_SYNC per CMDQ_PROD write.
pub const SHORT_MAX: usize = 8;

/// The common access, recognised by [`Plan::short`]: the host's whole queue is `n` commands,
/// invalidations the guests' path takes as they are, the last possibly a CMD_SYNC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Short {
    /// The commands, the CMD_SYNC included: [`Plan::commands`]`()[..n]`, as the guests' path
    /// takes them (the SYNC made plain).
    pub n: u16,
    /// The SYNC's MSI, if it asks for one (its address checked, [`Queue::msi_target`]).
    pub msi: Option<Msi>,
    /// Whether the last command is a CMD_SYNC (otherwise every one is an invalidation).
    pub sync: bool,
}

impl Short {
    /// What was looked at: every command, and the host's CMD_SYNC if it wrote one.
    pub fn seen(&self) -> Seen {
        Seen { commands: self.n, syncs: self.sync as u16, budget_stop: false }
    }

    /// Whether there is anything to send: not for a CMD_SYNC alone.
    pub fn sends(&self) -> bool {
        self.n > self.sync as u16
    }
}

/// What the planner looked at, for the emulated SMMU's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Host commands looked at.
    pub commands: u16,
    /// Host CMD_SYNCs among them that go to the guests' path (completed after the real SYNC).
    pub syncs: u16,
    /// Planning stopped at the access budget with commands left in the queue.
    pub budget_stop: bool,
}

/// One thing to do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read the host STEs of the streams `refreshes()[from..to]` again and shadow each.
    Refresh {
        /// First index in [`Plan::refreshes`].
        from: u32,
        /// One past the last.
        to: u32,
    },
    /// Send `commands()[start..end]` on the guests' INVALIDATE path as one batch: the entries
    /// `start..end` after CONS. If it refuses one, the queue stops there and nothing after this
    /// step is done.
    Submit {
        /// First entry after CONS.
        start: u16,
        /// One past the last.
        end: u16,
        /// What had been looked at when it was planned: what the counters say if it is refused.
        seen: Seen,
    },
}

/// Where the host's queue ends up once every step is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// CONS moves past the first `consumed` entries: every command among them was done, every
    /// CMD_SYNC among them is complete.
    Advance {
        /// Entries consumed.
        consumed: u32,
    },
    /// The queue stops on the entry `at` after CONS (CONS moves to it), with CONS.ERR = `err`:
    /// CERROR_ILL for an illegal command `cmd`, CERROR_ABT for an entry outside the host's RAM
    /// (`cmd` then all zeros).
    Stop {
        /// Entries after CONS before the one it stops on.
        at: u32,
        /// CONS.ERR.
        err: u32,
        /// The command it stops on.
        cmd: Command,
    },
}

/// A run of commands gathered for one submission and not planned yet: `start..end`, of which
/// `n` were gathered (runs of CMD_SYNCs and prefetches alone between them are not: they are
/// plain CMD_SYNCs, which the guests' path drops).
#[derive(Clone, Copy)]
struct Gathered {
    start: usize,
    end: usize,
    n: usize,
}

/// The plan of one access, and the planner's memory (allocated once, for the host's streams).
pub struct Plan {
    /// The commands looked at, as they go to the guests' path: entry `k` after CONS at index
    /// `k` (16-byte aligned: whole commands per load/store pair when copied).
    cmds: Aligned<[Command; MAX_COMMANDS]>,
    steps: Vec<Step>,
    /// The streams of the [`Step::Refresh`] steps, in order.
    refreshes: Vec<u32>,
    end: End,
    /// Everything looked at.
    seen: Seen,
    /// The CMD_SYNCs looked at that complete with an MSI, in queue order.
    msis: Vec<Msi>,
    /// Streams marked for a refresh not planned yet: bit `i` for the `i`-th stream.
    dirty: Vec<u64>,
    /// Whether any bit of `dirty` is set.
    any_dirty: bool,
}

impl Plan {
    /// An empty plan for a host with `streams` streams.
    pub fn new(streams: usize) -> Self {
        Plan {
            cmds: Aligned([Command::default(); MAX_COMMANDS]),
            steps: Vec::with_capacity(MAX_STEPS),
            refreshes: Vec::with_capacity(MAX_REFRESHES_BEFORE + streams),
            end: End::Advance { consumed: 0 },
            seen: Seen::default(),
            msis: Vec::with_capacity(MAX_COMMANDS),
            dirty: vec![0; streams.div_ceil(64)],
            any_dirty: false,
        }
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The commands looked at, from CONS on, as the guests' path gets them.
    pub fn commands(&self) -> &[Command] {
        &self.cmds[..]
    }

    /// The streams the [`Step::Refresh`] steps name.
    pub fn refreshes(&self) -> &[u32] {
        &self.refreshes
    }

    /// The CMD_SYNCs looked at that complete with an MSI, in queue order (each write is due
    /// once its SYNC is done: before CONS passes it).
    pub fn msis(&self) -> &[Msi] {
        &self.msis
    }

    /// Where the queue ends up.
    pub fn end(&self) -> End {
        self.end
    }

    /// What was looked at.
    pub fn seen(&self) -> Seen {
        self.seen
    }

    /// Recognises the common access without planning it: the queue holds 1 to [`SHORT_MAX`]
    /// commands (all of them up to PROD, in one run before the queue's end), each an
    /// invalidation the guests' path takes as it is ([`pass_through`]) but the last, which may
    /// instead be a CMD_SYNC whose fields are legal and whose MSI, if it asks for one, has an
    /// address `q` accepts. [`Self::commands`]`()[..n]` then holds them as [`Self::make`] would
    /// (a SYNC made plain), and `make` would plan exactly this: one submission of all of them
    /// (nothing sent for a SYNC alone), the SYNC's MSI, CONS past them. `Err(m)` for anything
    /// else: the first `m` commands after CONS are in the command buffer as the queue holds
    /// them (nothing else was touched), and [`Self::make_after`] plans the access from there to
    /// the plan [`Self::make`] would make.
    #[inline]
    pub fn short(&mut self, q: &mut impl Queue) -> Result<Short, usize> {
        // More than it takes, or nothing: planned from CONS, as if never looked at (so the
        // planner's first run is not cut after SHORT_MAX commands). Across the queue's end:
        // what comes before it (the planner's own first fetch stops there too).
        let n = q.fetch_all(&mut self.cmds[..SHORT_MAX])?;
        let (last, invalidations) = self.cmds[..n].split_last_mut().ok_or(n)?;
        if !invalidations.iter().all(|c| pass_through(c.opcode_byte())) {
            return Err(n);
        }
        let sync = last.opcode_byte() == Opcode::Sync as u8;
        if !sync {
            return if pass_through(last.opcode_byte()) {
                Ok(Short { n: n as u16, msi: None, sync: false })
            } else {
                Err(n)
            };
        }
        if !host_sync_ok(last) {
            return Err(n);
        }
        let msi = match msi_of(last) {
            Some((addr, data)) => {
                Some(Msi { at: n as u16 - 1, range: q.msi_target(addr).ok_or(n)?, data })
            }
            None => None,
        };
        *last = Command::sync();
        Ok(Short { n: n as u16, msi, sync: true })
    }

    /// [`Self::make_after`] with nothing fetched yet.
    pub fn make(&mut self, streams: &[u32], q: &mut impl Queue) {
        self.make_after(streams, q, 0)
    }

    /// Plans one access to queue `q` of a host owning `streams` (in increasing order, as many as
    /// [`Plan::new`] was told): from CONS towards PROD, at most [`ACCESS_BUDGET`]'s worth of
    /// work, in units of one command looked at, [`SEND_COST`] per submission and
    /// [`REFRESH_COST`] per stream refreshed (a plan may end past the budget by the last
    /// submission and one refresh of each stream). Commands for the guests' path are gathered
    /// into one submission up to the next STE refresh, the queue's end or the end of the access;
    /// CFGI_STE* commands mark their streams, refreshed once each before the next invalidation
    /// and before CONS moves (a run of them coalesced, SYNCs and prefetches between them
    /// included); an illegal command stops the queue after what came before it.
    /// The first `fetched` commands after CONS (at most [`SHORT_MAX`]) are in the command buffer
    /// already, as the queue holds them ([`Self::short`]).
    pub fn make_after(&mut self, streams: &[u32], q: &mut impl Queue, fetched: usize) {
        self.steps.clear();
        self.refreshes.clear();
        self.msis.clear();
        // What was looked at (kept here rather than in `self` while planning: it is copied into
        // each submission).
        let mut seen = Seen::default();
        // Work planned, against ACCESS_BUDGET.
        let mut spent = 0u32;
        // Entries looked at (the next is `cmds[k]`), and fetched (`cmds[k..m]` not looked at).
        let (mut k, mut m) = (0usize, fetched.min(SHORT_MAX));
        let mut gathered: Option<Gathered> = None;
        loop {
            // What is left of the budget, in commands at most.
            let room = ACCESS_BUDGET.saturating_sub(spent) as usize;
            if room == 0 {
                seen.budget_stop = q.after(k as u32) > 0;
                break;
            }
            if k == m {
                // Each command looked at cost one unit: k <= spent, so room fits after k.
                let out = &mut self.cmds[k..];
                let n = room.min(out.len());
                match q.fetch(k as u32, &mut out[..n]) {
                    None => break,
                    Some(Ok(got)) => m = k + got,
                    // The queue entry is outside the host's RAM: abort on command fetch.
                    Some(Err(_)) => {
                        let end =
                            End::Stop { at: k as u32, err: cerror::ABT, cmd: Command::default() };
                        return self.finish(gathered, streams, seen, end);
                    }
                }
            }
            // No more commands than the budget has room for (refreshes and submissions since
            // the fetch took some).
            let (run, only_syncs) = self.pass_run(k, m.min(k + room), &mut seen, q);
            if run > 0 {
                seen.commands += run as u16;
                spent += run as u32;
                // Whether the queue is known to hold nothing after the run: the access ends
                // there (the next look at the queue would find nothing; it is saved).
                let mut drained = false;
                if !only_syncs {
                    // Refreshes asked for before these commands come first.
                    spent += self.plan_refresh(streams);
                    // Complete if a command that is not for the guests' path, or nothing, or
                    // the end of this access's work, follows.
                    let complete = k + run < m || spent >= ACCESS_BUDGET || {
                        drained = q.after((k + run) as u32) == 0;
                        drained
                    };
                    if gathered.is_none() && complete {
                        self.submit(k, k + run, seen);
                        spent += SEND_COST;
                    } else {
                        // Gathered with what came before or comes after (the queue's end).
                        for j in k..k + run {
                            let g = gathered.get_or_insert(Gathered { start: j, end: j, n: 0 });
                            g.end = j + 1;
                            g.n += 1;
                            if g.n == INVALIDATE_MAX as usize {
                                // As many commands looked at: the budget is spent and the
                                // access ends at the next look at it, whatever this costs.
                                self.submit(g.start, g.end, seen);
                                gathered = None;
                            }
                        }
                    }
                }
                // (A run of SYNCs and prefetches alone needs nothing sent: everything before it
                // is sent with a real SYNC, and CONS passes it only once the rest is done.)
                k += run;
                if drained {
                    break;
                }
                continue;
            }
            let c = self.cmds[k];
            seen.commands += 1;
            spent += 1;
            match translate(&c) {
                HostCommand::RefreshStes { first, count } => {
                    // In order: what was gathered before goes first.
                    if let Some(g) = gathered.take() {
                        self.submit(g.start, g.end, seen);
                        spent += SEND_COST;
                    }
                    self.mark(streams, first, count);
                }
                // `pass_run` took every command for the guests' path (`for_guest_path` agrees
                // with `translate`, which a test checks for every opcode): this one is illegal.
                _ => {
                    let end = End::Stop { at: k as u32, err: cerror::ILL, cmd: c };
                    return self.finish(gathered, streams, seen, end);
                }
            }
            k += 1;
        }
        self.finish(gathered, streams, seen, End::Advance { consumed: k as u32 })
    }

    /// Ends the plan: what was gathered is sent, the refreshes asked for are done, then `end`;
    /// `seen` is everything looked at.
    fn finish(&mut self, gathered: Option<Gathered>, streams: &[u32], seen: Seen, end: End) {
        if let Some(g) = gathered {
            self.submit(g.start, g.end, seen);
        }
        self.plan_refresh(streams);
        self.seen = seen;
        self.end = end;
    }

    /// Plans the submission of `cmds[start..end]`, once `seen` was looked at.
    fn submit(&mut self, start: usize, end: usize, seen: Seen) {
        self.steps.push(Step::Submit { start: start as u16, end: end as u16, seen });
    }

    /// How many of `cmds[from..to]` go to the guests' path, each made what [`for_guest_path`]
    /// says (host CMD_SYNCs counted in `seen`, those that complete with an MSI noted in
    /// [`Self::msis`] if `q` accepts their address: a SYNC whose MSI it refuses ends the run,
    /// and the queue stops on it), and whether they are all SYNCs (prefetches included):
    /// nothing to send.
    fn pass_run(
        &mut self,
        from: usize,
        to: usize,
        seen: &mut Seen,
        q: &impl Queue,
    ) -> (usize, bool) {
        let mut run = 0;
        let mut syncs = 0;
        // Commands that became a plain CMD_SYNC (SYNCs and prefetches).
        let mut to_sync = 0;
        for (k, c) in self.cmds[from..to].iter_mut().enumerate() {
            let op = c.opcode_byte();
            // Invalidations go as they are (the common case: nothing to rewrite).
            if !pass_through(op) {
                let Some(x) = for_guest_path(c) else { break };
                if let Some((addr, data)) = msi_of(c) {
                    let Some(range) = q.msi_target(addr) else { break };
                    self.msis.push(Msi { at: (from + k) as u16, range, data });
                }
                *c = x;
                syncs += (op == Opcode::Sync as u8) as u16;
                to_sync += (c.opcode_byte() == Opcode::Sync as u8) as usize;
            }
            run += 1;
        }
        seen.syncs += syncs;
        (run, to_sync == run)
    }

    /// Marks the streams in `first..first + count` (of `streams`) for a refresh.
    fn mark(&mut self, streams: &[u32], first: u32, count: u64) {
        let end = first as u64 + count;
        let lo = streams.partition_point(|&s| (s as u64) < first as u64);
        let hi = streams.partition_point(|&s| (s as u64) < end).max(lo);
        if lo == hi {
            return;
        }
        self.any_dirty = true;
        let mut i = lo;
        while i < hi {
            let (w, b) = (i / 64, i % 64);
            let n = (64 - b).min(hi - i);
            let bits = if n == 64 { u64::MAX } else { ((1u64 << n) - 1) << b };
            self.dirty[w] |= bits;
            i += n;
        }
    }

    /// Plans the refreshes marked so far, each stream once (in increasing order), and returns
    /// their cost against the access budget.
    #[inline]
    fn plan_refresh(&mut self, streams: &[u32]) -> u32 {
        if self.any_dirty {
            self.plan_marked(streams)
        } else {
            0
        }
    }

    /// [`Self::plan_refresh`] when some stream is marked (out of line: the common access has
    /// none).
    #[inline(never)]
    fn plan_marked(&mut self, streams: &[u32]) -> u32 {
        self.any_dirty = false;
        let from = self.refreshes.len();
        for w in 0..self.dirty.len() {
            let mut bits = core::mem::take(&mut self.dirty[w]);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.refreshes.push(streams[w * 64 + b]);
            }
        }
        let to = self.refreshes.len();
        self.steps.push(Step::Refresh { from: from as u32, to: to as u32 });
        (to - from) as u32 * REFRESH_COST
    }
}

/// 16-byte aligned (whole commands per load/store pair when copied).
#[repr(C, align(16))]
struct Aligned<T>(T);

impl<T> core::ops::Deref for Aligned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> core::ops::DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}
