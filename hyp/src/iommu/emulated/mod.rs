//! The SMMU the host kernel is given: the software SMMU in its guest-facing configuration.
//!
//! The host's own arm-smmu-v3 driver programs it as if it were hardware; its stream table,
//! context descriptors, page tables and queues live in the host's RAM and stay the host's. The
//! hypervisor never trusts them: it reads them when the architecture says the SMMU would, copies
//! what it reads once, and reaches the real SMMU only through the operations a guest's
//! hypercalls use ([`SmmuCalls`]), so there is one validation path:
//!
//! * a host STE is read when the host says so (CFGI_STE, CFGI_STE_RANGE, CFGI_ALL, or enabling
//!   the SMMU) and goes through [`validate::virtual_ste`]: stage 1 becomes nested on the host's
//!   stage 2, bypass becomes identity on it, abort stays abort, anything else is refused (the
//!   stream is blocked and the refusal logged);
//! * a PROD write makes the emulated SMMU copy each new command once out of the host's queue
//!   and plan what to do with it ([`plan`]: each opcode as [`validate::HOST_OPCODES`] says,
//!   translated into what a guest may ask, [`HostCommand`]), then carry the plan out: runs of
//!   commands validated exactly like a guest's INVALIDATE and submitted with one SYNC, STE
//!   refreshes; an illegal command (or one that validation refuses: the commands before it are
//!   submitted, in the same call, [`SmmuCalls::invalidate_prefix`]) stops the queue with
//!   GERROR.CMDQ_ERR and CMDQ_CONS.ERR as hardware does, so the host's own recovery runs;
//! * a CMD_SYNC with CS = SIG_IRQ (IDR0.MSI is advertised) completes with its MSI: MSIDATA
//!   written at MSIADDR, which must be 4 bytes of the host's own RAM (checked when planned; any
//!   other address stops the queue, CERROR_ILL), through the same checked path as its event
//!   records. Linux then polls that word instead of CMDQ_CONS; a queue the access budget stopped
//!   is then continued by the hypervisor's own interrupt ([`VirtualSmmu::wants_continuation`]);
//! * the host's events are written into its own event queue and its event interrupt raised;
//! * GBPA always reads ABORT and ignores writes; the host's SMMUEN is its power vote.
//!
//! Pure and host-tested: memory through [`GuestMemory`], the SMMU service through
//! [`SmmuCalls`], interrupts returned to the caller.

use crate::iommu::driver::ste::Domain;
use crate::iommu::pm::Vote;
use crate::iommu::service::events::RING_CAPACITY;
use crate::iommu::service::SmmuCalls;
use crate::iommu::soft::{EventPost, MemFault, SmmuIdRegs, SmmuMemory, SoftSmmu, WriteEffect};
use crate::iommu::validate::{self, HostOp, SmmuCaps};
use crate::vm::memory::{GuestMemory, GuestRange};
use alloc::vec::Vec;
use host_abi::smmu::regs::{cerror, emulated_idr0, off, Cr0, Gbpa, Gerror, Idr1, Idr5};
use host_abi::smmu::{cmd, Command, Ste};
use host_abi::HypError;
use plan::{msi_of, End, Msi, Plan, Queue, Seen, Short, Step};
use platform::VmSpec;
use zerocopy::IntoBytes;

/// The host's view of memory, as the emulated SMMU reaches it: IPAs of its RAM only (and only
/// if `mem` is its memory: any other refuses every access, a fault).
pub struct HostMemory<'a> {
    /// The host.
    pub spec: &'static VmSpec,
    /// Its RAM.
    pub mem: &'a mut dyn GuestMemory,
}

impl SmmuMemory for HostMemory<'_> {
    fn read(&mut self, addr: u64, out: &mut [u64]) -> Result<(), MemFault> {
        let r =
            GuestRange::of(self.spec, addr, out.len() as u64 * 8).map_err(|_| MemFault { addr })?;
        // One copy out of the host's memory (its little-endian layout is ours).
        self.mem.read(r, out.as_mut_bytes()).map_err(|_| MemFault { addr })?;
        #[cfg(target_endian = "big")]
        for w in out.iter_mut() {
            *w = u64::from_le(*w);
        }
        Ok(())
    }
    fn write(&mut self, addr: u64, data: &[u64]) -> Result<(), MemFault> {
        let r = GuestRange::of(self.spec, addr, data.len() as u64 * 8)
            .map_err(|_| MemFault { addr })?;
        let mut bytes = [0u8; 64];
        for (chunk, words) in data.chunks(8).enumerate() {
            let n = words.len() * 8;
            for (i, w) in words.iter().enumerate() {
                bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
            }
            let sub = r.sub(chunk as u64 * 64, n as u64).ok_or(MemFault { addr })?;
            self.mem.write(sub, &bytes[..n]).map_err(|_| MemFault { addr })?;
        }
        Ok(())
    }
}

impl HostMemory<'_> {
    /// Writes the 32-bit `value` at `addr` (a CMD_SYNC's MSI), if those four bytes are its RAM
    /// (as every access: not the hypervisor's, not a guest's, not its shadow CDs) and `addr`
    /// is 4-byte aligned; otherwise nothing is written.
    pub fn write_word(&mut self, addr: u64, value: u32) -> Result<(), MemFault> {
        let r = self.word_target(addr).ok_or(MemFault { addr })?;
        self.write_word_in(r, value)
    }

    /// Where [`Self::write_word`] may write at `addr`, if it may.
    pub fn word_target(&self, addr: u64) -> Option<GuestRange> {
        if !addr.is_multiple_of(4) {
            return None;
        }
        GuestRange::of(self.spec, addr, 4).ok()
    }

    /// Writes the 32-bit `value` into `range` ([`Self::word_target`]'s).
    pub fn write_word_in(&mut self, range: GuestRange, value: u32) -> Result<(), MemFault> {
        let addr = range.ipa();
        // From a `u32` (4-byte aligned, unlike a byte array): one 32-bit store into the host.
        let word = value.to_le();
        self.mem.write(range, word.as_bytes()).map_err(|_| MemFault { addr })
    }
}

/// The host's command queue as the planner reads it: the emulated SMMU's registers and the
/// host's memory.
struct HostQueue<'a, 'b> {
    smmu: &'a SoftSmmu,
    mem: &'a mut HostMemory<'b>,
}

impl Queue for HostQueue<'_, '_> {
    #[inline]
    fn fetch(&mut self, k: u32, out: &mut [Command]) -> Option<Result<usize, MemFault>> {
        self.smmu.fetch_commands(self.mem, k, out)
    }
    #[inline]
    fn after(&self, k: u32) -> u32 {
        self.smmu.commands_after(k)
    }
    #[inline]
    fn fetch_all(&mut self, out: &mut [Command]) -> Result<usize, usize> {
        self.smmu.fetch_all(self.mem, out)
    }
    fn msi_target(&self, addr: u64) -> Option<GuestRange> {
        self.mem.word_target(addr)
    }
}

/// What the emulated SMMU needs from its surroundings for one access.
pub struct Context<'a> {
    /// The host's memory.
    pub mem: HostMemory<'a>,
    /// The SMMU service (the same operations a VM's hypercalls reach).
    pub smmu: &'a mut dyn SmmuCalls,
}

/// A host command, translated into what the hypervisor does for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostCommand {
    /// CMD_SYNC: completes once everything before it completed on the real SMMU.
    Sync,
    /// Re-read and shadow the host STEs of the streams `first..first + count`.
    RefreshStes {
        /// First stream ID.
        first: u32,
        /// How many.
        count: u64,
    },
    /// A command a guest's INVALIDATE could carry (validated on that path: VMID forced).
    Invalidate(Command),
    /// Valid, nothing to do (prefetches).
    Nothing,
    /// Illegal here: stop the queue with this CMDQ_CONS.ERR.
    Illegal(u32),
}

/// Whether a host command with opcode byte `op` goes to the guests' INVALIDATE path exactly as
/// the host wrote it ([`HostOp::Guest`] in [`validate::HOST_OPCODES`]: stage-1 TLB, CD and ATC
/// invalidations): [`translate`] gives `HostCommand::Invalidate` of the command itself for
/// these and only these, so a run of them is gathered with one copy.
#[inline]
fn pass_through(op: u8) -> bool {
    validate::host_op(op) == HostOp::Guest
}

/// A host CMD_SYNC the emulated SMMU completes, as far as its fields go: by polling CONS
/// (CS = none), with an event (CS = SEV, harmless) or with its MSI (CS = SIG_IRQ: MSIDATA
/// written at MSIADDR, whose address the planner checks, [`Queue::msi_target`]); not the
/// reserved CS encoding 0b11. (MSH and MSIATTR say how the MSI is written: the hypervisor writes
/// it as it writes event records, with the coherency it advertises.)
fn host_sync_ok(c: &Command) -> bool {
    c.field(cmd::SYNC_CS) != 3 && validate::host_fields(c).is_ok()
}

/// What a host command becomes on the guests' INVALIDATE path, if it goes there: exactly what
/// [`translate`] says, in one step (both are read off [`validate::HOST_OPCODES`]).
/// Invalidations as they are (TLBI_NSNH_ALL as the host VMID's TLBI_NH_ALL), a CMD_SYNC or a
/// prefetch as a plain CMD_SYNC (which that path drops: its batch ends with the hypervisor's own
/// SYNC). `None`: an STE refresh or an illegal command.
#[inline]
fn for_guest_path(c: &Command) -> Option<Command> {
    match validate::host_op(c.opcode_byte()) {
        HostOp::Guest => Some(*c),
        HostOp::Sync => host_sync_ok(c).then(Command::sync),
        HostOp::Prefetch => validate::host_fields(c).is_ok().then(Command::sync),
        HostOp::NsnhAll => validate::host_fields(c).is_ok().then(|| Command::tlbi_nh_all(0)),
        HostOp::RefreshSte | HostOp::RefreshRange | HostOp::Illegal => None,
    }
}

/// Translates one host command, as [`validate::HOST_OPCODES`] says. Everything the emulated
/// SMMU does not advertise (stage 2, EL2 translation, ATS, PRI, stall) is illegal, as it
/// would be on hardware without it, and so is a command the emulated SMMU executes itself with a
/// secure or reserved field set ([`validate::host_fields`]). (A CMD_SYNC whose MSI address is
/// not the host's is refused by the planner, which knows the host's memory.)
pub fn translate(c: &Command) -> HostCommand {
    let op = validate::host_op(c.opcode_byte());
    if op == HostOp::Guest {
        // Validated on the guests' path.
        return HostCommand::Invalidate(*c);
    }
    if validate::host_fields(c).is_err() {
        return HostCommand::Illegal(cerror::ILL);
    }
    let sid = c.field(cmd::SID) as u32;
    match op {
        HostOp::Sync if host_sync_ok(c) => HostCommand::Sync,
        HostOp::Prefetch => HostCommand::Nothing,
        // All of the host's non-hypervisor TLB entries: its VMID's stage-1 entries.
        HostOp::NsnhAll => HostCommand::Invalidate(Command::tlbi_nh_all(0)),
        HostOp::RefreshSte => HostCommand::RefreshStes { first: sid, count: 1 },
        HostOp::RefreshRange => {
            // 2^(Range + 1) streams from SID aligned down; Range 31: every stream.
            let range = c.field(cmd::RANGE) as u32;
            if range >= 31 {
                return HostCommand::RefreshStes { first: 0, count: 1 << 32 };
            }
            let count = 1u64 << (range + 1);
            let first = (sid as u64 & !(count - 1)) as u32;
            HostCommand::RefreshStes { first, count }
        }
        HostOp::Sync | HostOp::Guest | HostOp::Illegal => HostCommand::Illegal(cerror::ILL),
    }
}

/// Work the emulated SMMU does for the host in one trapped access, in units of one command looked
/// at. Then it returns, and the rest of the host's queue waits for its next access to the SMMU
/// (its driver polls CMDQ_CONS for space and for each CMD_SYNC), as a hardware SMMU consumes its
/// queue asynchronously. However large the host made its queue, no access holds the SMMU
/// service's lock for more than this (plus one refresh of each of its streams, a number the
/// manifest fixes).
pub const ACCESS_BUDGET: u32 = 256;

/// What one STE refresh (read, validate, install) costs against [`ACCESS_BUDGET`].
pub const REFRESH_COST: u32 = 16;

/// What one submission to the real SMMU (validation, the commands and a real SYNC) costs
/// against [`ACCESS_BUDGET`], beyond its commands.
pub const SEND_COST: u32 = 8;

/// EmulatedCounters (in the line the hypervisor logs when the host stops; not in SMMU_STATS, which
/// counts the real SMMU's work).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmulatedCounters {
    /// Host commands consumed.
    pub commands: u64,
    /// Host CMD_SYNCs completed (after the real SYNC).
    pub syncs: u64,
    /// Host STEs read and shadowed (blocked ones included).
    pub stes_shadowed: u64,
    /// Host STEs refused by validation (the stream was blocked).
    pub stes_refused: u64,
    /// Host STEs whose context descriptors were refused when shadowed (the stream was blocked).
    pub cds_refused: u64,
    /// Event records written into the host's event queue.
    pub events_delivered: u64,
    /// Event records the host's queue could not take (overflow signalled, or disabled).
    pub events_discarded: u64,
    /// Commands that stopped the host's queue (CMDQ_ERR).
    pub command_errors: u64,
    /// Register accesses to offsets the emulated SMMU does not implement.
    pub unknown_accesses: u64,
    /// Shadow STEs the SMMU service failed to install (the stream was left blocked).
    pub ste_installs_failed: u64,
    /// Notices not logged: their kind had been logged before (each is counted above as well).
    pub notices_unlogged: u64,
    /// Accesses that stopped consuming at the access budget with commands left.
    pub budget_stops: u64,
    /// CMDQ_CONS reads that went on consuming what an earlier access left.
    pub continued: u64,
    /// The hypervisor's own interrupts that went on consuming what an access left (a host that
    /// completes its CMD_SYNCs by MSI may never read CMDQ_CONS again).
    pub continued_async: u64,
    /// CMD_SYNC MSIs written into the host's memory.
    pub msi_writes: u64,
    /// CMD_SYNCs refused for their MSI address (not 4 bytes of the host's own RAM): each
    /// stopped the queue (CERROR_ILL; counted in `command_errors` too).
    pub msi_refused: u64,
    /// Trapped accesses to the emulated SMMU's registers (each 4- or 8-byte load or store).
    pub accesses: u64,
    /// Of those, CMDQ_PROD writes.
    pub prod_writes: u64,
    /// Of those, CMDQ_CONS reads.
    pub cons_reads: u64,
    /// Accesses whose commands were done without planning ([`Plan::short`]: a few
    /// invalidations and a CMD_SYNC, as Linux's strict unmap writes them).
    pub short: u64,
}

/// Every counter as `name=value`, space-separated: the machine-readable line xtask reads.
impl core::fmt::Display for EmulatedCounters {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let EmulatedCounters {
            commands,
            syncs,
            stes_shadowed,
            stes_refused,
            cds_refused,
            events_delivered,
            events_discarded,
            command_errors,
            unknown_accesses,
            ste_installs_failed,
            notices_unlogged,
            budget_stops,
            continued,
            continued_async,
            msi_writes,
            msi_refused,
            accesses,
            prod_writes,
            cons_reads,
            short,
        } = self;
        write!(
            f,
            "commands={commands} syncs={syncs} stes_shadowed={stes_shadowed} \
             stes_refused={stes_refused} cds_refused={cds_refused} \
             events_delivered={events_delivered} events_discarded={events_discarded} \
             command_errors={command_errors} unknown_accesses={unknown_accesses} \
             ste_installs_failed={ste_installs_failed} notices_unlogged={notices_unlogged} \
             budget_stops={budget_stops} continued={continued} \
             continued_async={continued_async} msi_writes={msi_writes} \
             msi_refused={msi_refused} accesses={accesses} prod_writes={prod_writes} \
             cons_reads={cons_reads} short={short}"
        )
    }
}

/// Interrupt lines the emulated SMMU raised for the host (edge: pend the host's SPI).
pub use crate::iommu::soft::Irqs;

/// A log-worthy thing that happened (the EL2 side logs each kind once or counts it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A host STE was refused: the stream is blocked.
    SteRefused {
        /// Stream ID.
        sid: u32,
        /// Why.
        why: HypError,
    },
    /// The context descriptors a host STE points at were refused: the stream is blocked.
    CdRefused {
        /// Stream ID.
        sid: u32,
        /// Why.
        why: HypError,
    },
    /// A host STE could not be read (outside its table or its RAM): the stream is blocked.
    SteUnreadable {
        /// Stream ID.
        sid: u32,
    },
    /// A host command stopped its queue.
    IllegalCommand {
        /// The command.
        cmd: Command,
        /// Its CMDQ_CONS.ERR.
        err: u32,
    },
    /// The SMMU service could not install a host STE's shadow: the stream is blocked.
    SteInstallFailed {
        /// Stream ID.
        sid: u32,
    },
    /// An access to an offset the emulated SMMU does not implement.
    UnknownRegister {
        /// Byte offset.
        offset: usize,
    },
    /// A CMD_SYNC asked for its MSI at an address that is not 4 bytes of the host's own RAM:
    /// it stopped the queue (CERROR_ILL).
    MsiRefused {
        /// The command.
        cmd: Command,
        /// MSIADDR.
        addr: u64,
    },
}

impl Notice {
    /// The kind of a notice, for logging each kind once per VM (a number below 64): the type,
    /// and for refusals the reason (so each different refusal is logged once).
    pub fn kind(&self) -> u32 {
        match *self {
            Notice::SteRefused { why, .. } => (why.code().unsigned_abs() as u32).min(15),
            Notice::SteUnreadable { .. } => 16,
            Notice::SteInstallFailed { .. } => 17,
            Notice::IllegalCommand { err, .. } => 18 + err.min(7),
            Notice::UnknownRegister { .. } => 26,
            Notice::CdRefused { why, .. } => 27 + (why.code().unsigned_abs() as u32).min(15),
            Notice::MsiRefused { .. } => 43,
        }
    }
}

/// Most notices kept between two [`VirtualSmmu::take_notices`].
pub const NOTICES: usize = 8;

/// The emulated SMMU of one VM (the host).
pub struct VirtualSmmu {
    smmu: SoftSmmu,
    /// The VM it belongs to.
    pub vm: u32,
    /// The streams the VM owns (their STEs are shadowed), in increasing order.
    streams: Vec<u32>,
    /// EmulatedCounters.
    pub counters: EmulatedCounters,
    notices: [Option<Notice>; NOTICES],
    /// What the access being served does with the host's command queue (planned, then done).
    plan: Plan,
    /// The kinds of notice logged already (bit [`Notice::kind`]).
    reported: u64,
    /// Whether the host has asked for a CMD_SYNC's MSI since it last enabled its command queue:
    /// it may then wait for the MSI without reading CMDQ_CONS, so a queue the access budget
    /// stopped is continued by the hypervisor itself ([`Self::wants_continuation`]).
    msi_polling: bool,
    /// Whether the real SMMU is driven as coherent (what IDR0.COHACC says to the host): if not,
    /// the host's structures are read and its event records written through
    /// [`crate::vm::memory::NonCoherent`] ([`VirtualSmmu::coherent`]).
    coherent: bool,
}

/// The ID registers the host sees: what is shadowed correctly and nothing more. Stage 1 only
/// (AArch64 tables, 16-bit ASIDs, little-endian walks), linear or two-level stream tables, MSIs
/// (a CMD_SYNC's MSI written into the host's RAM; its event and global-error interrupts stay
/// wired: with an IRQ_CFG0 address set they are still the wired SPIs), no stage 2, no
/// ATS/PRI/stall/HYP/BTM; coherent access (COHACC) exactly when the hypervisor
/// drives the real SMMU as `coherent` (the host's tree says `dma-coherent` then, and only
/// then: a host that believed a non-coherent SMMU coherent would not clean what the real SMMU
/// walks through its shadows, its page tables); the real SMMU's substream and stream ID sizes;
/// queues as large as the driver may want; 4 KiB pages; a 36-bit output (IPA) size, inside the
/// host's 39-bit stage 2.
pub fn advertised(real: &SmmuCaps, sid_bits: u32, coherent: bool) -> SmmuIdRegs {
    SmmuIdRegs {
        idr: [
            emulated_idr0(coherent),
            Idr1::new(sid_bits, real.ssid_bits as u32, 19, 19).0,
            0,
            0,
            0,
            Idr5::GRAN4K | 1,
        ],
        iidr: 0,
        aidr: 0,
    }
}

impl VirtualSmmu {
    /// The emulated SMMU of VM `vm`, owning `streams`, on a real SMMU with `caps`, driven as
    /// `coherent` or not (the boot option `smmu_coherent`, by default the board's).
    pub fn new(vm: u32, streams: &[u32], caps: &SmmuCaps, coherent: bool) -> Self {
        let sid_bits = streams.iter().map(|s| 32 - s.leading_zeros()).max().unwrap_or(1).max(8);
        let mut streams = streams.to_vec();
        streams.sort_unstable();
        streams.dedup();
        let plan = Plan::new(streams.len());
        VirtualSmmu {
            smmu: SoftSmmu::new(advertised(caps, sid_bits, coherent), Gbpa::ABORT),
            vm,
            streams,
            counters: EmulatedCounters::default(),
            notices: [None; NOTICES],
            plan,
            reported: 0,
            msi_polling: false,
            coherent,
        }
    }

    /// Whether it advertises (and the real SMMU is driven with) coherent access. If not, every
    /// access's host memory must be [`crate::vm::memory::NonCoherent`] over it
    /// ([`crate::vm::memory::with_coherency`]): every read of the host's structures (level-1
    /// descriptors, STEs, CDs, commands) first invalidates the hypervisor's lines of them, and
    /// every event record written is cleaned to memory before the access returns, so before the
    /// host can see EVTQ_PROD move. Linux maps them non-cacheable on a non-coherent SMMU.
    pub fn coherent(&self) -> bool {
        self.coherent
    }

    /// The register file (tests and the EL2 side's log).
    pub fn registers(&self) -> &SoftSmmu {
        &self.smmu
    }

    /// Queues `n` for the log if it is the first of its kind (see [`Notice::kind`]); every
    /// notice is counted by its own counter, and the counts are what the log shows of the rest.
    /// However often a VM provokes one, the hypervisor logs a bounded number of lines.
    fn notice(&mut self, n: Notice) {
        let bit = 1u64 << n.kind();
        if self.reported & bit != 0 {
            self.counters.notices_unlogged += 1;
            return;
        }
        self.reported |= bit;
        if let Some(slot) = self.notices.iter_mut().find(|s| s.is_none()) {
            *slot = Some(n);
        }
    }

    /// Whether there are notices to take.
    pub fn has_notices(&self) -> bool {
        self.notices[0].is_some()
    }

    /// Notices since the last call (at most [`NOTICES`]; the rest are only counted).
    pub fn take_notices(&mut self) -> [Option<Notice>; NOTICES] {
        core::mem::replace(&mut self.notices, [None; NOTICES])
    }

    /// Interrupts raised for the host since the last call.
    pub fn take_irqs(&mut self) -> Irqs {
        self.smmu.take_irqs()
    }

    /// A load of `size` bytes (4 or 8) at byte `offset` of the register space.
    pub fn read(&mut self, offset: usize, size: u8) -> u64 {
        self.counters.accesses += 1;
        self.counters.cons_reads += (offset == off::CMDQ_CONS) as u64;
        let lo = self.read32(offset) as u64;
        if size == 8 {
            lo | (self.read32(offset + 4) as u64) << 32
        } else {
            lo
        }
    }

    fn read32(&mut self, offset: usize) -> u32 {
        let before = self.smmu.unknown_accesses;
        let v = self.smmu.read32(offset);
        if self.smmu.unknown_accesses != before {
            self.unknown(offset);
        }
        v
    }

    /// An access to no register: read as zero, written to nothing (as hardware does), counted,
    /// the first one reported.
    fn unknown(&mut self, offset: usize) {
        self.counters.unknown_accesses += 1;
        self.notice(Notice::UnknownRegister { offset });
    }

    /// A store of `size` bytes (4 or 8) at byte `offset`.
    pub fn write(&mut self, offset: usize, size: u8, value: u64, ctx: &mut Context<'_>) {
        self.counters.accesses += 1;
        self.counters.prod_writes += (offset == off::CMDQ_PROD) as u64;
        self.write32(offset, value as u32, ctx);
        if size == 8 {
            self.write32(offset + 4, (value >> 32) as u32, ctx);
        }
    }

    fn write32(&mut self, offset: usize, value: u32, ctx: &mut Context<'_>) {
        if offset == off::GBPA {
            // Always abort: the host cannot ask for bypass. Writes change nothing (the value
            // read back never shows UPDATE, so the host's handshake completes).
            return;
        }
        match self.smmu.write32(offset, value) {
            WriteEffect::Cr0 { old, new } => {
                if old.contains(Cr0::SMMUEN) != new.contains(Cr0::SMMUEN) {
                    // The host's SMMUEN is its power vote, and decides whether its streams
                    // translate (its STEs) or abort (GBPA: always abort).
                    let on = new.contains(Cr0::SMMUEN);
                    let vote = if on { Vote::NeedOn } else { Vote::AllowOff };
                    if on {
                        ctx.smmu.pm_vote(self.vm, vote);
                        self.refresh_all(ctx);
                    } else {
                        self.refresh_all(ctx);
                        ctx.smmu.pm_vote(self.vm, vote);
                    }
                }
                if new.contains(Cr0::CMDQEN) && !old.contains(Cr0::CMDQEN) {
                    // A queue enabled afresh: completed by CONS until it asks for an MSI.
                    self.msi_polling = false;
                    self.consume(ctx);
                }
            }
            WriteEffect::CmdqProd => self.consume(ctx),
            WriteEffect::GerrorAck(acked) if acked.contains(Gerror::CMDQ_ERR) => self.consume(ctx),
            WriteEffect::EvtqCons => self.deliver_events(ctx),
            WriteEffect::Unknown => self.unknown(offset),
            _ => {}
        }
    }

    /// Re-reads the host STEs of all its streams and shadows each, in increasing order.
    fn refresh_all(&mut self, ctx: &mut Context<'_>) {
        for i in 0..self.streams.len() {
            self.refresh_one(self.streams[i], ctx);
        }
    }

    /// Re-reads the host STE of its stream `sid` and shadows it.
    fn refresh_one(&mut self, sid: u32, ctx: &mut Context<'_>) {
        let domain = self.host_domain(sid, ctx);
        self.counters.stes_shadowed += 1;
        match ctx.smmu.attach(self.vm, sid, domain, &*ctx.mem.mem) {
            Ok(()) => {}
            // The SMMU failed it: the service left the stream blocked.
            Err(HypError::DeviceError) => self.install_failed(sid),
            // Its CD table was refused (nothing changed there): blocked here, and said.
            Err(why) => {
                self.counters.cds_refused += 1;
                self.notice(Notice::CdRefused { sid, why });
                if ctx.smmu.attach(self.vm, sid, Domain::Blocked, &*ctx.mem.mem).is_err() {
                    self.install_failed(sid);
                }
            }
        }
    }

    /// The SMMU service could not install a shadow STE: it left the stream blocked. Said once
    /// per kind, then counted.
    fn install_failed(&mut self, sid: u32) {
        self.counters.ste_installs_failed += 1;
        self.notice(Notice::SteInstallFailed { sid });
    }

    /// The domain the host's STE of `sid` asks for: blocked while its SMMU is disabled (GBPA
    /// is abort) or when the STE cannot be read or is refused.
    fn host_domain(&mut self, sid: u32, ctx: &mut Context<'_>) -> Domain {
        if !self.smmu.cr0().contains(Cr0::SMMUEN) {
            return Domain::Blocked;
        }
        let words = match self.smmu.lookup_ste(&mut ctx.mem, sid) {
            Ok(w) => w,
            Err(_) => {
                self.counters.stes_refused += 1;
                self.notice(Notice::SteUnreadable { sid });
                return Domain::Blocked;
            }
        };
        let caps = match ctx.smmu.owned_stream(self.vm, sid) {
            Ok(c) => c,
            Err(_) => return Domain::Blocked,
        };
        match validate::virtual_ste(&Ste(words), ctx.mem.spec, &caps) {
            Ok(d) => d,
            Err(why) => {
                self.counters.stes_refused += 1;
                self.notice(Notice::SteRefused { sid, why });
                Domain::Blocked
            }
        }
    }

    /// Whether the host's command queue holds commands the emulated SMMU has not consumed
    /// (enabled, not stopped).
    pub fn commands_pending(&self) -> bool {
        self.smmu.cr0().contains(Cr0::CMDQEN)
            && !self.smmu.cmdq_stopped()
            && self.smmu.commands_after(0) > 0
    }

    /// The host looks at its queue (a CMDQ_CONS read): the emulated SMMU goes on consuming what
    /// an earlier access left, within the access budget.
    pub fn poll(&mut self, ctx: &mut Context<'_>) {
        if self.commands_pending() {
            self.counters.continued += 1;
            self.consume(ctx);
        }
    }

    /// Whether the access budget left commands in a queue whose host completes its CMD_SYNCs by
    /// MSI (it asked for one since it enabled the queue): it may wait for that MSI without ever
    /// reading CMDQ_CONS again, so the hypervisor must go on by itself
    /// ([`Self::continue_queue`], from an interrupt of its own on the host's CPU). A host that
    /// completes by CONS goes on with its next CMDQ_CONS read ([`Self::poll`]).
    pub fn wants_continuation(&self) -> bool {
        self.msi_polling && self.commands_pending()
    }

    /// The hypervisor's own continuation of a queue the access budget stopped (see
    /// [`Self::wants_continuation`]): one more access's worth, within the access budget.
    pub fn continue_queue(&mut self, ctx: &mut Context<'_>) {
        if self.wants_continuation() {
            self.counters.continued_async += 1;
            self.consume(ctx);
        }
    }

    /// Consumes the host's command queue from CONS towards PROD, at most [`ACCESS_BUDGET`]'s
    /// worth of work: planned first ([`Plan::make`]: each command copied once, the guest-path
    /// ones gathered into one batch up to the next STE refresh or the end, STE refreshes
    /// coalesced and before any later invalidation), then done ([`Self::execute`]). CONS then
    /// moves past everything done: every CMD_SYNC among it is complete. What is left waits for
    /// the host's next access.
    fn consume(&mut self, ctx: &mut Context<'_>) {
        let mut queue = HostQueue { smmu: &self.smmu, mem: &mut ctx.mem };
        match self.plan.short(&mut queue) {
            Ok(short) => return self.execute_short(short, ctx),
            Err(fetched) => self.plan.make_after(&self.streams, &mut queue, fetched),
        }
        self.execute(ctx);
    }

    /// Carries out the common access ([`Plan::short`]) as [`Self::execute`] would carry out its
    /// plan: its commands sent as one submission (none for a SYNC alone), then the SYNC's MSI
    /// written and CONS moved past all of them; if the service refuses a command, the queue
    /// stops on it.
    fn execute_short(&mut self, short: Short, ctx: &mut Context<'_>) {
        let n = short.n as usize;
        self.counters.short += 1;
        self.count(short.seen());
        // The host asked for an MSI: it may wait for it alone from now on.
        self.msi_polling |= short.msi.is_some();
        if short.sends() {
            // Without the SYNC, which the guests' path drops (its batch ends with the
            // hypervisor's own SYNC): a failure of the whole submission is the SYNC's, as
            // `execute` names it.
            let cmds = &self.plan.commands()[..n - short.sync as usize];
            if let Err((i, _)) = ctx.smmu.invalidate_prefix(self.vm, cmds, &*ctx.mem.mem) {
                // A SYNC is last: no MSI is due before the command refused.
                let at = i.min(n - 1);
                return self.stop(at as u32, cerror::ILL, self.plan.commands()[at]);
            }
        }
        if let Some(m) = short.msi {
            self.write_msi(m, ctx);
        }
        self.smmu.consume_n(n as u32);
    }

    /// Carries out the plan against the SMMU service, step by step: each submission on the
    /// guests' INVALIDATE path (validated there, one SYNC), each refresh read, validated and
    /// installed; then CONS moves or the queue stops as the plan ends. If the service refuses a
    /// command of a submission, the valid ones before it were sent (as the queue would have
    /// executed them), the queue stops on it and nothing after it is done.
    fn execute(&mut self, ctx: &mut Context<'_>) {
        for s in 0..self.plan.steps().len() {
            match self.plan.steps()[s] {
                Step::Refresh { from, to } => {
                    for i in from as usize..to as usize {
                        self.refresh_one(self.plan.refreshes()[i], ctx);
                    }
                }
                Step::Submit { start, end, seen } => {
                    let (start, end) = (start as usize, end as usize);
                    if let Err(r) = send(self.vm, &self.plan.commands()[start..end], ctx) {
                        self.count(seen);
                        let at = start + r;
                        self.complete_msis(at as u32, ctx);
                        self.stop(at as u32, cerror::ILL, self.plan.commands()[at]);
                        return;
                    }
                }
            }
        }
        self.count(self.plan.seen());
        match self.plan.end() {
            End::Advance { consumed } => {
                self.complete_msis(consumed, ctx);
                self.smmu.consume_n(consumed)
            }
            End::Stop { at, err, cmd } => {
                self.complete_msis(at, ctx);
                self.stop(at, err, cmd)
            }
        }
    }

    /// Writes the MSI of every CMD_SYNC of the plan among the first `done` entries after CONS
    /// (all of them done: every command before each SYNC completed on the real SMMU), in order,
    /// before CONS passes them. Each address was checked when planned; a write the host's
    /// memory still refuses writes nothing and is counted as refused.
    #[inline]
    fn complete_msis(&mut self, done: u32, ctx: &mut Context<'_>) {
        if self.plan.msis().is_empty() {
            return;
        }
        self.msi_polling = true;
        for i in 0..self.plan.msis().len() {
            let m = self.plan.msis()[i];
            if u32::from(m.at) >= done {
                break;
            }
            self.write_msi(m, ctx);
        }
    }

    /// Writes one SYNC's MSI (its address checked when planned), counted; a write the host's
    /// memory still refuses writes nothing and is counted as refused.
    #[inline]
    fn write_msi(&mut self, m: Msi, ctx: &mut Context<'_>) {
        match ctx.mem.write_word_in(m.range, m.data) {
            Ok(()) => self.counters.msi_writes += 1,
            Err(_) => self.counters.msi_refused += 1,
        }
    }

    /// Counts what the planner looked at.
    fn count(&mut self, seen: Seen) {
        self.counters.commands += seen.commands as u64;
        self.counters.syncs += seen.syncs as u64;
        self.counters.budget_stops += seen.budget_stop as u64;
    }

    /// The queue stops on the command `at` entries after CONS, `cmd`, with CONS.ERR = `err`
    /// (GERROR.CMDQ_ERR raised: the host's recovery runs).
    fn stop(&mut self, at: u32, err: u32, cmd: Command) {
        self.smmu.consume_n(at);
        self.counters.command_errors += 1;
        match msi_of(&cmd) {
            // A SYNC whose fields are legal stops the queue only for its MSI's address.
            Some((addr, _)) if err == cerror::ILL && host_sync_ok(&cmd) => {
                self.counters.msi_refused += 1;
                self.notice(Notice::MsiRefused { cmd, addr });
            }
            _ => self.notice(Notice::IllegalCommand { cmd, err }),
        }
        self.smmu.fail_command(err);
    }

    /// Moves the host's pending event records from the SMMU service into the host's own event
    /// queue (as an SMMU would write them), raising its event interrupt: at most one ring's
    /// worth per access (each read may route a bounded number of records more: the rest wait
    /// for the host's next access or the SMMU's interrupt).
    pub fn deliver_events(&mut self, ctx: &mut Context<'_>) {
        let mut buf = [[0u64; 4]; 16];
        for _ in 0..RING_CAPACITY.div_ceil(buf.len()) {
            let r = ctx.smmu.read_events(self.vm, &mut buf);
            for e in &buf[..r.written] {
                match self.smmu.post_event(&mut ctx.mem, e) {
                    EventPost::Written => self.counters.events_delivered += 1,
                    EventPost::Overflow | EventPost::Disabled | EventPost::Abort => {
                        self.counters.events_discarded += 1
                    }
                }
            }
            if r.written < buf.len() || r.pending == 0 {
                break;
            }
        }
    }
}

/// Sends `cmds` of VM `vm` on the guests' INVALIDATE path (validated there, one SYNC), as the
/// host's queue executes them ([`SmmuCalls::invalidate_prefix`]). `Err(i)`: command `i` was
/// refused; the valid ones before it have been sent, as the queue would have executed them
/// before stopping on it (a failure of the whole submission names its last command).
fn send(vm: u32, cmds: &[Command], ctx: &mut Context<'_>) -> Result<(), usize> {
    if cmds.is_empty() {
        return Ok(());
    }
    match ctx.smmu.invalidate_prefix(vm, cmds, &*ctx.mem.mem) {
        Ok(_) => Ok(()),
        Err((i, _)) => Err(i.min(cmds.len() - 1)),
    }
}

pub mod plan;

#[cfg(test)]
mod tests;
