//! The driver of the real SMMUv3: probe, the enable sequence (boot and resume), the command
//! queue with batching, the event queue consumer, global errors and power sequences.
//!
//! Registers are reached through [`SmmuRegs`]; queues live in memory the driver allocates
//! ([`DmaBuf`]: hypervisor memory, identity-mapped, so the address the SMMU is given is the
//! address the CPU uses). The stream table is not the driver's: it is the service's
//! ([`StreamTable`]), and the driver only points the SMMU at it. Host tests drive the driver
//! against the software SMMU.
//!
//! The driver drives the SMMU as coherent or not ([`Coherency`], from the platform), and
//! refuses to start an SMMU driven as coherent that does not report coherent access
//! (IDR0.COHACC). Non-coherent: CR1 declares non-cacheable, outer-shareable queue and table
//! walks, what the SMMU reads is cleaned before its doorbell (the batch's command entries, a
//! rewritten entry, the stream table before SMMUEN) and event records are invalidated before
//! they are read (the whole event queue once before EVENTQEN, so that no dirty line of the
//! CPU's can later be written back over a record).

use super::dmabuf::DmaBuf;
use super::order::{self, Coherency, DmaRange, Published, Released};
use super::queue::{self, QueuePtr};
use super::strtab::StreamTable;
use super::{set_global_abort, GbpaError, SmmuRegs};
use host_abi::smmu::regs::{
    self, cerror, off, Cr0, Cr2, Gbpa, Gerror, Idr0, Idr1, Idr5, IrqCtrl, Q_OVFLG,
};
use host_abi::smmu::Command;

/// 16-byte command queue entry (host_abi::smmu::Command), as two little-endian words.
pub type CmdWords = [u64; 2];
/// 32-byte event record, as four words.
pub type EventWords = [u64; 4];

/// Why the SMMU cannot be used at all.
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
    /// The platform says the SMMU is coherent, but IDR0.COHACC = 0: its accesses would miss
    /// what the CPU's caches hold (driving it as non-coherent needs `smmu_coherent=0`).
    NotCoherent,
    /// The heap could not hold the tables and queues.
    OutOfMemory,
    /// The enable sequence failed.
    Enable(SequenceError),
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
            ProbeError::NotCoherent => f.write_str(
                "the platform says the SMMU is coherent but it does not report coherent access (IDR0.COHACC = 0): refusing to drive it as coherent",
            ),
            ProbeError::OutOfMemory => f.write_str("no memory for SMMU tables and queues"),
            ProbeError::Enable(e) => write!(f, "{e}"),
        }
    }
}

/// Why a register sequence (enable, suspend, resume) did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceError {
    /// GBPA did not acknowledge.
    Gbpa(GbpaError),
    /// CR0ACK did not follow CR0 within [`CR0ACK_POLL_LIMIT`] reads.
    Cr0AckTimeout {
        /// The value written to CR0.
        wrote: u32,
        /// The last value read from CR0ACK.
        last: u32,
    },
    /// A command of the sequence failed.
    Command(CmdError),
    /// The SMMU lost power while being programmed (its registers went back to reset values).
    PowerLost,
    /// The SMMU had failed before ([`Failure`]): nothing was written.
    Failed,
}

impl SequenceError {
    /// The wait that timed out, if that is what happened.
    pub fn timeout(&self) -> Option<Timeout> {
        match *self {
            SequenceError::Gbpa(e) => Some(Timeout::Gbpa(e)),
            SequenceError::Cr0AckTimeout { wrote, last } => Some(Timeout::Cr0Ack { wrote, last }),
            SequenceError::Command(e) => e.timeout(),
            SequenceError::PowerLost | SequenceError::Failed => None,
        }
    }
}

impl core::fmt::Display for SequenceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SequenceError::Gbpa(e) => write!(f, "{e}"),
            SequenceError::Cr0AckTimeout { wrote, last } => write!(
                f,
                "SMMU_CR0ACK did not follow SMMU_CR0 = {wrote:#010x} within {CR0ACK_POLL_LIMIT} reads (last read {last:#010x})"
            ),
            SequenceError::Command(e) => write!(f, "command failed: {e}"),
            SequenceError::PowerLost => f.write_str("SMMU lost power while being programmed"),
            SequenceError::Failed => f.write_str("the SMMU has failed: nothing was written"),
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
    /// CONS did not pass the batch's SYNC within the poll budget.
    Timeout {
        /// The budget: reads of CMDQ_CONS.
        polls: u32,
    },
    /// The batch is larger than the queue can take at once.
    TooLarge,
    /// The command queue was found disabled while waiting: the SMMU lost power. The caller
    /// recovers through the resume path; nothing more is waited for.
    PowerLost,
    /// The SMMU had failed before ([`Failure`]): nothing was sent.
    Failed,
}

impl CmdError {
    /// The wait that timed out, if that is what happened.
    pub fn timeout(&self) -> Option<Timeout> {
        match *self {
            CmdError::Timeout { polls } => Some(Timeout::CmdSync { polls }),
            _ => None,
        }
    }
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
            CmdError::Timeout { polls } => {
                write!(f, "a CMD_SYNC was not consumed within {polls} reads of SMMU_CMDQ_CONS")
            }
            CmdError::TooLarge => f.write_str("command batch larger than the queue"),
            CmdError::PowerLost => f.write_str("the SMMU lost power while a batch was queued"),
            CmdError::Failed => f.write_str("the SMMU has failed: nothing was sent"),
        }
    }
}

/// A wait on the SMMU that did not end within its budget: the SMMU is hung, or too slow to be
/// trusted, and the driver gives it up ([`Failure`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// GBPA.UPDATE stayed set for [`super::GBPA_POLL_LIMIT`] reads.
    Gbpa(GbpaError),
    /// CR0ACK did not follow CR0 within [`CR0ACK_POLL_LIMIT`] reads.
    Cr0Ack {
        /// The value written to CR0.
        wrote: u32,
        /// The last value read from CR0ACK.
        last: u32,
    },
    /// CMDQ_CONS did not pass a batch's CMD_SYNC within `polls` reads.
    CmdSync {
        /// The budget.
        polls: u32,
    },
}

impl core::fmt::Display for Timeout {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Timeout::Gbpa(e) => write!(f, "{e}"),
            Timeout::Cr0Ack { wrote, last } => {
                write!(f, "{}", SequenceError::Cr0AckTimeout { wrote, last })
            }
            Timeout::CmdSync { polls } => write!(f, "{}", CmdError::Timeout { polls }),
        }
    }
}

/// What the driver could still do to make translation no weaker after a [`Timeout`]. The
/// stream table is never touched: every entry in memory stays a valid one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Containment {
    /// GBPA.ABORT set (UPDATE handshake), then SMMUEN cleared: every stream aborts.
    Aborting,
    /// GBPA.ABORT set, but SMMUEN not known to be cleared (CR0ACK does not follow CR0): the
    /// SMMU translates, if at all, with the STEs it holds.
    AbortSetSmmuenKept,
    /// GBPA.ABORT could not be set, so SMMUEN was left as it was: clearing it would hand every
    /// stream to a GBPA that may say bypass.
    SmmuenKept,
}

impl core::fmt::Display for Containment {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Containment::Aborting => "GBPA.ABORT set and SMMUEN cleared: every stream aborts",
            Containment::AbortSetSmmuenKept => {
                "GBPA.ABORT set, but SMMUEN could not be cleared: the SMMU keeps the STEs it holds"
            }
            Containment::SmmuenKept => {
                "GBPA.ABORT could not be set, so SMMUEN was left as it was (clearing it could let DMA bypass translation)"
            }
        })
    }
}

/// Why and how the driver gave the SMMU up: from then on it touches no register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The wait that timed out.
    pub timeout: Timeout,
    /// What was done about it.
    pub containment: Containment,
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}; {}; the stream table in memory stays valid", self.timeout, self.containment)
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

/// Command queue: 2^9 entries (8 KiB): room for the largest VM batch plus its SYNC.
pub const CMDQ_LOG2: u32 = 9;
/// Event queue: 2^12 entries (128 KiB). Events are drained on the SMMU's event interrupt and on
/// every entry into the SMMU service, into per-VM rings; the queue only has to hold what
/// arrives between two drains. Hardware records one event per faulting transaction (a PCIe
/// write of up to 4 KiB); QEMU records one per 4-byte access, so its worst case here, one
/// faulting 4 KiB `edu` transfer per VM (three VMs), is 3,072 records: still inside. Linux
/// sizes its queue to 2^15 for many more devices; overflows that happen anyway are detected
/// (EVENTQ_PROD.OVFLG) and every VM that could have lost a record is told.
pub const EVTQ_LOG2: u32 = 12;
/// Resume attempts when power is lost again during resume.
pub const RESUME_ATTEMPTS: u32 = 3;
/// Reads of CMDQ_CONS before a batch's CMD_SYNC is given up on (the driver's `poll_limit`
/// starts here). Under QEMU the SMMU consumes commands during the PROD write itself, so the
/// first read normally succeeds; on silicon a SYNC takes microseconds (an ATC invalidation, which
/// QEMU's SMMU does not have, may take much longer: a board with ATS needs a larger budget). A
/// poll also checks that the queue is still enabled, so a power loss ends the wait at once.
/// This bound (each poll is one MMIO read, about a microsecond under QEMU) keeps the worst wait
/// of any VM on the SMMU lock well under a second.
///
/// Every wait of the driver on the SMMU, and its budget: GBPA.UPDATE ([`super::GBPA_POLL_LIMIT`]
/// reads), CR0ACK ([`CR0ACK_POLL_LIMIT`]), a CMD_SYNC (`poll_limit`, this by default). There is
/// no wait for room in the command queue: every batch ends with its SYNC consumed (or the SMMU
/// failed, or lost power and the resume empties the queue), so the next one finds it empty.
/// IRQ_CTRLACK is not waited for: nothing depends on the interrupts being on at once (events
/// are drained on every entry). A wait that times out fails the SMMU ([`Failure`]).
pub const POLL_LIMIT: u32 = 200_000;
/// Reads of CR0ACK before a CR0 write is given up on.
pub const CR0ACK_POLL_LIMIT: u32 = POLL_LIMIT;

/// DriverCounters readable by VMs and the benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverCounters {
    /// Commands written to the queue (SYNCs included).
    pub commands: u64,
    /// CMD_SYNCs written.
    pub syncs: u64,
    /// Events taken off the event queue.
    pub events: u64,
    /// Commands the SMMU rejected.
    pub command_errors: u64,
    /// Event-queue overflows the SMMU signalled (records it had to discard).
    pub evtq_overflows: u64,
}

/// What one drain of the event queue found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Drained {
    /// Records taken.
    pub records: u32,
    /// The SMMU signalled an overflow since the last drain: an unknown number of records were
    /// discarded.
    pub overflowed: bool,
    /// Records were left in the queue (`max` reached).
    pub more: bool,
}

/// The driver of one SMMU.
pub struct SmmuDriver<R: SmmuRegs> {
    regs: R,
    /// What the hardware offers.
    pub features: Features,
    strtab: (u64, u32),
    /// The memory SMMU_STRTAB_BASE points at (published before SMMUEN).
    strtab_mem: DmaRange,
    /// Coherent, or cache maintenance and non-cacheable walks.
    coherency: Coherency,
    cmdq: DmaBuf,
    cmdq_prod: QueuePtr,
    evtq: DmaBuf,
    evtq_log2: u32,
    /// EVENTQ_CONS as the driver last wrote it (only the driver writes it).
    evtq_cons: u32,
    /// GERRORN as the driver last wrote it (only the driver writes it).
    gerrorn: u32,
    irqs: IrqCtrl,
    /// DriverCounters.
    pub counters: DriverCounters,
    /// Polls of CONS before a batch times out (the model, which consumes synchronously,
    /// lowers it).
    pub poll_limit: u32,
    /// The SMMU failed (a wait timed out): no register is touched any more.
    failure: Option<Failure>,
}

impl<R: SmmuRegs> SmmuDriver<R> {
    /// Probes and brings the SMMU up with a fresh stream table for stream IDs up to `max_sid`
    /// (every STE abort): GBPA.ABORT, SMMU off, queues, invalidate all configuration and TLB
    /// caches, event queue on, then SMMUEN. No stream can translate until the service installs
    /// an STE for it. `irqs` are the SMMU interrupts to enable (wired; no MSI). Driven as
    /// `coherency` says: an SMMU driven as coherent must report coherent access (IDR0.COHACC);
    /// one that does may still be driven as non-coherent ([`Self::snoop_unused`]).
    pub fn init(
        mut regs: R,
        max_sid: u32,
        need_nesting: bool,
        irqs: IrqCtrl,
        coherency: Coherency,
    ) -> Result<(Self, StreamTable), ProbeError> {
        set_global_abort(&mut regs).map_err(|e| ProbeError::Enable(SequenceError::Gbpa(e)))?;
        let features = Features::probe(&mut regs, max_sid, need_nesting)?;
        if coherency == Coherency::Coherent && !features.idr0.coherent() {
            return Err(ProbeError::NotCoherent);
        }
        // Everything off (translation falls back to GBPA: abort).
        cr0_off(&mut regs).map_err(ProbeError::Enable)?;
        let table = StreamTable::new(max_sid, features.idr0.two_level_strtab(), coherency)
            .ok_or(ProbeError::OutOfMemory)?;
        let cmdq_log2 = CMDQ_LOG2.min(features.idr1.cmdqs());
        let evtq_log2 = EVTQ_LOG2.min(features.idr1.eventqs());
        let cmdq = DmaBuf::new(16 << cmdq_log2, 16 << cmdq_log2).ok_or(ProbeError::OutOfMemory)?;
        let evtq = DmaBuf::new(32 << evtq_log2, 32 << evtq_log2).ok_or(ProbeError::OutOfMemory)?;
        let mut smmu = SmmuDriver {
            regs,
            features,
            strtab: table.base_and_cfg(),
            strtab_mem: table.range(),
            coherency,
            cmdq_prod: QueuePtr::new(cmdq_log2, 0),
            cmdq,
            evtq,
            evtq_log2,
            evtq_cons: 0,
            gerrorn: 0,
            irqs,
            counters: DriverCounters::default(),
            poll_limit: POLL_LIMIT,
            failure: None,
        };
        smmu.program_and_enable().map_err(ProbeError::Enable)?;
        Ok((smmu, table))
    }

    /// Points the (disabled) SMMU at the stream table and the driver's queues, invalidates
    /// every configuration and TLB cache, then enables the event queue and translation. Used at
    /// boot and on resume: its cost does not depend on the number of streams or mappings.
    fn program_and_enable(&mut self) -> Result<(), SequenceError> {
        let (base, cfg) = self.strtab;
        let regs = &mut self.regs;
        regs.write64(off::STRTAB_BASE, base);
        regs.write32(off::STRTAB_BASE_CFG, cfg);
        let cmdq_log2 = self.cmdq_prod.capacity().trailing_zeros();
        regs.write64(
            off::CMDQ_BASE,
            regs::BASE_RA | (self.cmdq.pa() & regs::BASE_ADDR_MASK) | cmdq_log2 as u64,
        );
        regs.write32(off::CMDQ_PROD, 0);
        regs.write32(off::CMDQ_CONS, 0);
        regs.write64(
            off::EVTQ_BASE,
            regs::BASE_RA | (self.evtq.pa() & regs::BASE_ADDR_MASK) | self.evtq_log2 as u64,
        );
        regs.write32(off::EVTQ_PROD, 0);
        regs.write32(off::EVTQ_CONS, 0);
        self.evtq_cons = 0;
        // GERROR and GERRORN agree after reset (or an earlier acknowledgement): keep the copy.
        self.gerrorn = regs.read32(off::GERRORN);
        regs.write32(off::CR1, self.coherency.cr1().0);
        // RECINVSID: record C_BAD_STREAMID; PTM: ignore broadcast TLB maintenance (the
        // hypervisor invalidates through the command queue only).
        regs.write32(off::CR2, (Cr2::RECINVSID | Cr2::PTM).bits());
        regs.write32(off::IRQ_CTRL, self.irqs.bits());
        self.cmdq_prod = QueuePtr::new(cmdq_log2, 0);
        // Each enable after its unit's memory (zeroed, or filled, by the CPU) is published: the
        // SMMU reads the command queue and the stream table and writes the event queue from then
        // on. (In this sequence the CFGI_ALL batch's barrier comes before the last two anyway.)
        let published = self.cmdq.publish(&mut self.regs);
        cr0_enable(&mut self.regs, Cr0::CMDQEN, published)?;
        self.submit(&[
            Command::cfgi_all().0,
            Command::tlbi_nsnh_all().0,
            Command::tlbi_el2_all().0,
        ])
        .map_err(SequenceError::Command)?;
        self.invalidate_event_queue();
        let published = self.evtq.publish(&mut self.regs);
        cr0_enable(&mut self.regs, Cr0::CMDQEN | Cr0::EVENTQEN, published)?;
        // A power loss in the middle of this sequence would leave registers at reset values
        // that the rest of it does not rewrite: check everything is still ours before
        // enabling translation, and again right after.
        if !self.programmed() {
            return Err(SequenceError::PowerLost);
        }
        self.clean_stream_table();
        let published = order::publish(&mut self.regs, self.strtab_mem);
        cr0_enable(&mut self.regs, Cr0::RUNNING, published)?;
        if !self.programmed() {
            cr0_off(&mut self.regs)?;
            return Err(SequenceError::PowerLost);
        }
        Ok(())
    }

    /// The stream table (linear, or the level-1 table: each level-2 table is cleaned when it is
    /// linked) in memory past the CPU's caches before SMMUEN lets the SMMU walk it.
    fn clean_stream_table(&mut self) {
        self.coherency.clean(&mut self.regs, self.strtab_mem);
    }

    /// The event queue, zeroed by the CPU, cleaned and invalidated before EVENTQEN: no dirty
    /// line of the CPU's is left to be written back over a record the SMMU writes later.
    fn invalidate_event_queue(&mut self) {
        self.coherency.invalidate(&mut self.regs, self.evtq.range());
    }

    /// Whether the SMMU is driven as coherent.
    pub fn coherency(&self) -> Coherency {
        self.coherency
    }

    /// Driven as non-coherent although the SMMU reports coherent access (IDR0.COHACC = 1): it
    /// could snoop, the system does not let it (worth one line in the log).
    pub fn snoop_unused(&self) -> bool {
        self.coherency == Coherency::NonCoherent && self.features.idr0.coherent()
    }

    /// Whether the registers still hold the tables and queues this driver programmed, with
    /// GBPA.ABORT set.
    fn programmed(&mut self) -> bool {
        let mask = regs::BASE_ADDR_MASK;
        let (base, cfg) = self.strtab;
        self.regs.read64(off::STRTAB_BASE) & mask == base & mask
            && self.regs.read32(off::STRTAB_BASE_CFG) == cfg
            && self.regs.read64(off::CMDQ_BASE) & mask == self.cmdq.pa() & mask
            && self.regs.read64(off::EVTQ_BASE) & mask == self.evtq.pa() & mask
            && Gbpa(self.regs.read32(off::GBPA)).abort()
    }

    /// Quiesces the SMMU before its power domain goes off: completes every queued command
    /// (one SYNC), leaves the event queue to the caller (drain it first), then GBPA.ABORT with
    /// the UPDATE handshake, and only then SMMUEN = 0 with the queues and interrupts off. At no
    /// point between these writes can a transaction bypass translation.
    pub fn suspend(&mut self) -> Result<(), SequenceError> {
        if self.failure.is_some() {
            return Err(SequenceError::Failed);
        }
        let r = self.quiesce();
        if let Err(e) = r {
            self.give_up_on(&e);
        }
        r
    }

    fn quiesce(&mut self) -> Result<(), SequenceError> {
        self.submit(&[]).map_err(SequenceError::Command)?;
        set_global_abort(&mut self.regs).map_err(SequenceError::Gbpa)?;
        cr0_off(&mut self.regs)?;
        self.regs.write32(off::IRQ_CTRL, 0);
        Ok(())
    }

    /// Brings the SMMU back after power-on (expected or not): the first write is GBPA.ABORT
    /// (the reset value may be bypass), then tables and queues from the hypervisor's own copies,
    /// CFGI_ALL + TLBI of every regime + SYNC, and SMMUEN last.
    pub fn resume(&mut self) -> Result<(), SequenceError> {
        if self.failure.is_some() {
            return Err(SequenceError::Failed);
        }
        // Power may be lost again while we program it: start over (bounded).
        let mut last = SequenceError::PowerLost;
        for _ in 0..RESUME_ATTEMPTS {
            let r = set_global_abort(&mut self.regs)
                .map_err(SequenceError::Gbpa)
                .and_then(|_| cr0_off(&mut self.regs))
                .and_then(|_| self.program_and_enable());
            match r {
                Ok(()) => return Ok(()),
                Err(e) if e.timeout().is_some_and(|t| self.hung(t)) => {
                    // Hung, not unpowered: trying again would only wait again.
                    self.give_up_on(&e);
                    return Err(e);
                }
                // A wait that power going under the sequence made impossible, or any other
                // loss: start over.
                Err(e) if e.timeout().is_some() => last = SequenceError::PowerLost,
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Gives the SMMU up if `e` is a timeout of a hung SMMU ([`Self::give_up`]).
    fn give_up_on(&mut self, e: &SequenceError) {
        if let Some(t) = e.timeout().filter(|&t| self.hung(t)) {
            self.give_up(t);
        }
    }

    /// After wait `t` timed out: whether the SMMU is hung, rather than its power gone and come
    /// back under the sequence. A loss clears GBPA.UPDATE and sets CR0ACK to 0, so a wait for
    /// either is a hang; any other wait (CR0ACK to follow an enable, a CMD_SYNC) is a hang only
    /// if the registers still hold what the driver programmed.
    fn hung(&mut self, t: Timeout) -> bool {
        match t {
            Timeout::Gbpa(_) | Timeout::Cr0Ack { wrote: 0, .. } => true,
            Timeout::Cr0Ack { .. } | Timeout::CmdSync { .. } => self.programmed(),
        }
    }

    /// A wait timed out: the SMMU is failed from now on. Translation is made no weaker with
    /// what still works, each step bounded, none repeating the wait that just timed out:
    /// GBPA.ABORT first, and only if that took, SMMUEN = 0 (every stream then aborts). The
    /// stream table is not touched.
    fn give_up(&mut self, timeout: Timeout) {
        if self.failure.is_some() {
            return;
        }
        let abort =
            !matches!(timeout, Timeout::Gbpa(_)) && set_global_abort(&mut self.regs).is_ok();
        let containment = if !abort {
            Containment::SmmuenKept
        } else if matches!(timeout, Timeout::Cr0Ack { .. }) || cr0_off(&mut self.regs).is_err() {
            Containment::AbortSetSmmuenKept
        } else {
            Containment::Aborting
        };
        self.failure = Some(Failure { timeout, containment });
    }

    /// Why the SMMU failed, if it did (no register is touched since).
    pub fn failure(&self) -> Option<Failure> {
        self.failure
    }

    /// Whether the SMMU still holds the configuration the driver gave it (SMMUEN and both
    /// queues enabled). False after an unexpected power loss: registers are back at reset.
    pub fn configured(&mut self) -> bool {
        Cr0::from_bits_retain(self.regs.read32(off::CR0)).contains(Cr0::RUNNING)
    }

    /// The register interface (the power controller needs it; tests play the hardware with it).
    pub fn regs_mut(&mut self) -> &mut R {
        &mut self.regs
    }

    /// Submits `cmds` plus one CMD_SYNC as one batch and waits until the SYNC is consumed.
    /// A command the SMMU rejects is replaced by a CMD_SYNC (harmless), the error acknowledged
    /// and reported; the queue keeps working. No heap allocation.
    pub fn submit(&mut self, cmds: &[CmdWords]) -> Result<(), CmdError> {
        if self.failure.is_some() {
            return Err(CmdError::Failed);
        }
        let r = self.send(cmds);
        match r.err().and_then(|e| e.timeout()) {
            Some(t) if self.hung(t) => self.give_up(t),
            // Power went and came back under the batch (an enable had landed on registers at
            // reset: a queue at address 0): a loss, recovered by the resume path.
            Some(_) => return Err(CmdError::PowerLost),
            None => {}
        }
        r
    }

    fn send(&mut self, cmds: &[CmdWords]) -> Result<(), CmdError> {
        let n = cmds.len() as u32 + 1;
        if n > self.cmdq_prod.capacity() {
            return Err(CmdError::TooLarge);
        }
        // The queue is empty: the last batch's SYNC was consumed (see POLL_LIMIT).
        let start = self.cmdq_prod;
        let mut p = self.cmdq_prod;
        // Up to the end of the queue, then from its start.
        let before_wrap = cmds.len().min((p.capacity() - p.index()) as usize);
        let (head, tail) = cmds.split_at(before_wrap);
        self.cmdq.write_pairs(p.index() as usize * 2, head);
        p = p.advance(head.len() as u32);
        // The rest (if any) from the queue's first entry.
        self.cmdq.write_pairs(0, tail);
        p = p.advance(tail.len() as u32);
        self.cmdq.write_pair(p.index() as usize * 2, Command::sync().0);
        p = p.advance(1);
        self.counters.commands += n as u64;
        self.counters.syncs += 1;
        self.cmdq_prod = p;
        self.clean_commands(start, n);
        let published = self.publish_commands();
        self.ring_cmdq(p, published);
        self.wait_consumed(start, p)
    }

    /// The batch's `n` entries from `start` in memory past the CPU's caches (two ranges when the
    /// batch wraps) before CMDQ_PROD: a non-coherent SMMU reads them there.
    #[inline(always)]
    fn clean_commands(&mut self, start: QueuePtr, n: u32) {
        if self.coherency == Coherency::Coherent {
            return;
        }
        for (word, len) in wrapped(start, n, 2) {
            let c = self.coherency;
            c.clean(&mut self.regs, self.cmdq.words(word, len));
        }
    }

    /// The batch's entries, and every STE and CD word written before them, observed by the
    /// SMMU before CMDQ_PROD tells it to read them (a stale entry would be a stale command: a
    /// CFGI_STE of another stream, or a TLBI that does not cover what changed).
    fn publish_commands(&mut self) -> Published {
        self.cmdq.publish(&mut self.regs)
    }

    /// CMDQ_PROD: the SMMU consumes the entries up to `prod`.
    fn ring_cmdq(&mut self, prod: QueuePtr, _: Published) {
        self.regs.write32(off::CMDQ_PROD, prod.raw());
    }

    /// The CMD_SYNC written over the rejected command at entry `index` in memory past the
    /// CPU's caches before GERRORN restarts the queue on it.
    fn clean_fixup(&mut self, index: u32) {
        self.coherency.clean(&mut self.regs, self.cmdq.words(index as usize * 2, 2));
    }

    /// The CMD_SYNC written over a rejected command observed by the SMMU before GERRORN
    /// restarts the queue on it (else it fetches the rejected command again).
    fn publish_fixup(&mut self) -> Published {
        self.cmdq.publish(&mut self.regs)
    }

    /// Acknowledges GERROR.CMDQ_ERR: the command queue restarts at CONS.
    fn restart_cmdq(&mut self, _: Published) {
        self.gerrorn ^= Gerror::CMDQ_ERR.bits();
        self.regs.write32(off::GERRORN, self.gerrorn);
    }

    /// EVENTQ_CONS: the slots before `cons` are the SMMU's again (and OVACKFLG acknowledges an
    /// overflow).
    fn ring_evtq_cons(&mut self, cons: u32, _: Released) {
        self.evtq_cons = cons;
        self.regs.write32(off::EVTQ_CONS, cons);
    }

    fn cmdq_log2(&self) -> u32 {
        self.cmdq_prod.capacity().trailing_zeros()
    }

    /// The command queue is still enabled (a power loss puts CR0 back to 0).
    fn check_alive(&mut self) -> Result<(), CmdError> {
        if Cr0::from_bits_retain(self.regs.read32(off::CR0)).contains(Cr0::CMDQEN) {
            Ok(())
        } else {
            Err(CmdError::PowerLost)
        }
    }

    fn wait_consumed(&mut self, start: QueuePtr, target: QueuePtr) -> Result<(), CmdError> {
        let mut first_error = None;
        for _ in 0..self.poll_limit {
            // The common case first: one read, and the batch is done.
            let raw = self.regs.read32(off::CMDQ_CONS);
            let cons = QueuePtr::new(self.cmdq_log2(), raw);
            if queue::reached(cons, target, target) {
                return first_error.map_or(Ok(()), Err);
            }
            let gerror = self.regs.read32(off::GERROR);
            if Gerror::from_bits_retain(gerror ^ self.gerrorn).contains(Gerror::CMDQ_ERR) {
                // CONS points at the offending command: neutralise it and restart the queue.
                let index = queue::used(cons, start) as usize;
                let reason = regs::cmdq_cons_err(raw);
                self.cmdq.write_pair(cons.index() as usize * 2, Command::sync().0);
                self.counters.command_errors += 1;
                first_error.get_or_insert(CmdError::Rejected { index, reason });
                self.clean_fixup(cons.index());
                let published = self.publish_fixup();
                self.restart_cmdq(published);
                continue;
            }
            self.check_alive()?;
        }
        Err(CmdError::Timeout { polls: self.poll_limit })
    }

    /// Takes at most `max` pending event records off the event queue, oldest first, and
    /// acknowledges an overflow the SMMU signalled. One register read when the queue is empty
    /// (CONS is the driver's own copy).
    pub fn drain_events(&mut self, max: u32, mut f: impl FnMut(EventWords)) -> Drained {
        let cons_raw = self.evtq_cons;
        let prod_raw = self.regs.read32(off::EVTQ_PROD);
        if prod_raw == cons_raw {
            // Nothing new, no overflow (the common entry): nothing to count.
            return Drained::default();
        }
        let mut cons = QueuePtr::new(self.evtq_log2, cons_raw);
        let prod = QueuePtr::new(self.evtq_log2, prod_raw);
        let overflowed = (prod_raw ^ cons_raw) & Q_OVFLG != 0;
        let mut n = 0;
        if queue::used(prod, cons) != 0 {
            // The records PROD covers were written before it moved: none may be read from
            // before that (a stale record, routed to the wrong VM or twice).
            let acquired = order::acquire(&mut self.regs);
            self.invalidate_records(cons, queue::used(prod, cons).min(max));
            while n < max && queue::used(prod, cons) != 0 {
                f(self.evtq.read_acquired::<4>(cons.index() as usize * 4, &acquired));
                cons = cons.advance(1);
                n += 1;
            }
        }
        if n > 0 || overflowed {
            // Every record read in full before the SMMU may write over it. One CONS write for
            // the whole drain, acknowledging the overflow flag with it.
            let released = order::release(&mut self.regs);
            self.ring_evtq_cons(cons.raw() | (prod_raw & Q_OVFLG), released);
        }
        self.counters.events += n as u64;
        self.counters.evtq_overflows += overflowed as u64;
        Drained { records: n, overflowed, more: queue::used(prod, cons) != 0 }
    }

    /// The `n` records from `cons` on (two ranges when they wrap) dropped from the CPU's caches
    /// after the acquire and before they are read: a line cached from before the SMMU wrote
    /// the slot would serve an old record.
    #[inline(always)]
    fn invalidate_records(&mut self, cons: QueuePtr, n: u32) {
        if self.coherency == Coherency::Coherent {
            return;
        }
        for (word, len) in wrapped(cons, n, 4) {
            let c = self.coherency;
            c.invalidate(&mut self.regs, self.evtq.words(word, len));
        }
    }

    /// Global errors raised and not yet acknowledged (GERROR ^ GERRORN, GERRORN being the
    /// driver's own copy: one register read).
    pub fn active_global_errors(&mut self) -> Gerror {
        Gerror::from_bits_truncate(self.regs.read32(off::GERROR) ^ self.gerrorn)
    }

    /// Acknowledges global errors `bits`.
    pub fn ack_global_errors(&mut self, bits: Gerror) {
        self.gerrorn ^= bits.bits();
        self.regs.write32(off::GERRORN, self.gerrorn);
    }
}

/// CR0 = 0: every unit off (nothing for the SMMU to read, no barrier).
fn cr0_off(regs: &mut dyn SmmuRegs) -> Result<(), SequenceError> {
    write_cr0(regs, Cr0::empty())
}

/// The `n` entries of `words_per_entry` words from `at` on, as (first word, words) ranges of
/// their queue: up to its end, then from its start when they wrap (no empty range).
#[inline(always)]
fn wrapped(at: QueuePtr, n: u32, words_per_entry: usize) -> impl Iterator<Item = (usize, usize)> {
    let first = at.index();
    let head = n.min(at.capacity() - first);
    [(first as usize, head), (0, n - head)]
        .into_iter()
        .filter(|&(_, k)| k > 0)
        .map(move |(i, k)| (i * words_per_entry, k as usize * words_per_entry))
}

/// CR0 = `value`, enabling units whose memory was published first.
fn cr0_enable(regs: &mut dyn SmmuRegs, value: Cr0, _: Published) -> Result<(), SequenceError> {
    write_cr0(regs, value)
}

/// Writes CR0 and waits for CR0ACK to follow.
fn write_cr0(regs: &mut dyn SmmuRegs, value: Cr0) -> Result<(), SequenceError> {
    regs.write32(off::CR0, value.bits());
    let mut last = 0;
    for _ in 0..CR0ACK_POLL_LIMIT {
        last = regs.read32(off::CR0ACK);
        if last == value.bits() {
            return Ok(());
        }
    }
    Err(SequenceError::Cr0AckTimeout { wrote: value.bits(), last })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iommu::driver::order::Barrier;
    use crate::iommu::driver::ste;
    use crate::iommu::soft::fake::FakeSmmu;
    use std::string::ToString;

    fn position(f: &FakeSmmu, o: usize, v: Option<u32>) -> usize {
        f.writes.iter().position(|&(ro, rv)| ro == o && v.is_none_or(|v| v == rv)).unwrap()
    }

    fn init(fake: &mut FakeSmmu, max_sid: u32) -> (SmmuDriver<&mut FakeSmmu>, StreamTable) {
        let c = fake.coherency;
        SmmuDriver::init(fake, max_sid, true, IrqCtrl::empty(), c).unwrap()
    }

    #[test]
    fn boot_order_is_abort_tables_invalidate_then_enable() {
        let mut fake = FakeSmmu::qemu();
        let (_smmu, table) = init(&mut fake, 0x20);
        assert!(!table.is_two_level());
        assert_eq!(table.sid_bits(), 6);
        // GBPA.ABORT with UPDATE comes first of all writes.
        assert_eq!(fake.writes[0], (off::GBPA, 0x8010_1000));
        let cr0_off = position(&fake, off::CR0, Some(0));
        let strtab = position(&fake, off::STRTAB_BASE, None);
        let cmdqen = position(&fake, off::CR0, Some(Cr0::CMDQEN.bits()));
        let smmuen = position(&fake, off::CR0, Some(Cr0::RUNNING.bits()));
        assert!(cr0_off < strtab && strtab < cmdqen && cmdqen < smmuen);
        // Before SMMUEN: CFGI_ALL, TLBI_NSNH_ALL, TLBI_EL2_ALL and one SYNC.
        assert_eq!(fake.opcodes(), [0x04, 0x30, 0x20, 0x46]);
        assert_eq!(fake.consumed[0][1] & 0x1f, 31, "CFGI_ALL covers every SID");
        assert_eq!(fake.smmu.strtab_base() & regs::STRTAB_ADDR_MASK, {
            let (b, _) = table.base_and_cfg();
            b & regs::STRTAB_ADDR_MASK
        });
        assert!(fake.smmu.first_unknown.is_none(), "only architected registers touched");
    }

    #[test]
    fn interrupts_asked_for_are_enabled() {
        let mut fake = FakeSmmu::qemu();
        let irqs = IrqCtrl::EVENTQ_IRQEN | IrqCtrl::GERROR_IRQEN;
        let (_smmu, _) =
            SmmuDriver::init(&mut fake, 0x20, true, irqs, Coherency::Coherent).unwrap();
        assert_eq!(fake.smmu.read32(off::IRQ_CTRLACK), irqs.bits());
    }

    #[test]
    fn a_batch_costs_n_plus_one_entries_and_one_sync() {
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        let before = smmu.counters;
        smmu.submit(&[
            Command::cfgi_ste(0x10).0,
            Command::cfgi_ste(0x18).0,
            Command::tlbi_nsnh_all().0,
        ])
        .unwrap();
        assert_eq!(smmu.counters.commands - before.commands, 4);
        assert_eq!(smmu.counters.syncs - before.syncs, 1);
        assert_eq!(&fake.opcodes()[4..], [0x03, 0x03, 0x30, 0x46]);
    }

    #[test]
    fn a_rejected_command_is_reported_skipped_and_the_queue_keeps_working() {
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        let r = smmu.submit(&[Command::cfgi_ste(1).0, [0xff, 0], Command::cfgi_ste(2).0]);
        assert_eq!(r, Err(CmdError::Rejected { index: 1, reason: cerror::ILL }));
        assert_eq!(smmu.counters.command_errors, 1);
        assert_eq!(smmu.active_global_errors(), Gerror::empty(), "acknowledged");
        smmu.submit(&[Command::cfgi_ste(3).0]).unwrap();
        // The bad command became a SYNC; everything after it ran.
        assert_eq!(&fake.opcodes()[4..], [0x03, 0x46, 0x03, 0x46, 0x03, 0x46]);
    }

    #[test]
    fn batches_wrap_around_the_queue_in_order() {
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        let start = smmu.regs_mut().consumed.len();
        let mut want = std::vec::Vec::new();
        // 37 batches of 29: several laps of the 512-entry queue, wrapping inside batches.
        for b in 0..37u64 {
            let cmds: std::vec::Vec<[u64; 2]> =
                (0..29).map(|i| Command::tlbi_nh_va(1, 2, (b * 29 + i) << 12).0).collect();
            smmu.submit(&cmds).unwrap();
            want.extend(cmds);
            want.push(Command::sync().0);
        }
        assert!(want.len() > 2 * (1 << CMDQ_LOG2));
        assert_eq!(smmu.regs_mut().consumed[start..], want[..]);
    }

    #[test]
    fn the_enable_sequence_sets_cr2_and_enables_the_event_queue_before_translation() {
        let mut fake = FakeSmmu::qemu();
        let _ = init(&mut fake, 0x20);
        // Out-of-range stream IDs are recorded; broadcast TLB maintenance is ignored.
        assert_eq!(fake.smmu.read32(off::CR2), (Cr2::RECINVSID | Cr2::PTM).bits());
        let cr0: std::vec::Vec<u32> =
            fake.writes.iter().filter(|w| w.0 == off::CR0).map(|w| w.1).collect();
        let q = Cr0::CMDQEN;
        let steps = [Cr0::empty(), q, q | Cr0::EVENTQEN, Cr0::RUNNING];
        assert_eq!(cr0, steps.map(|c| c.bits()), "events are recorded before anything translates");
    }

    #[test]
    fn a_batch_may_fill_the_whole_queue_and_no_more() {
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        smmu.poll_limit = 8;
        let cap = 1usize << CMDQ_LOG2;
        let before = smmu.counters;
        // cap - 1 commands and their SYNC: exactly the queue.
        let cmds: std::vec::Vec<CmdWords> =
            (0..cap as u32 - 1).map(|i| Command::cfgi_ste(i).0).collect();
        assert_eq!(smmu.submit(&cmds), Ok(()));
        assert_eq!(smmu.counters.commands - before.commands, cap as u64);
        let writes = smmu.regs_mut().writes.len();
        let mut more = cmds.clone();
        more.push(Command::tlbi_nsnh_all().0);
        assert_eq!(smmu.submit(&more), Err(CmdError::TooLarge));
        assert_eq!(smmu.regs_mut().writes.len(), writes, "nothing written");
        assert_eq!(fake.consumed.len(), 4 + cap);
    }

    #[test]
    fn a_slow_smmu_is_waited_for_within_the_budget_and_a_hung_one_fails() {
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        smmu.poll_limit = 8;
        // Slow: the batch is consumed on the last CONS read the budget allows.
        smmu.regs_mut().hold_commands = true;
        smmu.regs_mut().consume_at_cons_read = Some(8);
        assert_eq!(smmu.submit(&[Command::cfgi_ste(1).0]), Ok(()));
        assert_eq!(smmu.failure(), None);
        // One read more: given up.
        smmu.regs_mut().hold_commands = true;
        smmu.regs_mut().consume_at_cons_read = Some(9);
        let reads = smmu.regs_mut().reads;
        assert_eq!(smmu.submit(&[Command::cfgi_ste(2).0]), Err(CmdError::Timeout { polls: 8 }));
        // Three reads per poll (CONS, GERROR, CR0), then the check that the registers still
        // hold the driver's tables (a hang, not a loss), then the containment's.
        assert!(smmu.regs_mut().reads - reads < 40, "{} reads", smmu.regs_mut().reads - reads);
        let f = smmu.failure().expect("a timeout fails the SMMU");
        assert_eq!(
            f,
            Failure { timeout: Timeout::CmdSync { polls: 8 }, containment: Containment::Aborting }
        );
        // Translation no weaker: GBPA.ABORT (with the handshake), then SMMUEN off.
        let fake = smmu.regs_mut();
        assert!(fake.aborts());
        assert_eq!(fake.smmu.cr0(), Cr0::empty(), "every stream aborts");
        let prod = fake.writes.iter().rposition(|w| w.0 == off::CMDQ_PROD).unwrap();
        let after: std::vec::Vec<usize> = fake.writes[prod + 1..].iter().map(|w| w.0).collect();
        assert_eq!(after, [off::GBPA, off::CR0], "abort first, then SMMUEN off, nothing else");
        // From now on no register is touched, whatever is asked.
        let (reads, writes) = (fake.reads, fake.writes.len());
        assert_eq!(smmu.submit(&[Command::cfgi_ste(3).0]), Err(CmdError::Failed));
        assert_eq!(smmu.suspend(), Err(SequenceError::Failed));
        assert_eq!(smmu.resume(), Err(SequenceError::Failed));
        assert_eq!((smmu.regs_mut().reads, smmu.regs_mut().writes.len()), (reads, writes));
        assert_eq!(smmu.failure(), Some(f), "the first failure stays");
    }

    #[test]
    fn a_cr0_never_acknowledged_fails_the_smmu_with_gbpa_abort_set() {
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        smmu.regs_mut().hold_cr0 = true;
        let reads = smmu.regs_mut().reads;
        let hung = SequenceError::Cr0AckTimeout { wrote: 0, last: Cr0::RUNNING.bits() };
        assert_eq!(smmu.suspend(), Err(hung));
        assert!(smmu.regs_mut().reads - reads <= u64::from(CR0ACK_POLL_LIMIT) + 20);
        // GBPA.ABORT after the CR0 write that was never acknowledged, and nothing else.
        let writes = &smmu.regs_mut().writes;
        let cr0 = writes.iter().rposition(|w| w.0 == off::CR0).unwrap();
        assert_eq!(
            writes[cr0 + 1..].iter().map(|w| w.0).collect::<std::vec::Vec<_>>(),
            [off::GBPA]
        );
        let f = smmu.failure().unwrap();
        // CR0 = 0 is not tried again (it would only wait again): SMMUEN may still be set.
        assert_eq!(f.containment, Containment::AbortSetSmmuenKept);
        assert_eq!(f.timeout, Timeout::Cr0Ack { wrote: 0, last: Cr0::RUNNING.bits() });
        assert!(smmu.regs_mut().aborts());
        // At boot, the first enable that is never acknowledged stops the boot with the reason.
        let mut fake = FakeSmmu::qemu();
        fake.hold_cr0 = true;
        let r = SmmuDriver::init(&mut fake, 0x20, true, IrqCtrl::empty(), Coherency::Coherent)
            .map(|_| ());
        let e = SequenceError::Cr0AckTimeout { wrote: Cr0::CMDQEN.bits(), last: 0 };
        assert_eq!(r, Err(ProbeError::Enable(e)));
    }

    #[test]
    fn a_gbpa_update_never_completed_fails_the_smmu_and_leaves_smmuen_set() {
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, mut table) = init(&mut fake, 0x20);
        table.write_word(0x18, 1, 0x1234).unwrap();
        smmu.regs_mut().hold_gbpa = true;
        let last = Gbpa::UPDATE | Gbpa::ABORT | 0x1000;
        let e = SequenceError::Gbpa(GbpaError::GbpaUpdateTimeout { last });
        assert_eq!(smmu.suspend(), Err(e));
        // Not knowing GBPA says abort, clearing SMMUEN could hand every stream to bypass: the
        // STEs keep deciding.
        let f = smmu.failure().unwrap();
        assert_eq!(
            f,
            Failure {
                timeout: Timeout::Gbpa(GbpaError::GbpaUpdateTimeout { last }),
                containment: Containment::SmmuenKept
            }
        );
        assert_eq!(smmu.regs_mut().smmu.cr0(), Cr0::RUNNING);
        let w = smmu.regs_mut().writes.last().copied();
        assert_eq!(w, Some((off::GBPA, last)), "GBPA is not tried again, nor anything else");
        assert_eq!(table.read(0x18)[1], 0x1234, "the stream table is not touched");
        assert_eq!(
            f.to_string(),
            "SMMU_GBPA.UPDATE did not clear within 1000000 reads (last read 0x80101000); GBPA.ABORT could not be set, so SMMUEN was left as it was (clearing it could let DMA bypass translation); the stream table in memory stays valid"
        );
    }

    #[test]
    fn a_resume_that_times_out_is_not_tried_again() {
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        smmu.poll_limit = 8;
        smmu.regs_mut().power_loss(Gbpa::ABORT);
        smmu.regs_mut().hold_commands = true;
        let e = smmu.resume().unwrap_err();
        assert_eq!(e, SequenceError::Command(CmdError::Timeout { polls: 8 }));
        let writes = &smmu.regs_mut().writes;
        let lost = writes.iter().position(|w| w.0 == usize::MAX).unwrap();
        let attempts = writes[lost..].iter().filter(|w| w.0 == off::STRTAB_BASE).count();
        assert_eq!(attempts, 1, "one attempt: hung, not unpowered");
        assert_eq!(smmu.failure().map(|f| f.containment), Some(Containment::Aborting));
        // Power lost again and again while being programmed is no failure: each of the
        // attempts starts over, and the last loss is what is returned.
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        smmu.regs_mut().power_loss(Gbpa::ABORT);
        smmu.regs_mut().power_drops_at_smmuen = RESUME_ATTEMPTS;
        assert_eq!(smmu.resume(), Err(SequenceError::PowerLost));
        assert_eq!(smmu.failure(), None);
        assert_eq!(smmu.resume(), Ok(()), "the power domain holds now");
    }

    #[test]
    fn a_wait_that_power_going_under_the_sequence_made_impossible_is_a_loss_not_a_hang() {
        // Power lost just before the write of CMDQ_PROD = 0 (what QEMU's tests inject): the
        // rest of the sequence lands on registers at reset, so CMDQEN enables a queue at
        // address 0, whose fetch aborts again and again: the CFGI_ALL batch times out. The
        // registers no longer hold the driver's tables: a loss, and the resume starts over.
        let resume_writes = |fake: &mut FakeSmmu| {
            let (mut smmu, _) = init(&mut *fake, 0x20);
            smmu.poll_limit = 16;
            smmu.regs_mut().power_loss(Gbpa::ABORT);
            let start = smmu.regs_mut().writes.len();
            (smmu.resume(), smmu.failure(), start)
        };
        let mut dry = FakeSmmu::qemu();
        let (r, _, start) = resume_writes(&mut dry);
        assert_eq!(r, Ok(()));
        let prod = start + dry.writes[start..].iter().position(|w| w.0 == off::CMDQ_PROD).unwrap();
        let mut fake = FakeSmmu::qemu();
        fake.lose_power_before_write = Some(prod);
        let (r, failure, _) = resume_writes(&mut fake);
        assert_eq!((r, failure), (Ok(()), None), "the second attempt resumes it");
        let lost = fake.writes.iter().filter(|w| w.0 == usize::MAX).count();
        assert_eq!(lost, 2, "the loss the test made, and the one injected in the resume");
        let attempts = fake.writes[start..].iter().filter(|w| w.0 == off::STRTAB_BASE).count();
        assert_eq!(attempts, 2);
        // Each attempt's first enable lands on registers at reset and is never acknowledged
        // (CR0 held): a loss each time, so the resume fails as lost, not hung.
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        smmu.regs_mut().power_loss(Gbpa::ABORT);
        smmu.regs_mut().hold_cr0 = true;
        smmu.regs_mut().power_drops_at_cmdqen = RESUME_ATTEMPTS;
        assert_eq!(smmu.resume(), Err(SequenceError::PowerLost));
        assert_eq!(smmu.failure(), None);
        // Any other error of the last attempt is returned as it is (here the boot batch
        // rejected every time).
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        smmu.regs_mut().power_loss(Gbpa::ABORT);
        smmu.regs_mut().reject_opcode = Some(Command::cfgi_all().opcode_byte());
        let rejected = CmdError::Rejected { index: 0, reason: cerror::ILL };
        assert_eq!(smmu.resume(), Err(SequenceError::Command(rejected)));
        assert_eq!(smmu.failure(), None);
        // An SMMU that still holds the tables and does not answer is hung, as before.
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        smmu.poll_limit = 16;
        smmu.regs_mut().hold_commands = true;
        assert_eq!(smmu.submit(&[]), Err(CmdError::Timeout { polls: 16 }));
        assert!(smmu.failure().is_some());
    }

    #[test]
    fn a_slow_batch_after_an_acknowledged_rejection_is_no_error() {
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        let r = smmu.submit(&[[0xff, 0]]);
        assert_eq!(r, Err(CmdError::Rejected { index: 0, reason: cerror::ILL }));
        // GERROR.CMDQ_ERR and GERRORN.CMDQ_ERR are now both set: acknowledged, not active.
        assert_eq!(smmu.regs_mut().smmu.read32(off::GERROR), Gerror::CMDQ_ERR.bits());
        smmu.regs_mut().hold_commands = true;
        smmu.regs_mut().consume_at_cons_read = Some(3);
        assert_eq!(smmu.submit(&[Command::cfgi_ste(1).0]), Ok(()));
        assert_eq!(smmu.counters.command_errors, 1);
        // A second rejection is acknowledged as well (GERRORN toggles back).
        let r = smmu.submit(&[Command::cfgi_ste(2).0, [0xfe, 0]]);
        assert_eq!(r, Err(CmdError::Rejected { index: 1, reason: cerror::ILL }));
        assert_eq!(smmu.counters.command_errors, 2);
        assert_eq!(smmu.active_global_errors(), Gerror::empty());
        assert_eq!(smmu.regs_mut().smmu.read32(off::GERRORN), 0);
        smmu.submit(&[Command::cfgi_ste(3).0]).unwrap();
        assert_eq!(fake.opcodes()[4..], [0x46, 0x46, 0x03, 0x46, 0x03, 0x46, 0x46, 0x03, 0x46]);
    }

    #[test]
    fn global_errors_raised_again_are_acknowledged_again() {
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        for _ in 0..3 {
            smmu.regs_mut().raise(Gerror::SFM_ERR | Gerror::EVENTQ_ABT_ERR);
            let active = smmu.active_global_errors();
            assert_eq!(active, Gerror::SFM_ERR | Gerror::EVENTQ_ABT_ERR);
            smmu.ack_global_errors(active);
            assert_eq!(smmu.active_global_errors(), Gerror::empty());
            assert!(smmu.regs_mut().smmu.active_errors().is_empty());
        }
    }

    #[test]
    fn an_empty_event_queue_costs_one_read_and_no_write() {
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        let (reads, writes) = (smmu.regs_mut().reads, smmu.regs_mut().writes.len());
        let barriers = smmu.regs_mut().barriers.len();
        let d = smmu.drain_events(u32::MAX, |_| panic!("no record"));
        assert_eq!((d.records, d.overflowed), (0, false));
        assert_eq!(smmu.regs_mut().reads - reads, 1);
        assert_eq!(smmu.regs_mut().writes.len(), writes);
        assert_eq!(smmu.regs_mut().barriers.len(), barriers, "nor a barrier");
        smmu.regs_mut().post_event([0x10, 0, 0, 0]);
        assert_eq!(smmu.drain_events(u32::MAX, |_| {}).records, 1);
        assert_eq!(smmu.regs_mut().writes.last(), Some(&(off::EVTQ_CONS, 1)));
    }

    #[test]
    fn errors_say_what_went_wrong() {
        use std::string::ToString;
        let s = |e: &dyn core::fmt::Display| e.to_string();
        let rejected = |reason| CmdError::Rejected { index: 3, reason };
        assert_eq!(
            s(&rejected(cerror::ILL)),
            "command 3 rejected by the SMMU: illegal command (1)"
        );
        assert_eq!(
            s(&rejected(cerror::ABT)),
            "command 3 rejected by the SMMU: abort on command fetch (2)"
        );
        assert_eq!(
            s(&rejected(cerror::ATC_INV_SYNC)),
            "command 3 rejected by the SMMU: ATC invalidation timeout (3)"
        );
        assert_eq!(s(&rejected(0x7f)), "command 3 rejected by the SMMU: unknown error (127)");
        assert_eq!(
            s(&CmdError::Timeout { polls: 8 }),
            "a CMD_SYNC was not consumed within 8 reads of SMMU_CMDQ_CONS"
        );
        assert_eq!(s(&CmdError::Failed), "the SMMU has failed: nothing was sent");
        assert_eq!(s(&SequenceError::Failed), "the SMMU has failed: nothing was written");
        assert_eq!(s(&CmdError::TooLarge), "command batch larger than the queue");
        assert_eq!(s(&CmdError::PowerLost), "the SMMU lost power while a batch was queued");
        let gbpa = GbpaError::GbpaUpdateTimeout { last: 0x8000_1000 };
        assert_eq!(
            s(&SequenceError::Gbpa(gbpa)),
            "SMMU_GBPA.UPDATE did not clear within 1000000 reads (last read 0x80001000)"
        );
        let cr0 = SequenceError::Cr0AckTimeout { wrote: 0xd, last: 0x9 };
        assert_eq!(
            s(&cr0),
            "SMMU_CR0ACK did not follow SMMU_CR0 = 0x0000000d within 200000 reads (last read 0x00000009)"
        );
        assert_eq!(
            s(&SequenceError::Command(CmdError::Timeout { polls: 3 })),
            "command failed: a CMD_SYNC was not consumed within 3 reads of SMMU_CMDQ_CONS"
        );
        let failure = |timeout, containment| s(&Failure { timeout, containment });
        assert_eq!(
            failure(Timeout::CmdSync { polls: 3 }, Containment::Aborting),
            "a CMD_SYNC was not consumed within 3 reads of SMMU_CMDQ_CONS; GBPA.ABORT set and SMMUEN cleared: every stream aborts; the stream table in memory stays valid"
        );
        assert_eq!(
            failure(Timeout::Cr0Ack { wrote: 0, last: 1 }, Containment::AbortSetSmmuenKept),
            "SMMU_CR0ACK did not follow SMMU_CR0 = 0x00000000 within 200000 reads (last read 0x00000001); GBPA.ABORT set, but SMMUEN could not be cleared: the SMMU keeps the STEs it holds; the stream table in memory stays valid"
        );
        assert_eq!(s(&SequenceError::PowerLost), "SMMU lost power while being programmed");
        assert_eq!(s(&ProbeError::NoAArch64Tables), "SMMU has no AArch64 translation tables");
        assert_eq!(s(&ProbeError::NoStage2), "SMMU has no stage-2: devices cannot be confined");
        assert_eq!(s(&ProbeError::NoNesting), "SMMU has no stage-1: nesting is impossible");
        assert_eq!(s(&ProbeError::No4kGranule), "SMMU has no 4 KiB granule");
        assert_eq!(
            s(&ProbeError::StreamIdTooLarge { needed: 0x1_0000, sidsize: 16 }),
            "stream ID 0x10000 needs more than the SMMU's 16 SID bits"
        );
        assert_eq!(s(&ProbeError::Preset), "SMMU with preset table/queue addresses");
        assert_eq!(s(&ProbeError::OutOfMemory), "no memory for SMMU tables and queues");
        assert_eq!(
            s(&ProbeError::Enable(SequenceError::PowerLost)),
            "SMMU lost power while being programmed"
        );
    }

    #[test]
    fn a_power_loss_ends_the_wait_at_once() {
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        // The SMMU stops consuming (as if hung), then loses power: the driver must notice the
        // disabled queue on its first check instead of spending its poll budget.
        smmu.regs_mut().hold_commands = true;
        smmu.regs_mut().power_loss(0);
        smmu.regs_mut().reads = 0;
        assert_eq!(smmu.submit(&[Command::cfgi_ste(1).0]), Err(CmdError::PowerLost));
        assert!(smmu.regs_mut().reads < 10, "{} register reads", smmu.regs_mut().reads);
        assert_eq!(smmu.failure(), None, "a power loss is no failure");
    }

    #[test]
    fn suspend_aborts_before_disabling_and_resume_writes_gbpa_first() {
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, mut table) = init(&mut fake, 0x20);
        table.write_word(0x18, 1, 0x1234).unwrap();
        assert!(smmu.configured());
        // GBPA already says abort before suspend: suspend must still write it itself, before
        // SMMUEN = 0 (the hardware may have lost it; only the write + UPDATE proves it).
        assert!(Gbpa(smmu.regs_mut().read32(off::GBPA)).abort());
        let start = smmu.regs_mut().writes.len();
        smmu.suspend().unwrap();
        assert!(!smmu.configured());
        let n = {
            let f = &mut **smmu.regs_mut();
            let during = &f.writes[start..];
            let gbpa = during.iter().position(|w| w.0 == off::GBPA).expect("suspend writes GBPA");
            let cr0 = during.iter().position(|w| *w == (off::CR0, 0)).unwrap();
            assert!(gbpa < cr0, "GBPA.ABORT must be in place before SMMUEN = 0");
            assert_eq!(during[gbpa].1, Gbpa::ABORT | Gbpa::UPDATE | 0x1000);
            // Power is lost; the platform's GBPA reset value is bypass (0).
            f.power_loss(0);
            f.writes.len()
        };
        smmu.resume().unwrap();
        assert!(smmu.configured());
        assert_eq!(table.read(0x18)[1], 0x1234, "STEs live in hypervisor memory");
        let after = &fake.writes[n..];
        assert_eq!(after[0].0, off::GBPA, "first write after power-on is GBPA");
        assert_eq!(after[0].1, Gbpa::UPDATE | Gbpa::ABORT);
        let smmuen = after.iter().position(|w| w.0 == off::CR0 && w.1 & 1 != 0).unwrap();
        let base = after.iter().position(|w| w.0 == off::STRTAB_BASE).unwrap();
        assert!(base < smmuen);
        // After resume: CFGI_ALL, TLBI_NSNH_ALL, TLBI_EL2_ALL, SYNC before SMMUEN.
        let ops = fake.opcodes();
        assert_eq!(&ops[ops.len() - 4..], [0x04, 0x30, 0x20, 0x46]);
    }

    #[test]
    fn events_are_drained_in_order_and_overflow_acknowledged() {
        let mut fake = FakeSmmu::qemu();
        let (mut smmu, _) = init(&mut fake, 0x20);
        for i in 0..3 {
            smmu.regs_mut().post_event([0x10 | 0x18 << 32, 0, i, 0]);
        }
        let mut seen = std::vec::Vec::new();
        let d = smmu.drain_events(u32::MAX, |e| seen.push(e[2]));
        assert_eq!((d.records, d.overflowed), (3, false));
        assert_eq!(seen, [0, 1, 2]);
        // Fill the whole queue and one more: the SMMU signals an overflow.
        let cap = 1u64 << EVTQ_LOG2;
        for i in 0..cap + 1 {
            smmu.regs_mut().post_event([0x10 | 0x18 << 32, 0, i, 0]);
        }
        let d = smmu.drain_events(u32::MAX, |_| {});
        assert_eq!((d.records as u64, d.overflowed), (cap, true));
        assert_eq!(smmu.counters.evtq_overflows, 1);
        let d = smmu.drain_events(u32::MAX, |_| {});
        assert_eq!((d.records, d.overflowed), (0, false), "acknowledged");
    }

    /// The barriers and cache maintenance asked for from index `from` of `fake.barriers` on.
    fn maintenance(fake: &FakeSmmu, from: usize) -> std::vec::Vec<Barrier> {
        fake.barriers[from..]
            .iter()
            .map(|b| b.1)
            .filter(|b| matches!(b, Barrier::Clean(_) | Barrier::Invalidate(_)))
            .collect()
    }

    /// QEMU's SMMU, its IDR0.COHACC as given.
    fn with_cohacc(cohacc: bool) -> FakeSmmu {
        let mut ids = crate::iommu::soft::SmmuIdRegs::QEMU;
        ids.idr[0] = if cohacc { ids.idr[0] | Idr0::COHACC } else { ids.idr[0] & !Idr0::COHACC };
        FakeSmmu::with_ids(ids)
    }

    #[test]
    fn an_smmu_driven_as_coherent_must_report_coherent_access() {
        let mut fake = with_cohacc(false);
        let r = SmmuDriver::init(&mut fake, 0x20, true, IrqCtrl::empty(), Coherency::Coherent);
        assert_eq!(r.map(|_| ()), Err(ProbeError::NotCoherent));
        assert_eq!(
            ProbeError::NotCoherent.to_string(),
            "the platform says the SMMU is coherent but it does not report coherent access (IDR0.COHACC = 0): refusing to drive it as coherent"
        );
        assert!(fake.aborts(), "left aborting");
        assert!(fake.writes.iter().all(|w| w.0 != off::CR0), "nothing enabled");
        // Driven as non-coherent it starts, with nothing to note.
        let mut fake = with_cohacc(false).into_non_coherent();
        let (smmu, _t) = init(&mut fake, 0x20);
        assert_eq!((smmu.coherency(), smmu.snoop_unused()), (Coherency::NonCoherent, false));
        // An SMMU that could snoop, driven as non-coherent (the system does not snoop it): it
        // starts, and that is worth a line in the log.
        let mut fake = with_cohacc(true).into_non_coherent();
        let (smmu, _t) = init(&mut fake, 0x20);
        assert_eq!((smmu.coherency(), smmu.snoop_unused()), (Coherency::NonCoherent, true));
        let mut fake = with_cohacc(true);
        let (smmu, _t) = init(&mut fake, 0x20);
        assert_eq!((smmu.coherency(), smmu.snoop_unused()), (Coherency::Coherent, false));
    }

    #[test]
    fn the_platforms_word_is_the_coherency() {
        assert_eq!(Coherency::of(true), Coherency::Coherent);
        assert_eq!(Coherency::of(false), Coherency::NonCoherent);
    }

    #[test]
    fn cr1_declares_cacheable_walks_only_on_a_coherent_smmu() {
        use host_abi::smmu::regs::Cr1;
        for (fake, cache, sh) in
            [(FakeSmmu::qemu(), Cr1::WB, Cr1::ISH), (FakeSmmu::non_coherent(), Cr1::NC, Cr1::OSH)]
        {
            let mut fake = fake;
            let (smmu, _t) = init(&mut fake, 0x20);
            drop(smmu);
            let cr1 = Cr1(fake.smmu.read32(off::CR1));
            assert_eq!(
                [cr1.queue_ic(), cr1.queue_oc(), cr1.table_ic(), cr1.table_oc()],
                [cache; 4]
            );
            assert_eq!([cr1.queue_sh(), cr1.table_sh()], [sh; 2]);
        }
    }

    #[test]
    fn a_non_coherent_smmu_executes_each_batch_as_written_across_wraps() {
        // It reads only what was cleaned: a missing clean is a stale command executed (the
        // entry's previous lap) or an undefined one (never cleaned) rejected.
        let mut fake = FakeSmmu::non_coherent();
        let (mut smmu, _t) = init(&mut fake, 0x20);
        let start = smmu.regs_mut().consumed.len();
        let cmdq = smmu.cmdq.pa();
        let entries = |first: u64, n: u64| DmaRange { pa: cmdq + first * 16, len: n * 16 };
        let mut want = std::vec::Vec::new();
        let mut wraps = std::collections::BTreeSet::new();
        // Batches of 25 to 33 entries: laps of the queue that wrap inside batches at many
        // points.
        for b in 0..60u64 {
            let n = 25 + (b * 7) % 9;
            let cmds: std::vec::Vec<[u64; 2]> =
                (1..n).map(|i| Command::tlbi_nh_va(1, 2, (b << 20 | i) << 12).0).collect();
            let first = smmu.cmdq_prod.index() as u64;
            let from = smmu.regs_mut().barriers.len();
            smmu.submit(&cmds).unwrap();
            want.extend(cmds);
            want.push(Command::sync().0);
            // Exactly the batch's entries, in two ranges when it wraps.
            let cap = 1u64 << CMDQ_LOG2;
            let cleaned = if first + n <= cap {
                std::vec![Barrier::Clean(entries(first, n))]
            } else {
                wraps.insert(n - (cap - first));
                std::vec![
                    Barrier::Clean(entries(first, cap - first)),
                    Barrier::Clean(entries(0, n - (cap - first)))
                ]
            };
            assert_eq!(maintenance(smmu.regs_mut(), from), cleaned, "batch {b}");
        }
        assert!(wraps.len() >= 3, "wrapped after {wraps:?} entries");
        assert!(want.len() > 2 * (1 << CMDQ_LOG2));
        assert_eq!(smmu.regs_mut().consumed[start..], want[..]);
    }

    #[test]
    fn a_non_coherent_smmu_restarts_on_the_cleaned_fixup() {
        let mut fake = FakeSmmu::non_coherent();
        let (mut smmu, _t) = init(&mut fake, 0x20);
        smmu.poll_limit = 64;
        let r = smmu.submit(&[Command::cfgi_ste(1).0, [0xff, 0], Command::cfgi_ste(2).0]);
        // Had the SYNC written over the rejected command not been cleaned, the SMMU would read
        // the rejected one again at the restart, and again, until the batch timed out.
        assert_eq!(r, Err(CmdError::Rejected { index: 1, reason: cerror::ILL }));
        smmu.submit(&[Command::cfgi_ste(3).0]).unwrap();
        // Deeper in the queue: exactly the rewritten entry is cleaned (after the batch's).
        let mut cmds = std::vec![Command::cfgi_ste(4).0; 40];
        cmds[30] = [0xff, 0];
        let (first, from) = (smmu.cmdq_prod.index() as u64, smmu.regs_mut().barriers.len());
        let r = smmu.submit(&cmds);
        assert_eq!(r, Err(CmdError::Rejected { index: 30, reason: cerror::ILL }));
        let entry = |i: u64| DmaRange { pa: smmu.cmdq.pa() + i * 16, len: 16 };
        let batch = DmaRange { len: 41 * 16, ..entry(first) };
        let cleaned = std::vec![Barrier::Clean(batch), Barrier::Clean(entry(first + 30))];
        assert_eq!(maintenance(smmu.regs_mut(), from), cleaned);
        let ops = fake.opcodes();
        assert_eq!(&ops[4..10], [0x03, 0x46, 0x03, 0x46, 0x03, 0x46]);
        assert_eq!(ops.len(), 10 + 41, "the rejected command became a SYNC, the rest ran");
    }

    #[test]
    fn a_non_coherent_smmu_walks_the_stream_table_as_cleaned_before_smmuen() {
        let mut fake = FakeSmmu::non_coherent();
        let (smmu, table) = init(&mut fake, 0x20);
        drop(smmu);
        // Not cleaned, the SMMU would walk whatever memory held (bypass, in the model).
        for sid in [0, 0x17, 0x3f] {
            assert_eq!(fake.ste_in_use(sid), Some(Ok(ste::ABORT_WORDS)), "{sid:#x}");
        }
        drop(table);
    }

    #[test]
    fn a_non_coherent_smmu_s_records_are_read_as_written_across_wraps() {
        let mut fake = FakeSmmu::non_coherent();
        let (mut smmu, _t) = init(&mut fake, 0x20);
        let cap = 1u64 << EVTQ_LOG2;
        let evtq = smmu.evtq.pa();
        let (mut want, mut seen) = (std::vec::Vec::new(), std::vec::Vec::new());
        let mut i = 0u64;
        // Exactly the `n` records read from `cons` on, invalidated (two ranges when they wrap).
        let at = |first: u64, n: u64| {
            Barrier::Invalidate(DmaRange { pa: evtq + first * 32, len: n * 32 })
        };
        let expected = |cons: u64, n: u64| {
            if cons + n <= cap {
                std::vec![at(cons, n)]
            } else {
                std::vec![at(cons, cap - cons), at(0, n - (cap - cons))]
            }
        };
        // Rounds that cross the end of the queue three times, each drained in a bounded step
        // first (the third round's bounded step wraps itself).
        for round in [3, cap - 4, 10, cap - 2, 7, cap - 1] {
            for _ in 0..round {
                let r = [0x10 | 0x18 << 32, i, !i, i << 1];
                smmu.regs_mut().post_event(r);
                want.push(r);
                i += 1;
            }
            for max in [2, u32::MAX] {
                let cons = smmu.evtq_cons as u64 & (cap - 1);
                let n = if max == 2 { 2 } else { round - 2 };
                let from = smmu.regs_mut().barriers.len();
                let d = smmu.drain_events(max, |e| seen.push(e));
                assert_eq!((d.records as u64, d.overflowed), (n, false));
                assert_eq!(maintenance(smmu.regs_mut(), from), expected(cons, n), "{round} {max}");
            }
        }
        assert_eq!(seen.len(), want.len());
        assert!(seen == want, "every record as the SMMU wrote it, none stale, none lost");
    }

    #[test]
    fn a_non_coherent_event_queue_is_cleaned_and_invalidated_before_eventqen() {
        let mut fake = FakeSmmu::non_coherent();
        let (mut smmu, _t) = init(&mut fake, 0x20);
        let whole = smmu.evtq.range();
        let f = smmu.regs_mut();
        let enable = f
            .writes
            .iter()
            .position(|w| w.0 == off::CR0 && Cr0::from_bits_retain(w.1).contains(Cr0::EVENTQEN))
            .unwrap();
        assert!(
            f.barriers.iter().any(|b| b.1 == Barrier::Invalidate(whole) && b.0 <= enable),
            "the zeroed queue's dirty lines are gone before the SMMU writes it"
        );
        // Without that, a dirty line written back over a record loses it (the record test above
        // shows it by behaviour).
    }

    #[test]
    fn probe_refuses_what_cannot_confine_devices() {
        let probe = |idr0: u32, idr1: u32, idr5: u32, max: u32, nest: bool| {
            let mut f = FakeSmmu::with_ids(crate::iommu::soft::SmmuIdRegs {
                idr: [idr0, idr1, 0, 0, 0, idr5],
                ..crate::iommu::soft::SmmuIdRegs::QEMU
            });
            Features::probe(&mut f, max, nest)
        };
        let (i1, i5) = (Idr1::new(16, 16, 19, 19).0, 0x55);
        assert_eq!(probe(0x0d44_101a, i1, i5, 0x20, true), Err(ProbeError::NoStage2));
        assert_eq!(probe(0x0d44_1019, i1, i5, 0x20, true), Err(ProbeError::NoNesting));
        assert!(probe(0x0d44_1019, i1, i5, 0x20, false).is_ok());
        assert_eq!(probe(0x0d44_1013, i1, i5, 0x20, false), Err(ProbeError::NoAArch64Tables));
        assert_eq!(probe(0x0d44_101b, i1, 0x45, 0x20, false), Err(ProbeError::No4kGranule));
        assert_eq!(
            probe(0x0d44_101b, i1, i5, 0x1_0000, false),
            Err(ProbeError::StreamIdTooLarge { needed: 0x1_0000, sidsize: 16 })
        );
        assert_eq!(probe(0x0d44_101b, i1 | 1 << 29, i5, 0x20, false), Err(ProbeError::Preset));
        // 32 SID bits: every stream ID fits.
        let i1_32 = Idr1::new(32, 16, 19, 19).0;
        assert!(probe(0x0d44_101b, i1_32, i5, u32::MAX, false).is_ok());
        assert_eq!(
            probe(0x0d44_101b, Idr1::new(31, 16, 19, 19).0, i5, u32::MAX, false),
            Err(ProbeError::StreamIdTooLarge { needed: u32::MAX, sidsize: 31 })
        );
        let _ = ste::ABORT_WORDS;
    }
}
