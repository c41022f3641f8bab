//! The SMMUv3 driver: probe, boot sequence, stream table, command queue with batching, event
//! queue consumer and global-error handling.
//!
//! Registers are reached through [`SmmuRegs`]; tables and queues live in memory the driver
//! allocates ([`DmaBuf`]: hypervisor memory, identity-mapped, so the address the SMMU is given is
//! the address the CPU uses). Both are the same on the host, where `tests` drive the driver
//! against a small software SMMU.

use super::queue::{self, QueuePtr};
use super::regs::{self, cerror, cr0, gerror, off, strtab_cfg, Idr0, Idr1, Idr5};
use super::{set_global_abort, Gbpa, SmmuError, SmmuRegs};
use alloc::alloc::{alloc_zeroed, Layout};
use core::ptr::NonNull;
use host_abi::smmu::Command;

/// 16-byte command queue entry (host_abi::smmu::Command), as two little-endian words.
pub type CmdWords = [u64; 2];
/// 64-byte stream table entry, as eight words.
pub type SteWords = [u64; 8];
/// 32-byte event record, as four words.
pub type EventWords = [u64; 4];

/// A zeroed, aligned buffer in hypervisor memory that the SMMU reads or writes. Never freed:
/// tables and queues live as long as the SMMU may use them.
#[derive(Debug)]
pub struct DmaBuf {
    ptr: NonNull<u64>,
    len_words: usize,
}

// SAFETY: the buffer is exclusively owned by the driver (which is itself behind a lock); the
// only other party touching it is the SMMU.
unsafe impl Send for DmaBuf {}

impl DmaBuf {
    /// `bytes` zeroed bytes aligned to `align` (a power of two, at least 8).
    pub fn new(bytes: usize, align: usize) -> Option<Self> {
        let layout = Layout::from_size_align(bytes, align.max(8)).ok()?;
        // SAFETY: the layout has a non-zero size (callers never ask for 0 bytes: checked).
        let p = (bytes > 0).then(|| unsafe { alloc_zeroed(layout) })?;
        Some(Self { ptr: NonNull::new(p.cast())?, len_words: bytes / 8 })
    }

    /// The address given to the SMMU (identity-mapped hypervisor memory).
    pub fn pa(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Reads word `i` (the SMMU may write it concurrently: volatile).
    pub fn read(&self, i: usize) -> u64 {
        assert!(i < self.len_words);
        // SAFETY: in bounds (checked), aligned, owned by us.
        unsafe { self.ptr.as_ptr().add(i).read_volatile() }
    }

    /// Writes word `i` (the SMMU may read it concurrently: volatile, single 64-bit store).
    pub fn write(&mut self, i: usize, v: u64) {
        assert!(i < self.len_words);
        // SAFETY: in bounds (checked), aligned, owned by us.
        unsafe { self.ptr.as_ptr().add(i).write_volatile(v) }
    }

    /// Writes the 16-byte entry at word `i` (one bounds check for both words: the command
    /// queue's hot loop).
    pub fn write_pair(&mut self, i: usize, v: [u64; 2]) {
        assert!(i + 1 < self.len_words);
        // SAFETY: both words in bounds (checked), aligned, owned by us.
        unsafe {
            let p = self.ptr.as_ptr().add(i);
            p.write_volatile(v[0]);
            p.add(1).write_volatile(v[1]);
        }
    }
}

/// Why the SMMU cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// IDR0.TTF has no AArch64 translation tables.
    NoAArch64Tables,
    /// No stage-2 (IDR0.S2P = 0): the hypervisor cannot confine devices.
    NoStage2,
    /// No stage-1 (IDR0.S1P = 0) but nesting is needed.
    NoNesting,
    /// No 4 KiB granule (IDR5.GRAN4K = 0).
    No4kGranule,
    /// The platform's stream IDs do not fit IDR1.SIDSIZE.
    StreamIdTooLarge {
        /// Largest stream ID needed.
        needed: u32,
        /// IDR1.SIDSIZE.
        sidsize: u32,
    },
    /// Tables or queues at fixed addresses (IDR1 presets) are not supported.
    Preset,
    /// The heap could not hold the tables and queues.
    OutOfMemory,
    /// GBPA or CR0 did not acknowledge.
    Hardware(SmmuError),
    /// CR0ACK did not follow CR0.
    Cr0AckTimeout,
    /// A boot command failed.
    Command(CmdError),
    /// The SMMU lost power while being programmed (its registers went back to reset values).
    PowerLost,
}

impl core::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProbeError::NoAArch64Tables => f.write_str("SMMU has no AArch64 translation tables"),
            ProbeError::NoStage2 => f.write_str("SMMU has no stage-2: devices cannot be confined"),
            ProbeError::NoNesting => f.write_str("SMMU has no stage-1: nesting is impossible"),
            ProbeError::No4kGranule => f.write_str("SMMU has no 4 KiB granule"),
            ProbeError::StreamIdTooLarge { needed, sidsize } => {
                write!(f, "stream ID {needed:#x} needs more than the SMMU's {sidsize} SID bits")
            }
            ProbeError::Preset => f.write_str("SMMU with preset table/queue addresses"),
            ProbeError::OutOfMemory => f.write_str("no memory for SMMU tables and queues"),
            ProbeError::Hardware(e) => write!(f, "{e}"),
            ProbeError::Cr0AckTimeout => f.write_str("SMMU_CR0ACK did not follow SMMU_CR0"),
            ProbeError::Command(e) => write!(f, "boot command failed: {e}"),
            ProbeError::PowerLost => f.write_str("SMMU lost power while being programmed"),
        }
    }
}

/// Why a command batch failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdError {
    /// The SMMU rejected the command at this index of the batch (CMDQ_CONS.ERR); it was replaced
    /// by a CMD_SYNC and the queue restarted.
    Rejected {
        /// Index in the batch (the batch's final SYNC has index `len`).
        index: usize,
        /// CMDQ_CONS.ERR.
        reason: u32,
    },
    /// CONS did not pass the batch's SYNC in time.
    Timeout,
    /// The batch is larger than the queue can take at once.
    TooLarge,
}

impl core::fmt::Display for CmdError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CmdError::Rejected { index, reason } => {
                let why = match *reason {
                    cerror::ILL => "illegal command",
                    cerror::ABT => "abort on command fetch",
                    cerror::ATC_INV_SYNC => "ATC invalidation timeout",
                    _ => "unknown error",
                };
                write!(f, "command {index} rejected by the SMMU: {why} ({reason})")
            }
            CmdError::Timeout => f.write_str("command queue did not drain in time"),
            CmdError::TooLarge => f.write_str("command batch larger than the queue"),
        }
    }
}

/// Features the driver relies on, read from the ID registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// IDR0.
    pub idr0: Idr0,
    /// IDR1.
    pub idr1: Idr1,
    /// IDR5.
    pub idr5: Idr5,
}

impl Features {
    /// Reads and checks the ID registers: AArch64 tables, stage 2, 4 KiB granule, enough SID
    /// bits for `max_sid`, and stage 1 if `need_nesting`.
    pub fn probe(
        regs: &mut dyn SmmuRegs,
        max_sid: u32,
        need_nesting: bool,
    ) -> Result<Features, ProbeError> {
        let f = Features {
            idr0: Idr0(regs.read32(off::IDR0)),
            idr1: Idr1(regs.read32(off::IDR1)),
            idr5: Idr5(regs.read32(off::IDR5)),
        };
        if !f.idr0.aarch64_tables() {
            return Err(ProbeError::NoAArch64Tables);
        }
        if !f.idr0.s2p() {
            return Err(ProbeError::NoStage2);
        }
        if need_nesting && !f.idr0.s1p() {
            return Err(ProbeError::NoNesting);
        }
        if !f.idr5.gran4k() {
            return Err(ProbeError::No4kGranule);
        }
        let sidsize = f.idr1.sidsize();
        if sidsize < 32 && max_sid >> sidsize != 0 {
            return Err(ProbeError::StreamIdTooLarge { needed: max_sid, sidsize });
        }
        if f.idr1.preset() {
            return Err(ProbeError::Preset);
        }
        Ok(f)
    }
}

/// log2 of the number of STEs in one level-2 table of a two-level stream table.
pub const STRTAB_SPLIT: u32 = 8;
/// A linear stream table is used up to this many SID bits (256 STEs, 16 KiB).
pub const LINEAR_MAX_BITS: u32 = 8;
/// Command queue: 2^9 entries (8 KiB): room for the largest VM batch plus its SYNC.
pub const CMDQ_LOG2: u32 = 9;
/// Event queue: 2^7 entries (4 KiB).
pub const EVTQ_LOG2: u32 = 7;
/// Resume attempts when power is lost again during resume.
pub const RESUME_ATTEMPTS: u32 = 3;
/// Polls of CONS/CR0ACK before giving up.
pub const POLL_LIMIT: u32 = 10_000_000;

/// The STE that aborts every transaction without recording an event: V = 1, Config = abort.
pub const STE_ABORT: SteWords = [1, 0, 0, 0, 0, 0, 0, 0];

/// The stream table, linear or two-level.
#[derive(Debug)]
pub enum StreamTable {
    /// `2^bits` STEs in one buffer.
    Linear {
        /// The table.
        table: DmaBuf,
        /// SID bits covered.
        bits: u32,
    },
    /// Level-1 descriptors, each pointing at a level-2 table of `2^STRTAB_SPLIT` STEs allocated
    /// when a stream in its span is first assigned.
    TwoLevel {
        /// Level-1 descriptors.
        l1: DmaBuf,
        /// Level-2 tables, by level-1 index.
        l2: alloc::vec::Vec<Option<DmaBuf>>,
        /// SID bits covered.
        bits: u32,
    },
}

/// Counters readable by VMs and the benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Commands written to the queue (SYNCs included).
    pub commands: u64,
    /// CMD_SYNCs written.
    pub syncs: u64,
    /// 64-bit STE word writes.
    pub ste_writes: u64,
    /// Events taken off the event queue.
    pub events: u64,
    /// Commands the SMMU rejected.
    pub command_errors: u64,
}

/// The driver.
pub struct Smmu<R: SmmuRegs> {
    regs: R,
    /// What the hardware offers.
    pub features: Features,
    strtab: StreamTable,
    cmdq: DmaBuf,
    cmdq_prod: QueuePtr,
    evtq: DmaBuf,
    /// Counters.
    pub counters: Counters,
    /// Polls of CONS before a batch times out (the host model, which consumes synchronously,
    /// lowers it).
    pub poll_limit: u32,
}

impl<R: SmmuRegs> Smmu<R> {
    /// Probes and brings the SMMU up: GBPA.ABORT, SMMU off, every STE abort, queues, invalidate
    /// all configuration and TLB caches, event queue on, then SMMUEN. No stream can translate
    /// until an STE is installed for it.
    pub fn init(mut regs: R, max_sid: u32, need_nesting: bool) -> Result<Self, ProbeError> {
        set_global_abort(&mut regs).map_err(ProbeError::Hardware)?;
        let features = Features::probe(&mut regs, max_sid, need_nesting)?;
        // Everything off (translation falls back to GBPA: abort).
        write_cr0(&mut regs, 0)?;

        let bits = (32 - max_sid.leading_zeros()).max(1);
        let two_level = bits > LINEAR_MAX_BITS && features.idr0.two_level_strtab();
        let strtab = if two_level {
            let n = 1usize << (bits - STRTAB_SPLIT);
            let l1 = DmaBuf::new(n * 8, (n * 8).max(64)).ok_or(ProbeError::OutOfMemory)?;
            let l2 = (0..n).map(|_| None).collect();
            StreamTable::TwoLevel { l1, l2, bits }
        } else {
            let bytes = 64usize << bits;
            let mut table = DmaBuf::new(bytes, bytes).ok_or(ProbeError::OutOfMemory)?;
            for sid in 0..1usize << bits {
                table.write(sid * 8, STE_ABORT[0]);
            }
            StreamTable::Linear { table, bits }
        };
        let cmdq_log2 = CMDQ_LOG2.min(features.idr1.cmdqs());
        let evtq_log2 = EVTQ_LOG2.min(features.idr1.eventqs());
        let cmdq = DmaBuf::new(16 << cmdq_log2, 16 << cmdq_log2).ok_or(ProbeError::OutOfMemory)?;
        let evtq = DmaBuf::new(32 << evtq_log2, 32 << evtq_log2).ok_or(ProbeError::OutOfMemory)?;
        let mut smmu = Smmu {
            regs,
            features,
            strtab,
            cmdq_prod: QueuePtr::new(cmdq_log2, 0),
            cmdq,
            evtq,
            counters: Counters::default(),
            poll_limit: POLL_LIMIT,
        };
        smmu.program_and_enable()?;
        Ok(smmu)
    }

    /// Points the (disabled) SMMU at the hypervisor's own tables and queues, invalidates every
    /// configuration and TLB cache, then enables the event queue and translation. Used at boot
    /// and on resume: its cost does not depend on the number of streams or mappings.
    fn program_and_enable(&mut self) -> Result<(), ProbeError> {
        let (base, cfg) = match &self.strtab {
            StreamTable::Linear { table, bits } => {
                (table.pa(), strtab_cfg::FMT_LINEAR | strtab_cfg::log2size(*bits))
            }
            StreamTable::TwoLevel { l1, bits, .. } => (
                l1.pa(),
                strtab_cfg::FMT_2LVL
                    | strtab_cfg::split(STRTAB_SPLIT)
                    | strtab_cfg::log2size(*bits),
            ),
        };
        let regs = &mut self.regs;
        regs.write64(off::STRTAB_BASE, regs::BASE_RA | (base & regs::BASE_ADDR_MASK));
        regs.write32(off::STRTAB_BASE_CFG, cfg);
        let cmdq_log2 = self.cmdq_prod.capacity().trailing_zeros();
        let evtq_log2 = self.evtq.len_words.trailing_zeros() - 2;
        regs.write64(
            off::CMDQ_BASE,
            regs::BASE_RA | (self.cmdq.pa() & regs::BASE_ADDR_MASK) | cmdq_log2 as u64,
        );
        regs.write32(off::CMDQ_PROD, 0);
        regs.write32(off::CMDQ_CONS, 0);
        regs.write64(
            off::EVTQ_BASE,
            regs::BASE_RA | (self.evtq.pa() & regs::BASE_ADDR_MASK) | evtq_log2 as u64,
        );
        regs.write32(off::EVTQ_PROD, 0);
        regs.write32(off::EVTQ_CONS, 0);
        regs.write32(off::CR1, regs::CR1_WB_ISH);
        // CR2: RECINVSID (record C_BAD_STREAMID), PTM (ignore broadcast TLB maintenance: the
        // hypervisor invalidates through the command queue only).
        regs.write32(off::CR2, (1 << 1) | (1 << 2));
        // Interrupts stay off: the driver polls (GERROR on every batch, events on request).
        regs.write32(off::IRQ_CTRL, 0);
        self.cmdq_prod = QueuePtr::new(cmdq_log2, 0);
        write_cr0(&mut self.regs, cr0::CMDQEN)?;
        self.submit(&[
            Command::cfgi_all().0,
            Command::tlbi_nsnh_all().0,
            Command::tlbi_el2_all().0,
        ])
        .map_err(ProbeError::Command)?;
        write_cr0(&mut self.regs, cr0::CMDQEN | cr0::EVENTQEN)?;
        // A power loss in the middle of this sequence would leave registers at reset values
        // that the rest of it does not rewrite: check everything is still ours before
        // enabling translation, and again right after.
        if !self.programmed(base, cfg) {
            return Err(ProbeError::PowerLost);
        }
        write_cr0(&mut self.regs, cr0::CMDQEN | cr0::EVENTQEN | cr0::SMMUEN)?;
        if !self.programmed(base, cfg) {
            write_cr0(&mut self.regs, 0)?;
            return Err(ProbeError::PowerLost);
        }
        Ok(())
    }

    /// Whether the registers still hold the tables and queues this driver programmed, with
    /// GBPA.ABORT set.
    fn programmed(&mut self, strtab: u64, cfg: u32) -> bool {
        let mask = regs::BASE_ADDR_MASK;
        self.regs.read64(off::STRTAB_BASE) & mask == strtab & mask
            && self.regs.read32(off::STRTAB_BASE_CFG) == cfg
            && self.regs.read64(off::CMDQ_BASE) & mask == self.cmdq.pa() & mask
            && self.regs.read64(off::EVTQ_BASE) & mask == self.evtq.pa() & mask
            && Gbpa(self.regs.read32(off::GBPA)).abort()
    }

    /// Quiesces the SMMU before its power domain goes off: completes every queued command
    /// (one SYNC), leaves the event queue to the caller (drain it first), then GBPA.ABORT with
    /// the UPDATE handshake, and only then SMMUEN = 0 with the queues and interrupts off. At no
    /// point between these writes can a transaction bypass translation.
    pub fn suspend(&mut self) -> Result<(), ProbeError> {
        self.submit(&[]).map_err(ProbeError::Command)?;
        set_global_abort(&mut self.regs).map_err(ProbeError::Hardware)?;
        write_cr0(&mut self.regs, 0)?;
        self.regs.write32(off::IRQ_CTRL, 0);
        Ok(())
    }

    /// Brings the SMMU back after power-on (expected or not): the first write is GBPA.ABORT
    /// (the reset value may be bypass), then tables and queues from the hypervisor's own copies,
    /// CFGI_ALL + TLBI of every regime + SYNC, and SMMUEN last.
    pub fn resume(&mut self) -> Result<(), ProbeError> {
        // Power may be lost again while we program it: start over (bounded).
        let mut last = ProbeError::PowerLost;
        for _ in 0..RESUME_ATTEMPTS {
            let r = set_global_abort(&mut self.regs)
                .map_err(ProbeError::Hardware)
                .and_then(|_| write_cr0(&mut self.regs, 0))
                .and_then(|_| self.program_and_enable());
            match r {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Whether the SMMU still holds the configuration the driver gave it (SMMUEN and both
    /// queues enabled). False after an unexpected power loss: registers are back at reset.
    pub fn configured(&mut self) -> bool {
        self.regs.read32(off::CR0) & (cr0::SMMUEN | cr0::CMDQEN | cr0::EVENTQEN)
            == cr0::SMMUEN | cr0::CMDQEN | cr0::EVENTQEN
    }

    /// The register interface (the power domain needs it; tests play the hardware with it).
    pub(crate) fn regs_mut(&mut self) -> &mut R {
        &mut self.regs
    }

    /// SID bits the stream table covers.
    pub fn sid_bits(&self) -> u32 {
        match &self.strtab {
            StreamTable::Linear { bits, .. } | StreamTable::TwoLevel { bits, .. } => *bits,
        }
    }

    /// Whether the stream table is two-level.
    pub fn is_two_level(&self) -> bool {
        matches!(self.strtab, StreamTable::TwoLevel { .. })
    }

    /// Submits `cmds` plus one CMD_SYNC as one batch and waits until the SYNC is consumed.
    /// A command the SMMU rejects is replaced by a CMD_SYNC (harmless), the error acknowledged
    /// and reported; the queue keeps working. No heap allocation.
    pub fn submit(&mut self, cmds: &[CmdWords]) -> Result<(), CmdError> {
        let n = cmds.len() as u32 + 1;
        if n > self.cmdq_prod.capacity() {
            return Err(CmdError::TooLarge);
        }
        let start = self.cmdq_prod;
        // Wait for room.
        let mut polls = 0;
        while queue::space(self.cmdq_prod, self.cons()) < n {
            polls += 1;
            if polls > self.poll_limit {
                return Err(CmdError::Timeout);
            }
        }
        let mut p = self.cmdq_prod;
        for c in cmds {
            self.cmdq.write_pair(p.index() as usize * 2, *c);
            p = p.advance(1);
        }
        self.cmdq.write_pair(p.index() as usize * 2, Command::sync().0);
        p = p.advance(1);
        self.counters.commands += n as u64;
        self.counters.syncs += 1;
        self.cmdq_prod = p;
        self.regs.write32(off::CMDQ_PROD, p.raw());
        self.wait_consumed(start, p)
    }

    fn cons(&mut self) -> QueuePtr {
        QueuePtr::new(self.cmdq_prod_log2(), self.regs.read32(off::CMDQ_CONS))
    }

    fn cmdq_prod_log2(&self) -> u32 {
        self.cmdq_prod.capacity().trailing_zeros()
    }

    fn wait_consumed(&mut self, start: QueuePtr, target: QueuePtr) -> Result<(), CmdError> {
        let mut first_error = None;
        for _ in 0..self.poll_limit {
            let raw = self.regs.read32(off::CMDQ_CONS);
            let cons = QueuePtr::new(self.cmdq_prod_log2(), raw);
            let gerror = self.regs.read32(off::GERROR);
            let gerrorn = self.regs.read32(off::GERRORN);
            let active = gerror ^ gerrorn;
            if active & gerror::CMDQ_ERR != 0 {
                // CONS points at the offending command: neutralise it and restart the queue.
                let index = queue::used(cons, start) as usize;
                let reason = regs::cmdq_cons_err(raw);
                let slot = cons.index() as usize * 2;
                let sync = Command::sync().0;
                self.cmdq.write(slot, sync[0]);
                self.cmdq.write(slot + 1, sync[1]);
                self.counters.command_errors += 1;
                first_error.get_or_insert(CmdError::Rejected { index, reason });
                self.regs.write32(off::GERRORN, gerrorn ^ gerror::CMDQ_ERR);
                continue;
            }
            if queue::reached(cons, target, target) {
                return first_error.map_or(Ok(()), Err);
            }
        }
        Err(CmdError::Timeout)
    }

    /// Where STE `sid` lives: (buffer, word index), allocating its level-2 table (all abort) if
    /// `allocate`; `None` if the SID is outside the table or its level-2 table does not exist.
    fn ste_slot(&mut self, sid: u32, allocate: bool) -> Option<(&mut DmaBuf, usize)> {
        match &mut self.strtab {
            StreamTable::Linear { table, bits } => {
                (sid >> *bits == 0).then_some((table, sid as usize * 8))
            }
            StreamTable::TwoLevel { l1, l2, bits } => {
                if sid >> *bits != 0 {
                    return None;
                }
                let i = (sid >> STRTAB_SPLIT) as usize;
                if l2[i].is_none() {
                    if !allocate {
                        return None;
                    }
                    let bytes = 64usize << STRTAB_SPLIT;
                    let mut t = DmaBuf::new(bytes, bytes)?;
                    for s in 0..1usize << STRTAB_SPLIT {
                        t.write(s * 8, STE_ABORT[0]);
                    }
                    // L1STD: SPAN (bits 4:0) = SPLIT + 1, L2Ptr (bits 51:6).
                    l1.write(
                        i,
                        (t.pa() & regs::BASE_ADDR_MASK & !0x3f) | (STRTAB_SPLIT as u64 + 1),
                    );
                    l2[i] = Some(t);
                }
                let t = l2[i].as_mut()?;
                Some((t, (sid as usize & ((1 << STRTAB_SPLIT) - 1)) * 8))
            }
        }
    }

    /// Makes sure `sid`'s STE exists (its level-2 table allocated, all abort) and the SMMU has
    /// no stale view of it. Returns false if the SID is outside the table.
    pub fn prepare_stream(&mut self, sid: u32) -> Result<bool, CmdError> {
        let existed = self.ste_slot(sid, false).is_some();
        if self.ste_slot(sid, true).is_none() {
            return Ok(false);
        }
        if !existed {
            // A new level-1 descriptor: drop any cached "invalid" view of the span.
            self.submit(&[Command::cfgi_ste(sid).0])?;
        }
        Ok(true)
    }

    /// Like [`Smmu::prepare_stream`] while the SMMU is powered off: allocates the level-2
    /// table without invalidating (nothing is cached; resume invalidates everything).
    pub fn prepare_stream_offline(&mut self, sid: u32) -> bool {
        self.ste_slot(sid, true).is_some()
    }

    /// Reads STE `sid` (abort if it has no level-2 table).
    pub fn read_ste(&mut self, sid: u32) -> SteWords {
        let mut out = STE_ABORT;
        if let Some((buf, base)) = self.ste_slot(sid, false) {
            for (w, o) in out.iter_mut().enumerate() {
                *o = buf.read(base + w);
            }
        }
        out
    }

    /// Writes word `word` of STE `sid` (one 64-bit store). The caller orders these writes and
    /// the CFGI_STE + SYNC between them so the update is hitless.
    pub fn write_ste_word(&mut self, sid: u32, word: usize, value: u64) -> bool {
        let Some((buf, base)) = self.ste_slot(sid, false) else {
            return false;
        };
        buf.write(base + word, value);
        self.counters.ste_writes += 1;
        true
    }

    /// Takes every pending event record off the event queue, oldest first.
    pub fn drain_events(&mut self, mut f: impl FnMut(EventWords)) -> u32 {
        let log2 = self.evtq.len_words.trailing_zeros() - 2; // 4 words per record
        let mut cons = QueuePtr::new(log2, self.regs.read32(off::EVTQ_CONS));
        let prod = QueuePtr::new(log2, self.regs.read32(off::EVTQ_PROD));
        let mut n = 0;
        while queue::used(prod, cons) != 0 {
            let i = cons.index() as usize * 4;
            f([
                self.evtq.read(i),
                self.evtq.read(i + 1),
                self.evtq.read(i + 2),
                self.evtq.read(i + 3),
            ]);
            cons = cons.advance(1);
            self.regs.write32(off::EVTQ_CONS, cons.raw());
            n += 1;
        }
        self.counters.events += n as u64;
        n
    }

    /// Global errors raised and not yet acknowledged (GERROR ^ GERRORN).
    pub fn active_global_errors(&mut self) -> u32 {
        (self.regs.read32(off::GERROR) ^ self.regs.read32(off::GERRORN)) & gerror::ALL
    }

    /// Acknowledges global errors `bits`.
    pub fn ack_global_errors(&mut self, bits: u32) {
        let n = self.regs.read32(off::GERRORN);
        self.regs.write32(off::GERRORN, n ^ bits);
    }
}

fn write_cr0(regs: &mut dyn SmmuRegs, value: u32) -> Result<(), ProbeError> {
    regs.write32(off::CR0, value);
    for _ in 0..POLL_LIMIT {
        if regs.read32(off::CR0ACK) == value {
            return Ok(());
        }
    }
    Err(ProbeError::Cr0AckTimeout)
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeSmmu;
    use super::super::Gbpa;
    use super::*;

    fn position(f: &FakeSmmu, o: usize, v: Option<u32>) -> usize {
        f.writes.iter().position(|&(ro, rv)| ro == o && v.is_none_or(|v| v == rv)).unwrap()
    }

    #[test]
    fn boot_order_is_abort_tables_invalidate_then_enable() {
        let mut fake = FakeSmmu::qemu();
        let smmu = Smmu::init(&mut fake, 0x20, true).unwrap();
        assert!(!smmu.is_two_level());
        assert_eq!(smmu.sid_bits(), 6);
        drop(smmu);
        // GBPA.ABORT with UPDATE comes first of all writes.
        assert_eq!(fake.writes[0], (off::GBPA, 0x8010_1000));
        let cr0_off = position(&fake, off::CR0, Some(0));
        let strtab = position(&fake, off::STRTAB_BASE, None);
        let cmdqen = position(&fake, off::CR0, Some(cr0::CMDQEN));
        let smmuen = position(&fake, off::CR0, Some(cr0::CMDQEN | cr0::EVENTQEN | cr0::SMMUEN));
        assert!(cr0_off < strtab && strtab < cmdqen && cmdqen < smmuen);
        // Before SMMUEN: CFGI_ALL, TLBI_NSNH_ALL, TLBI_EL2_ALL and one SYNC.
        assert_eq!(fake.opcodes(), [0x04, 0x30, 0x20, 0x46]);
        assert_eq!(fake.consumed[0][1] & 0x1f, 31, "CFGI_ALL covers every SID");
    }

    #[test]
    fn every_ste_starts_as_abort() {
        let mut fake = FakeSmmu::qemu();
        let mut smmu = Smmu::init(&mut fake, 0x20, true).unwrap();
        for sid in 0..64 {
            assert_eq!(smmu.read_ste(sid), STE_ABORT);
        }
        assert!(!smmu.write_ste_word(64, 0, 0), "outside the table");
    }

    #[test]
    fn a_batch_costs_n_plus_one_entries_and_one_sync() {
        let mut fake = FakeSmmu::qemu();
        let mut smmu = Smmu::init(&mut fake, 0x20, true).unwrap();
        let before = smmu.counters;
        smmu.submit(&[
            Command::cfgi_ste(0x10).0,
            Command::cfgi_ste(0x18).0,
            Command::tlbi_nsnh_all().0,
        ])
        .unwrap();
        assert_eq!(smmu.counters.commands - before.commands, 4);
        assert_eq!(smmu.counters.syncs - before.syncs, 1);
        drop(smmu);
        assert_eq!(&fake.opcodes()[4..], [0x03, 0x03, 0x30, 0x46]);
    }

    #[test]
    fn a_rejected_command_is_reported_skipped_and_the_queue_keeps_working() {
        let mut fake = FakeSmmu::qemu();
        let mut smmu = Smmu::init(&mut fake, 0x20, true).unwrap();
        let r = smmu.submit(&[Command::cfgi_ste(1).0, [0xff, 0], Command::cfgi_ste(2).0]);
        assert_eq!(r, Err(CmdError::Rejected { index: 1, reason: cerror::ILL }));
        assert_eq!(smmu.counters.command_errors, 1);
        assert_eq!(smmu.active_global_errors(), 0, "acknowledged");
        smmu.submit(&[Command::cfgi_ste(3).0]).unwrap();
        drop(smmu);
        // The bad command became a SYNC; everything after it ran.
        assert_eq!(&fake.opcodes()[4..], [0x03, 0x46, 0x03, 0x46, 0x03, 0x46]);
    }

    #[test]
    fn large_stream_id_spaces_use_two_levels_allocated_on_demand() {
        let mut fake = FakeSmmu::qemu();
        let mut smmu = Smmu::init(&mut fake, 0x3ff, true).unwrap();
        assert!(smmu.is_two_level());
        assert!(!smmu.write_ste_word(0x123, 0, 1), "no level-2 table yet");
        assert_eq!(smmu.prepare_stream(0x123), Ok(true));
        assert_eq!(smmu.read_ste(0x123), STE_ABORT);
        assert!(smmu.write_ste_word(0x123, 1, 0xabc));
        assert_eq!(smmu.read_ste(0x123)[1], 0xabc);
        assert_eq!(smmu.prepare_stream(0x400), Ok(false));
        drop(smmu);
        let cfg = fake.regs[&off::STRTAB_BASE_CFG];
        assert_eq!(cfg, strtab_cfg::FMT_2LVL | strtab_cfg::split(8) | 10);
    }

    #[test]
    fn suspend_aborts_before_disabling_and_resume_writes_gbpa_first() {
        let mut fake = FakeSmmu::qemu();
        let mut smmu = Smmu::init(&mut fake, 0x20, true).unwrap();
        assert!(smmu.write_ste_word(0x18, 1, 0x1234));
        assert!(smmu.configured());
        smmu.suspend().unwrap();
        assert!(!smmu.configured());
        let n = {
            let f = &mut **smmu.regs_mut();
            let gbpa = f.writes.iter().rposition(|w| w.0 == off::GBPA).unwrap();
            let cr0 = f.writes.iter().rposition(|w| *w == (off::CR0, 0)).unwrap();
            assert!(gbpa < cr0, "GBPA.ABORT must be in place before SMMUEN = 0");
            assert_eq!(f.writes[gbpa].1 & Gbpa::ABORT, Gbpa::ABORT);
            assert_eq!(f.regs[&off::GBPA] & Gbpa::ABORT, Gbpa::ABORT);
            // Power is lost; the platform's GBPA reset value is bypass (0).
            f.power_loss(0);
            f.writes.len()
        };
        smmu.resume().unwrap();
        assert!(smmu.configured());
        assert_eq!(smmu.read_ste(0x18)[1], 0x1234, "STEs live in hypervisor memory");
        drop(smmu);
        let after = &fake.writes[n..];
        assert_eq!(after[0].0, off::GBPA, "first write after power-on is GBPA");
        assert_eq!(after[0].1, Gbpa::UPDATE | Gbpa::ABORT);
        let smmuen = after.iter().position(|w| w.0 == off::CR0 && w.1 & cr0::SMMUEN != 0).unwrap();
        let base = after.iter().position(|w| w.0 == off::STRTAB_BASE).unwrap();
        assert!(base < smmuen);
        // After resume: CFGI_ALL, TLBI_NSNH_ALL, TLBI_EL2_ALL, SYNC before SMMUEN.
        let ops = fake.opcodes();
        assert_eq!(&ops[ops.len() - 4..], [0x04, 0x30, 0x20, 0x46]);
    }

    #[test]
    fn probe_refuses_what_cannot_confine_devices() {
        let mut f = FakeSmmu::qemu();
        f.regs.insert(off::IDR0, 0x0d44_101a); // no S2P
        assert_eq!(Features::probe(&mut f, 0x20, true), Err(ProbeError::NoStage2));
        f.regs.insert(off::IDR0, 0x0d44_1019); // S2P but no S1P
        assert_eq!(Features::probe(&mut f, 0x20, true), Err(ProbeError::NoNesting));
        assert!(Features::probe(&mut f, 0x20, false).is_ok());
        f.regs.insert(off::IDR0, 0x0d44_1013); // TTF = AArch32 only
        assert_eq!(Features::probe(&mut f, 0x20, false), Err(ProbeError::NoAArch64Tables));
        let mut f = FakeSmmu::qemu();
        assert_eq!(
            Features::probe(&mut f, 0x1_0000, false),
            Err(ProbeError::StreamIdTooLarge { needed: 0x1_0000, sidsize: 16 })
        );
    }
}
