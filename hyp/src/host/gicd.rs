//! The Linux host's view of the GICv3 distributor. The host drives its own interrupts (as under
//! pKVM), but the distributor is shared: it also holds the interrupts the hypervisor takes (the
//! real SMMU's event queue and global errors) and those of other VMs' devices, and its control
//! register enables the whole GIC. So the distributor is absent from the host's stage-2 and
//! every access goes through this filter, built with the set of INTIDs the host owns (an
//! allow-list: everything else is denied) and the affinities of the host's CPUs:
//!
//! - `GICD_CTLR`: reads pass, writes are dropped. The hypervisor owns affinity routing and the
//!   group enables; Linux's `gic_dist_init` writes 0 then `ARE | EnableGrp1`, and only waits on
//!   `RWP`, which reads as the hardware says.
//! - `TYPER`, `IIDR`, `TYPER2`, `STATUSR` and the ID registers read from the hardware; writes
//!   to them are dropped.
//! - `SETSPI_NSR`/`CLRSPI_NSR` pass for the host's INTIDs only; the secure ones never.
//! - One bit per INTID, write-one-to-set or -clear (`ISENABLER`, `ICENABLER`, `ISPENDR`,
//!   `ICPENDR`, `ISACTIVER`, `ICACTIVER`): the value is masked to the host's bits (zeros do
//!   nothing, so no read-modify-write); reads show the host's bits only.
//! - Fields per INTID (`IGROUPR`, `IGRPMODR`: 1 bit; `ICFGR`: 2; `IPRIORITYR`: a byte, also
//!   byte-accessible): only the host's fields change, by a read-modify-write of the hardware
//!   word under this filter's lock; reads show the host's fields only.
//! - `IROUTER<n>` (64-bit, or either 32-bit half): the host routes its own INTIDs to any of its
//!   CPUs (the route as the write leaves it names one of their affinities); anything else (a
//!   guest's CPU, 1-of-N, a CPU that does not exist) becomes its first CPU's affinity. Other
//!   INTIDs read as zero and ignore writes.
//! - `ITARGETSR`, `NSACR`, `SGIR`, `C/SPENDSGIR`, `INMIR`, the extended-SPI ranges, reserved and
//!   implementation-defined space, and access sizes the architecture does not give a register:
//!   read as zero, writes ignored. INTIDs 0..31 are never the host's here (with affinity
//!   routing they live in each CPU's redistributor).
//!
//! What the host reads of an interrupt that is not its own is zero, so it cannot tell which
//! interrupts exist or what the hypervisor does with them; what it writes to one is ignored.
//! A write is *refused* (counted per register kind, and reported to the caller, which logs the
//! first of each kind) when it asks for something it cannot see: a one in a bit or a field it
//! reads as zero, any write to another INTID's `IROUTER`, a route to none of its CPUs for its
//! own INTIDs, `CTLR`, the secure or legacy registers. Writing zeros to fields it reads as zero
//! is not a refusal (Linux's own read-modify-writes of a shared word write back exactly that).
//! The allowed path takes no lock for the bit registers and never allocates or logs.
//!
//! The lock ([`DIST_RMW`], one for every VM's filter: a Linux guest has its own filter over the
//! same distributor) serialises the VMs' read-modify-writes of shared words. The hypervisor's own
//! configuration of its interrupts is done before the host runs, or, for enables and pending
//! bits, through the write-one registers, which need no read-modify-write.
#![forbid(unsafe_code)]

use crate::host::gicr_sgi::raise_priorities;
#[cfg(test)]
use crate::host::mmio::Device;
use crate::host::mmio::Frame;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};
use platform::linux::HostTree;
use spin::mutex::SpinMutex;

/// Register offsets in the distributor (the one table, shared with xtask's tests).
pub use platform::gic::gicd as off;

/// INTIDs a distributor can name: SGIs, PPIs and SPIs (1020..1023 are special).
pub const MAX_INTID: u32 = 1020;
/// The affinity fields of `GICD_IROUTER` (Aff3 at 32..39, Aff2..Aff0 at 0..23), where MPIDR
/// has them too; bit 31 is `Interrupt_Routing_Mode` (1-of-N), never set for the host.
pub const IROUTER_AFFINITY: u64 = 0xff_00ff_ffff;

/// A set of INTIDs (0..1019), as the distributor's bit registers lay them out.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct IntidSet {
    words: [u32; 32],
}

impl IntidSet {
    /// The empty set.
    pub const fn new() -> Self {
        Self { words: [0; 32] }
    }

    /// The set of `intids` (those above 1019 are ignored).
    pub fn of(intids: impl IntoIterator<Item = u32>) -> Self {
        let mut s = Self::new();
        for i in intids {
            s.insert(i);
        }
        s
    }

    /// Adds `intid` (ignored above 1019).
    pub fn insert(&mut self, intid: u32) {
        if intid < MAX_INTID {
            self.words[intid as usize / 32] |= 1 << (intid % 32);
        }
    }

    /// Whether `intid` is in the set.
    pub fn contains(&self, intid: u32) -> bool {
        intid < MAX_INTID && self.words[intid as usize / 32] & (1 << (intid % 32)) != 0
    }

    /// The bits of INTIDs `32 * n .. 32 * n + 31` (0 past the end).
    #[inline]
    pub fn word(&self, n: usize) -> u32 {
        self.words.get(n).copied().unwrap_or(0)
    }

    /// The INTIDs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..MAX_INTID).filter(|i| self.contains(*i))
    }

    /// The mask of the fields of the INTIDs in the set, in a register of `bits` bits per INTID
    /// whose word `n` starts at INTID `n * 32 / bits`.
    #[inline]
    fn field_mask(&self, n: usize, bits: u32) -> u32 {
        if bits == 1 {
            return self.word(n);
        }
        let per_word = 32 / bits;
        let first = n as u32 * per_word;
        let field = (1u32 << bits) - 1;
        let owned = (self.word(first as usize / 32) >> (first % 32)) & ((1 << per_word) - 1);
        if owned == 0 {
            return 0;
        }
        (0..per_word).filter(|k| owned & (1 << k) != 0).fold(0, |m, k| m | field << (k * bits))
    }
}

impl fmt::Debug for IntidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{self}}}")
    }
}

/// `35..38, 272, 273`.
impl fmt::Display for IntidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut i = 0;
        while i < MAX_INTID {
            if !self.contains(i) {
                i += 1;
                continue;
            }
            let start = i;
            while i + 1 < MAX_INTID && self.contains(i + 1) {
                i += 1;
            }
            match i - start {
                0 => write!(f, "{sep}{start}")?,
                1 => write!(f, "{sep}{start}, {i}")?,
                _ => write!(f, "{sep}{start}..{i}")?,
            }
            sep = ", ";
            i += 1;
        }
        if sep.is_empty() {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// The INTIDs a Linux VM owns in the distributor: the PCI INTx SPIs its own functions raise
/// (of the lines its tree's `interrupt-map` names), its emulated SMMU's event-queue and
/// global-error SPIs (the host's), and its emulated PL011's SPI (a guest's).
///
/// On QEMU `virt` the four INTx lines (SPIs 3..6) are shared by the PCI slots (the swizzle
/// `(slot + pin) % 4`): a line belongs to the VM whose functions raise it, and the manifest
/// refuses two VMs on one line (`platform::VmSpec::intx_lines`), so no two filters let their
/// VMs configure the same line. A line no Linux VM's function raises is nobody's (bare-metal
/// VMs poll their devices).
pub fn host_intids(tree: &HostTree<'_>) -> IntidSet {
    let intx = tree.intx_spis().map(|spi| spi + 32);
    let smmu = tree.smmu.map(|s| [s.eventq_spi + 32, s.gerror_spi + 32]).into_iter().flatten();
    let uart = tree.uart.map(|u| u.spi + 32);
    IntidSet::of(intx.chain(smmu).chain(uart))
}

/// The kind of register a refused write aimed at (refusals are counted and logged per kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `GICD_CTLR`.
    Ctlr,
    /// `SETSPI_*` / `CLRSPI_*`.
    SetClrSpi,
    /// `ISENABLER` / `ICENABLER`.
    Enable,
    /// `ISPENDR` / `ICPENDR`.
    Pending,
    /// `ISACTIVER` / `ICACTIVER`.
    Active,
    /// `IGROUPR`.
    Group,
    /// `IGRPMODR`.
    GroupModifier,
    /// `ICFGR`.
    Config,
    /// `IPRIORITYR`.
    Priority,
    /// `IROUTER`.
    Route,
    /// Read-only, legacy, secure-only, extended-SPI or reserved space, or an access size the
    /// register does not have.
    Other,
}

impl Kind {
    /// Every kind, in [`Kind::index`] order.
    pub const ALL: [Kind; 11] = [
        Kind::Ctlr,
        Kind::SetClrSpi,
        Kind::Enable,
        Kind::Pending,
        Kind::Active,
        Kind::Group,
        Kind::GroupModifier,
        Kind::Config,
        Kind::Priority,
        Kind::Route,
        Kind::Other,
    ];

    /// The register's name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ctlr => "CTLR",
            Kind::SetClrSpi => "SETSPI/CLRSPI",
            Kind::Enable => "ISENABLER/ICENABLER",
            Kind::Pending => "ISPENDR/ICPENDR",
            Kind::Active => "ISACTIVER/ICACTIVER",
            Kind::Group => "IGROUPR",
            Kind::GroupModifier => "IGRPMODR",
            Kind::Config => "ICFGR",
            Kind::Priority => "IPRIORITYR",
            Kind::Route => "IROUTER",
            Kind::Other => "other registers",
        }
    }

    /// A small index (for per-kind counters).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One refused write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DroppedWrite {
    /// The register kind.
    pub kind: Kind,
    /// Its offset in the distributor.
    pub offset: u64,
    /// The access size.
    pub size: u8,
    /// The value written.
    pub value: u64,
    /// The lowest INTID the write would have changed, when it names one.
    pub intid: Option<u32>,
    /// Whether that INTID is the host's own (a route to none of its CPUs, replaced by its
    /// first CPU's).
    pub own: bool,
    /// The first refusal of this kind (the caller logs it).
    pub first: bool,
}

/// `its write to IROUTER of INTID 132 (not its interrupt) ignored`.
impl fmt::Display for DroppedWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.intid) {
            (Kind::Route, Some(i)) if self.own => write!(
                f,
                "its write of {:#x} to IROUTER of INTID {i} (its interrupt, routed to none of its \
                 CPUs) replaced by its first CPU's affinity",
                self.value
            ),
            (Kind::Ctlr, _) => write!(
                f,
                "its write of {:#x} to CTLR ignored (the hypervisor owns affinity routing and \
                 the group enables)",
                self.value
            ),
            (k, Some(i)) => {
                write!(f, "its write to {} of INTID {i} (not its interrupt) ignored", k.name())
            }
            (_, None) => write!(
                f,
                "its {}-byte write of {:#x} at offset {:#x} ({}) ignored",
                self.size,
                self.value,
                self.offset,
                region_name(self.offset)
            ),
        }
    }
}

/// What lies at `offset`, for refusals of [`Kind::Other`].
pub fn region_name(offset: u64) -> &'static str {
    match offset {
        off::TYPER..=0x000f | off::ID_START..=0xffff => "a read-only register",
        off::STATUSR => "STATUSR",
        off::SETSPI_SR | off::CLRSPI_SR => "SETSPI_SR/CLRSPI_SR (secure)",
        0x0000..=0x007f => "reserved",
        0x0080..=0x03ff | 0x0c00..=0x0d7f => "a 32-bit register",
        0x0400..=0x07ff => "IPRIORITYR",
        0x0800..=0x0bff => "ITARGETSR (legacy)",
        0x0e00..=0x0eff => "NSACR",
        0x0f00..=0x0f2f => "SGIR/CPENDSGIR/SPENDSGIR (legacy)",
        0x0f80..=0x0fff => "INMIR",
        0x1000..=0x3fff | 0x8000..=0x9fff => "an extended-SPI register",
        0x6000..=0x7fff => "IROUTER",
        0xc000..=0xffcf => "implementation-defined space",
        _ => "reserved",
    }
}

/// What an offset holds (from the host's point of view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    /// GICD_CTLR.
    Ctlr,
    /// Read from the hardware; writes dropped.
    ReadOnly,
    /// SETSPI_NSR (`true`) or CLRSPI_NSR.
    SetClrSpiNs,
    /// SETSPI_SR, CLRSPI_SR.
    SetClrSpiS,
    /// Write-one-to-set/clear, bit `n` of word `word` is INTID `32 * word + n`.
    Bits { kind: Kind, word: usize },
    /// `bits` bits per INTID, word `word` of the array.
    Field { kind: Kind, word: usize, bits: u32 },
    /// IROUTER of `intid`, its upper half if `high`.
    Router { intid: u32, high: bool },
    /// RAZ/WI.
    Reserved,
}

fn classify(offset: u64) -> Reg {
    let word = |base: u64| ((offset - base) / 4) as usize;
    match offset & !3 {
        off::CTLR => Reg::Ctlr,
        off::TYPER | off::IIDR | off::TYPER2 | off::STATUSR => Reg::ReadOnly,
        off::ID_START..=0xfffc => Reg::ReadOnly,
        off::SETSPI_NSR | off::CLRSPI_NSR => Reg::SetClrSpiNs,
        off::SETSPI_SR | off::CLRSPI_SR => Reg::SetClrSpiS,
        0x0080..=0x00fc => Reg::Field { kind: Kind::Group, word: word(off::IGROUPR), bits: 1 },
        0x0100..=0x017c => Reg::Bits { kind: Kind::Enable, word: word(off::ISENABLER) },
        0x0180..=0x01fc => Reg::Bits { kind: Kind::Enable, word: word(off::ICENABLER) },
        0x0200..=0x027c => Reg::Bits { kind: Kind::Pending, word: word(off::ISPENDR) },
        0x0280..=0x02fc => Reg::Bits { kind: Kind::Pending, word: word(off::ICPENDR) },
        0x0300..=0x037c => Reg::Bits { kind: Kind::Active, word: word(off::ISACTIVER) },
        0x0380..=0x03fc => Reg::Bits { kind: Kind::Active, word: word(off::ICACTIVER) },
        0x0400..=0x07fc => {
            Reg::Field { kind: Kind::Priority, word: word(off::IPRIORITYR), bits: 8 }
        }
        0x0c00..=0x0cfc => Reg::Field { kind: Kind::Config, word: word(off::ICFGR), bits: 2 },
        0x0d00..=0x0d7c => {
            Reg::Field { kind: Kind::GroupModifier, word: word(off::IGRPMODR), bits: 1 }
        }
        0x6000..=0x7fdc => {
            Reg::Router { intid: ((offset - off::IROUTER) / 8) as u32, high: offset & 4 != 0 }
        }
        _ => Reg::Reserved,
    }
}

/// What the host's write `value` of a field register leaves in its own fields (`mask`): its
/// interrupts stay group 1 without a group modifier (group 0 is the hypervisor's), and no
/// priority of its is above [`crate::host::gicr_sgi::PRIORITY_FLOOR`] (the hypervisor's are at 0: a host interrupt at
/// its level, taken and never ended, would hold them off). The rest as written.
fn shape(kind: Kind, value: u32, mask: u32) -> u32 {
    match kind {
        Kind::Group => value | mask,
        Kind::GroupModifier => value & !mask,
        Kind::Priority => raise_priorities(value, mask),
        _ => value,
    }
}
/// The one lock of every filter's read-modify-writes: a word of the field registers holds
/// several INTIDs (16 in `ICFGR`, 4 in `IPRIORITYR`, 32 in `IGROUPR`), which may be different
/// VMs' (the INTx SPIs 35..38 share one `ICFGR` word and one `IPRIORITYR` word): two filters
/// each under its own lock could write back a stale copy of the other VM's field.
pub static DIST_RMW: SpinMutex<()> = SpinMutex::new(());

/// The filter over the distributor frame.
pub struct DistFilter<F> {
    frame: F,
    owned: IntidSet,
    /// The `IROUTER` values of the host's CPUs (its first CPU's first: the default route).
    affinities: Vec<u64>,
    /// Serialises read-modify-writes of the field registers (and of a route's two halves):
    /// [`DIST_RMW`], shared by every VM's filter.
    rmw: &'static SpinMutex<()>,
    /// Refused writes per [`Kind`].
    refused: [AtomicU32; Kind::ALL.len()],
    /// INTIDs the audit ([`DistFilter::others_config`]) leaves out besides its own: other
    /// Linux VMs' (each configures its own through its own filter).
    not_audited: IntidSet,
}

impl<F: Frame> DistFilter<F> {
    /// The host's view of `frame`: it owns the INTIDs of `owned` from 32 up (SGIs and PPIs are
    /// never its here), and routes them to its CPUs, of MPIDRs `cpus` (at least one; the first
    /// is where a refused route goes).
    pub fn new(frame: F, owned: IntidSet, cpus: &[u64]) -> Self {
        assert!(!cpus.is_empty(), "the host has a CPU");
        let mut owned = owned;
        owned.words[0] = 0;
        Self {
            frame,
            owned,
            affinities: cpus.iter().map(|m| m & IROUTER_AFFINITY).collect(),
            rmw: &DIST_RMW,
            refused: [const { AtomicU32::new(0) }; Kind::ALL.len()],
            not_audited: IntidSet::new(),
        }
    }

    /// This filter, its audit leaving out `others` too: the INTIDs of other VMs that configure
    /// their own interrupts (Linux guests, through their own filters), whose changes are theirs
    /// to make.
    pub fn not_auditing(self, others: IntidSet) -> Self {
        Self { not_audited: others, ..self }
    }

    /// The INTIDs the host owns.
    pub fn owned(&self) -> &IntidSet {
        &self.owned
    }

    /// The `IROUTER` value of the host's first CPU: where its INTIDs go unless it routes them
    /// to another of its CPUs.
    pub fn affinity(&self) -> u64 {
        self.affinities[0]
    }

    /// The `IROUTER` values of the host's CPUs.
    pub fn affinities(&self) -> &[u64] {
        &self.affinities
    }

    /// The frame behind the filter.
    pub fn frame(&self) -> &F {
        &self.frame
    }

    /// Refused writes of `kind` so far.
    pub fn refused(&self, kind: Kind) -> u32 {
        self.refused[kind.index()].load(Ordering::Relaxed)
    }

    #[cold]
    #[inline(never)]
    fn refuse(
        &self,
        kind: Kind,
        offset: u64,
        size: u8,
        value: u64,
        intid: Option<u32>,
    ) -> DroppedWrite {
        let before = self.refused[kind.index()].fetch_add(1, Ordering::Relaxed);
        let own = intid.is_some_and(|i| self.owned.contains(i));
        DroppedWrite { kind, offset, size, value, intid, own, first: before == 0 }
    }

    /// The 32-bit register at word-aligned `offset`, as the host sees it.
    fn read_word(&self, offset: u64) -> u32 {
        match classify(offset) {
            Reg::Ctlr | Reg::ReadOnly => self.frame.read32(offset),
            Reg::Bits { word, .. } => match self.owned.word(word) {
                0 => 0,
                mask => self.frame.read32(offset) & mask,
            },
            Reg::Field { word, bits, .. } => match self.owned.field_mask(word, bits) {
                0 => 0,
                mask => self.frame.read32(offset) & mask,
            },
            Reg::Router { intid, .. } if self.owned.contains(intid) => self.frame.read32(offset),
            Reg::Router { .. } | Reg::SetClrSpiNs | Reg::SetClrSpiS | Reg::Reserved => 0,
        }
    }

    /// A load of `size` bytes at `offset` (naturally aligned).
    pub fn read(&self, offset: u64, size: u8) -> u64 {
        match (size, classify(offset)) {
            (4, _) => self.read_word(offset) as u64,
            (8, Reg::Router { high: false, .. }) => {
                self.read_word(offset) as u64 | (self.read_word(offset + 4) as u64) << 32
            }
            (1, Reg::Field { kind: Kind::Priority, .. }) => {
                (self.read_word(offset & !3) >> (8 * (offset & 3))) as u8 as u64
            }
            // No other register has a 1, 2 or 8-byte access.
            _ => 0,
        }
    }

    /// A store of `size` bytes of `value` at `offset` (naturally aligned). Returns what was
    /// refused, if anything (the allowed part of a write is done either way).
    pub fn write(&self, offset: u64, size: u8, value: u64) -> Option<DroppedWrite> {
        match (size, classify(offset)) {
            (4, Reg::Bits { kind, word }) => {
                let v = value as u32;
                let mask = self.owned.word(word);
                if v & mask != 0 {
                    self.frame.write32(offset, v & mask);
                }
                let other = v & !mask;
                (other != 0).then(|| {
                    let intid = 32 * word as u32 + other.trailing_zeros();
                    self.refuse(kind, offset, size, value, Some(intid))
                })
            }
            (4, Reg::Field { kind, word, bits }) => {
                let mask = self.owned.field_mask(word, bits);
                let want = value as u32;
                let got = shape(kind, want, mask);
                self.merge(offset, mask, got);
                // A field it does not own, or one of its own it cannot have as asked.
                let other = (want & !mask) | ((want ^ got) & mask);
                (other != 0).then(|| {
                    let intid = word as u32 * (32 / bits) + other.trailing_zeros() / bits;
                    self.refuse(kind, offset, size, value, Some(intid))
                })
            }
            (1, Reg::Field { kind: Kind::Priority, .. }) => {
                let intid = (offset - off::IPRIORITYR) as u32;
                if self.owned.contains(intid) {
                    let shift = 8 * (offset & 3);
                    let want = (value as u32 & 0xff) << shift;
                    let got = shape(Kind::Priority, want, 0xff << shift);
                    self.merge(offset & !3, 0xff << shift, got);
                    (got != want)
                        .then(|| self.refuse(Kind::Priority, offset, size, value, Some(intid)))
                } else {
                    (value != 0)
                        .then(|| self.refuse(Kind::Priority, offset, size, value, Some(intid)))
                }
            }
            (4, Reg::Router { intid, high }) if self.owned.contains(intid) => {
                let low = offset & !4;
                // The route this half makes with the other half as it is (under the lock: the
                // other CPU of the host may be writing the other half).
                let _rmw = self.rmw.lock();
                let other = self.frame.read32(if high { low } else { low + 4 }) as u64;
                let route = if high { value << 32 | other } else { other << 32 | value };
                if value >> 32 == 0 && self.affinities.contains(&route) {
                    self.frame.write32(offset, value as u32);
                    None
                } else {
                    self.route_to_first(low);
                    Some(self.refuse(Kind::Route, offset, size, value, Some(intid)))
                }
            }
            (8, Reg::Router { intid, high: false }) if self.owned.contains(intid) => {
                let _rmw = self.rmw.lock();
                if self.affinities.contains(&value) {
                    self.frame.write32(offset, value as u32);
                    self.frame.write32(offset + 4, (value >> 32) as u32);
                    None
                } else {
                    self.route_to_first(offset);
                    Some(self.refuse(Kind::Route, offset, size, value, Some(intid)))
                }
            }
            (4 | 8, Reg::Router { intid, .. }) => {
                Some(self.refuse(Kind::Route, offset, size, value, Some(intid)))
            }
            (4, Reg::SetClrSpiNs) => {
                let intid = value as u32 & 0x1fff;
                if self.owned.contains(intid) {
                    self.frame.write32(offset, intid);
                    None
                } else {
                    Some(self.refuse(Kind::SetClrSpi, offset, size, value, Some(intid)))
                }
            }
            (4, Reg::SetClrSpiS) => Some(self.refuse(Kind::SetClrSpi, offset, size, value, None)),
            (4, Reg::Ctlr) => Some(self.refuse(Kind::Ctlr, offset, size, value, None)),
            _ => Some(self.refuse(Kind::Other, offset, size, value, None)),
        }
    }

    /// Routes the INTID whose `IROUTER` is at `low` to the host's first CPU (the caller holds
    /// the lock).
    fn route_to_first(&self, low: u64) {
        let a = self.affinities[0];
        self.frame.write32(low, a as u32);
        self.frame.write32(low + 4, (a >> 32) as u32);
    }

    /// Writes the bits `mask` of `value` into the word at `offset`, keeping the others as the
    /// hardware has them.
    fn merge(&self, offset: u64, mask: u32, value: u32) {
        match mask {
            0 => {}
            u32::MAX => self.frame.write32(offset, value),
            _ => {
                let _rmw = self.rmw.lock();
                let old = self.frame.read32(offset);
                let new = (old & !mask) | (value & mask);
                if new != old {
                    self.frame.write32(offset, new);
                }
            }
        }
    }

    /// The number of INTIDs the distributor implements (`GICD_TYPER.ITLinesNumber`).
    pub fn lines(&self) -> u32 {
        (32 * ((self.frame.read32(off::TYPER) & 0x1f) + 1)).min(MAX_INTID)
    }

    /// Every word of the configuration of the SPIs the host does not own (enable, group, group
    /// modifier, trigger, priority, route), read from the hardware with the host's fields
    /// masked out, in [`CONFIG_REGS`] order. Taken before the host first touches the
    /// distributor and again when it stops: any difference is a hole in the filter (or the
    /// hypervisor's own doing).
    pub fn others_config(&self) -> OthersConfig {
        let lines = self.lines();
        let mut words = Vec::new();
        self.walk_config(lines, |offset, mask| words.push(self.frame.read32(offset) & mask));
        OthersConfig { lines, words }
    }

    /// The first INTID (and its register kind) whose configuration differs from `before`.
    pub fn changed_since(&self, before: &OthersConfig) -> Option<(Kind, u32)> {
        let now = self.others_config();
        let mut i = 0;
        let mut found = None;
        self.walk_config(before.lines, |offset, _| {
            if found.is_none() {
                let diff = before.words.get(i).copied().unwrap_or(0)
                    ^ now.words.get(i).copied().unwrap_or(0);
                if diff != 0 {
                    found = Some(config_intid(offset, diff));
                }
            }
            i += 1;
        });
        found
    }

    /// Calls `f(offset, mask of the fields not the host's)` for every configuration word of
    /// SPIs `32..lines`.
    fn walk_config(&self, lines: u32, mut f: impl FnMut(u64, u32)) {
        let skip = |n: usize, bits: u32| {
            self.owned.field_mask(n, bits) | self.not_audited.field_mask(n, bits)
        };
        for &(_, base, bits) in CONFIG_REGS.iter() {
            let per_word = 32 / bits;
            for n in (32 / per_word) as usize..(lines / per_word) as usize {
                f(base + 4 * n as u64, !skip(n, bits));
            }
        }
        for intid in 32..lines {
            let skipped = self.owned.contains(intid) || self.not_audited.contains(intid);
            let mask = if skipped { 0 } else { u32::MAX };
            f(off::IROUTER + 8 * intid as u64, mask);
            f(off::IROUTER + 8 * intid as u64 + 4, mask);
        }
    }
}

/// The per-INTID configuration registers the audit compares (then every `IROUTER`): kind, base
/// offset, bits per INTID.
pub const CONFIG_REGS: [(Kind, u64, u32); 5] = [
    (Kind::Enable, off::ISENABLER, 1),
    (Kind::Group, off::IGROUPR, 1),
    (Kind::GroupModifier, off::IGRPMODR, 1),
    (Kind::Config, off::ICFGR, 2),
    (Kind::Priority, off::IPRIORITYR, 8),
];

/// The kind and INTID of the lowest differing bit `diff` of the configuration word at `offset`.
fn config_intid(offset: u64, diff: u32) -> (Kind, u32) {
    if offset >= off::IROUTER {
        return (Kind::Route, ((offset - off::IROUTER) / 8) as u32);
    }
    let (kind, base, bits) = CONFIG_REGS
        .iter()
        .copied()
        .filter(|&(_, base, _)| base <= offset)
        .max_by_key(|&(_, base, _)| base)
        .unwrap_or(CONFIG_REGS[0]);
    let n = ((offset - base) / 4) as u32;
    (kind, n * (32 / bits) + diff.trailing_zeros() / bits)
}

/// A snapshot of the configuration of the interrupts the host does not own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OthersConfig {
    lines: u32,
    words: Vec<u32>,
}

impl OthersConfig {
    /// The INTIDs it covers are `32..lines()`.
    pub fn lines(&self) -> u32 {
        self.lines
    }
}

/// The bare filter as an MMIO device, for the tests: the EL2 side wraps it
/// (`el2::linux::HostGicd`), logging the first dropped write of each register kind.
#[cfg(test)]
impl<F: Frame> Device for DistFilter<F> {
    fn name(&self) -> &'static str {
        "GIC distributor"
    }
    fn read(&self, offset: u64, size: u8) -> u64 {
        DistFilter::read(self, offset, size)
    }
    fn write(&self, offset: u64, size: u8, value: u64) {
        let _ = DistFilter::write(self, offset, size, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mmio::{emulate, Outcome, Region, Registers};
    use crate::vm::esr::Esr;
    use platform::qemu_virt::{BOARD, MANIFEST};
    use platform::MemRange;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    /// QEMU virt's distributor: 288 INTIDs (ITLinesNumber 8), single security state.
    const LINES: u32 = 288;
    /// INTIDs the hypervisor uses: the real SMMU's eventq .. gerror (SPIs 74..77).
    const HYP: [u32; 4] = [106, 107, 108, 109];
    /// The host's INTIDs on QEMU virt: INTx SPIs 3..6 and its emulated SMMU's SPIs 240, 241.
    const HOST: [u32; 6] = [35, 36, 37, 38, 272, 273];

    /// A distributor as registers in a map: every architected register of 288 INTIDs exists
    /// (reading anything else panics, as an emulator may fault); writes are recorded.
    struct FakeGicd {
        regs: spin::Mutex<BTreeMap<u64, u32>>,
        writes: spin::Mutex<Vec<(u64, u32)>>,
        reads: AtomicU32,
    }

    impl Frame for FakeGicd {
        fn read32(&self, offset: u64) -> u32 {
            assert_eq!(offset % 4, 0, "unaligned read at {offset:#x}");
            self.reads.fetch_add(1, Ordering::Relaxed);
            // A clear register reads as its set register.
            let o = match offset {
                0x180..=0x1fc | 0x280..=0x2fc | 0x380..=0x3fc => offset - 0x80,
                _ => offset,
            };
            *self.regs.lock().get(&o).unwrap_or_else(|| panic!("read of {offset:#x}"))
        }
        fn write32(&self, offset: u64, value: u32) {
            assert_eq!(offset % 4, 0, "unaligned write at {offset:#x}");
            assert!(self.regs.lock().contains_key(&offset), "write to {offset:#x}");
            self.writes.lock().push((offset, value));
            // W1S/W1C registers act on their set; the others just hold the value.
            let mut r = self.regs.lock();
            let set = |r: &mut BTreeMap<u64, u32>, o: u64, v: u32, on: bool| {
                let e = r.get_mut(&o).unwrap();
                *e = if on { *e | v } else { *e & !v };
            };
            match offset {
                0x100..=0x17c => set(&mut r, offset, value, true),
                0x180..=0x1fc => set(&mut r, offset - 0x80, value, false),
                0x200..=0x27c => set(&mut r, offset, value, true),
                0x280..=0x2fc => set(&mut r, offset - 0x80, value, false),
                0x300..=0x37c => set(&mut r, offset, value, true),
                0x380..=0x3fc => set(&mut r, offset - 0x80, value, false),
                0x40 => set(&mut r, 0x200 + 4 * (value as u64 / 32), 1 << (value % 32), true),
                0x48 => set(&mut r, 0x200 + 4 * (value as u64 / 32), 1 << (value % 32), false),
                _ => {
                    r.insert(offset, value);
                }
            }
        }
    }

    impl FakeGicd {
        fn get(&self, offset: u64) -> u32 {
            self.regs.lock()[&offset]
        }
        fn set(&self, offset: u64, value: u32) {
            self.regs.lock().insert(offset, value);
        }
        fn writes(&self) -> Vec<(u64, u32)> {
            core::mem::take(&mut *self.writes.lock())
        }
        /// The state of an INTID: (enabled, pending, active, group, grpmod, config, priority,
        /// route).
        fn intid(&self, i: u32) -> [u64; 8] {
            let w = 4 * (i as u64 / 32);
            let bit = |base: u64| ((self.get(base + w) >> (i % 32)) & 1) as u64;
            let cfg = (self.get(0xc00 + 4 * (i as u64 / 16)) >> (2 * (i % 16))) & 3;
            let prio = (self.get(0x400 + 4 * (i as u64 / 4)) >> (8 * (i % 4))) & 0xff;
            let r = 0x6000 + 8 * i as u64;
            let route = self.get(r) as u64 | (self.get(r + 4) as u64) << 32;
            [
                bit(0x100),
                bit(0x200),
                bit(0x300),
                bit(0x80),
                bit(0xd00),
                cfg as u64,
                prio as u64,
                route,
            ]
        }
    }

    /// After the hypervisor's boot: ARE | EnableGrp1 | DS, every SPI group 1, level, priority
    /// 0x80, routed to CPU 0; the hypervisor's SMMU SPIs edge, priority 0x20, routed to CPU 1
    /// and enabled.
    impl Frame for &FakeGicd {
        fn read32(&self, offset: u64) -> u32 {
            (**self).read32(offset)
        }
        fn write32(&self, offset: u64, value: u32) {
            (**self).write32(offset, value)
        }
    }

    fn qemu_gicd() -> FakeGicd {
        let mut r = BTreeMap::new();
        r.insert(off::CTLR, 0x52);
        r.insert(off::TYPER, 0x037a_0008 | (LINES / 32 - 1));
        r.insert(off::IIDR, 0x0100_043b);
        r.insert(off::TYPER2, 0);
        r.insert(off::STATUSR, 0);
        for o in [0x40u64, 0x48, 0x50, 0x58] {
            r.insert(o, 0);
        }
        for n in 0..32u64 {
            for base in [0x80u64, 0x100, 0x180, 0x200, 0x280, 0x300, 0x380, 0xd00] {
                r.insert(base + 4 * n, 0);
            }
            r.insert(0x80 + 4 * n, if n == 0 { 0 } else { !0 });
            r.insert(0xe00 + 4 * n, 0);
            r.insert(0xf80 + 4 * n, 0);
        }
        for n in 0..64u64 {
            r.insert(0xc00 + 4 * n, 0);
        }
        for n in 0..256u64 {
            r.insert(0x400 + 4 * n, 0x8080_8080);
            r.insert(0x800 + 4 * n, 0);
        }
        for i in 0..1020u64 {
            r.insert(0x6000 + 8 * i, 0);
            r.insert(0x6004 + 8 * i, 0);
        }
        for o in (off::ID_START..0x1_0000).step_by(4) {
            r.insert(o, 0);
        }
        r.insert(0xffe8, 0x3b);
        let g = FakeGicd {
            regs: spin::Mutex::new(r),
            writes: spin::Mutex::new(Vec::new()),
            reads: AtomicU32::new(0),
        };
        for i in HYP {
            let w = 4 * (i as u64 / 32);
            g.set(0x100 + w, g.get(0x100 + w) | 1 << (i % 32));
            let c = 0xc00 + 4 * (i as u64 / 16);
            g.set(c, g.get(c) | 2 << (2 * (i % 16)));
            let p = 0x400 + 4 * (i as u64 / 4);
            g.set(p, (g.get(p) & !(0xff << (8 * (i % 4)))) | 0x20 << (8 * (i % 4)));
            g.set(0x6000 + 8 * i as u64, 1);
        }
        g
    }

    fn filter() -> DistFilter<FakeGicd> {
        DistFilter::new(qemu_gicd(), IntidSet::of(HOST), &[0])
    }

    /// Every INTID's state but the host's.
    fn others(g: &FakeGicd) -> Vec<[u64; 8]> {
        (0..LINES).filter(|i| !HOST.contains(i)).map(|i| g.intid(i)).collect()
    }

    #[test]
    fn the_host_owns_its_intx_and_smmu_spis() {
        let t = HostTree::new(&BOARD, &MANIFEST.vms[0], "", None, true);
        let s = host_intids(&t);
        // Slots 2, 5 and 6: INTA on lines 2, 1, 2 (SPIs 5, 4); not guest1's line (slots 3, 7:
        // SPI 6) nor guest2's (slot 4: SPI 3).
        assert_eq!(s.iter().collect::<Vec<_>>(), [36, 37, 272, 273]);
        assert_eq!(std::format!("{s}"), "36, 37, 272, 273");
        // A Linux guest1: its line and its UART's SPI, no SMMU SPI.
        let g = host_intids(&HostTree::guest(&BOARD, &MANIFEST.vms[1], "", None));
        assert_eq!(g.iter().collect::<Vec<_>>(), [38, 274]);
        let g2 = host_intids(&HostTree::guest(&BOARD, &MANIFEST.vms[2], "", None));
        assert_eq!(g2.iter().collect::<Vec<_>>(), [35, 275]);
        assert_eq!(std::format!("{}", IntidSet::of(HOST)), "35..38, 272, 273");
        assert_eq!(std::format!("{}", IntidSet::of([40, 41, 50])), "40, 41, 50");
        assert_eq!(std::format!("{}", IntidSet::new()), "none");
        // Never an SGI or PPI, nothing past 1019.
        let f = DistFilter::new(qemu_gicd(), IntidSet::of([5, 27, 40, 1020, 1023]), &[0]);
        assert_eq!(f.owned().iter().collect::<Vec<_>>(), [40]);
    }

    /// INTIDs 1020..1023 are special (and nothing above exists): the set never holds them,
    /// not even as a bit of its last word.
    #[test]
    fn the_set_stops_at_1019() {
        let s = IntidSet::of([1019, 1020, 1021, 1023, 1024, u32::MAX]);
        assert_eq!(s.word(31), 1 << 27);
        assert_eq!(s.iter().collect::<Vec<_>>(), [1019]);
        assert!(s.contains(1019) && !s.contains(1020) && !s.contains(u32::MAX));
        assert_eq!(s.word(32), 0, "past the end");
        // Runs at both ends of the range, as the logs show them.
        assert_eq!(std::format!("{}", IntidSet::of([0, 1, 2])), "0..2");
        assert_eq!(std::format!("{}", IntidSet::of([0, 1, 5])), "0, 1, 5");
        assert_eq!(std::format!("{}", IntidSet::of([1016, 1017, 1018, 1019])), "1016..1019");
        assert_eq!(std::format!("{:?}", IntidSet::of([35, 36, 37, 38, 272])), "{35..38, 272}");
    }

    /// The words a refused write of another kind is logged with, per region of the frame.
    #[test]
    fn refusals_name_the_region() {
        for (offset, name) in [
            (off::TYPER, "a read-only register"),
            (0x000c, "a read-only register"),
            (0xffe8, "a read-only register"),
            (off::STATUSR, "STATUSR"),
            (off::SETSPI_SR, "SETSPI_SR/CLRSPI_SR (secure)"),
            (off::CLRSPI_SR, "SETSPI_SR/CLRSPI_SR (secure)"),
            (0x0060, "reserved"),
            (0x0080, "a 32-bit register"),
            (0x03fc, "a 32-bit register"),
            (0x0c00, "a 32-bit register"),
            (0x0d7c, "a 32-bit register"),
            (0x0400, "IPRIORITYR"),
            (0x0800, "ITARGETSR (legacy)"),
            (0x0e00, "NSACR"),
            (0x0f00, "SGIR/CPENDSGIR/SPENDSGIR (legacy)"),
            (0x0f80, "INMIR"),
            (0x1000, "an extended-SPI register"),
            (0x8000, "an extended-SPI register"),
            (0x6000, "IROUTER"),
            (0xc000, "implementation-defined space"),
            (0x4000, "reserved"),
            (0xa000, "reserved"),
        ] {
            assert_eq!(region_name(offset), name, "{offset:#x}");
        }
    }

    #[test]
    fn field_masks() {
        let s = IntidSet::of([33, 36, 47, 48]);
        assert_eq!(s.field_mask(1, 1), 1 << 1 | 1 << 4 | 1 << 15 | 1 << 16);
        // ICFGR word 2: INTIDs 32..47.
        assert_eq!(s.field_mask(2, 2), 3 << 2 | 3 << 8 | 3 << 30);
        assert_eq!(s.field_mask(3, 2), 3);
        // IPRIORITYR word 8: INTIDs 32..35; word 9: 36..39; word 11: 44..47.
        assert_eq!(s.field_mask(8, 8), 0xff00);
        assert_eq!(s.field_mask(9, 8), 0xff);
        assert_eq!(s.field_mask(11, 8), 0xff00_0000);
        assert_eq!(s.field_mask(10, 8), 0);
        assert_eq!(s.field_mask(255, 8), 0);
    }

    // --- The attacker's view: host root with /dev/mem, any register, any size. ---

    #[test]
    fn cannot_enable_disable_pend_or_activate_others() {
        let f = filter();
        let before = others(f.frame());
        for base in [0x100u64, 0x180, 0x200, 0x280, 0x300, 0x380] {
            for n in 0..32u64 {
                f.write(base + 4 * n, 4, 0xffff_ffff);
                f.write(base + 4 * n, 4, 0);
                for b in 0..4 {
                    f.write(base + 4 * n + b, 1, 0xff);
                    f.write(base + 4 * n + (b & 2), 2, 0xffff);
                }
                f.write(base + 8 * (n / 2), 8, u64::MAX);
            }
        }
        assert_eq!(others(f.frame()), before);
        // Everything that reached the hardware touched only the host's bits.
        for (o, v) in f.frame().writes() {
            let n = ((o & 0x7f) / 4) as usize;
            assert_eq!(v & !IntidSet::of(HOST).word(n), 0, "{o:#x} <- {v:#x}");
        }
    }

    #[test]
    fn cannot_reroute_others_or_route_its_own_elsewhere() {
        let f = filter();
        let before = others(f.frame());
        for i in 0..1020u64 {
            let r = off::IROUTER + 8 * i;
            f.write(r, 8, 1);
            f.write(r, 8, 1 << 31);
            f.write(r, 4, 2);
            f.write(r + 4, 4, 0xff);
            f.write(r, 1, 1);
            f.write(r, 2, 1);
        }
        assert_eq!(others(f.frame()), before);
        // Its own stay on its CPU (affinity 0, not 1-of-N).
        for i in HOST {
            assert_eq!(f.frame().intid(i)[7], 0, "INTID {i}");
            assert_eq!(f.read(off::IROUTER + 8 * i as u64, 8), 0);
        }
        assert_eq!(f.refused(Kind::Route), 1020 * 4);
        // The hypervisor's read as zero.
        assert_eq!(f.read(off::IROUTER + 8 * 106, 8), 0);
        assert_eq!(f.read(off::IROUTER + 8 * 106, 4), 0);
    }

    #[test]
    fn a_host_on_another_cpu_routes_to_that_cpu_only() {
        let f = DistFilter::new(qemu_gicd(), IntidSet::of(HOST), &[0x8000_0000 | 1 << 32 | 0x0203]);
        assert_eq!(f.affinity(), 1 << 32 | 0x0203, "MPIDR.U and MT are not affinity");
        let r = off::IROUTER + 8 * 36;
        assert!(f.write(r, 8, 1 << 31).is_some_and(|x| x.own && x.kind == Kind::Route));
        assert_eq!(f.frame().intid(36)[7], 1 << 32 | 0x0203);
        f.frame().writes();
        assert_eq!(f.write(r, 8, 1 << 32 | 0x0203), None, "its own CPU: not a refusal");
        assert_eq!(f.frame().writes(), [(r, 0x0203), (r + 4, 1)]);
        assert_eq!(f.write(r + 4, 4, 1), None);
        assert!(f.write(r + 4, 4, 0).is_some());
        assert_eq!(f.frame().get(r + 4), 1, "the upper half stays its CPU's Aff3");
    }

    /// The SMP host (CPUs 0 and 1 of four): its INTIDs go to either of its CPUs, by a 64-bit
    /// write or by halves; a guest's CPU, 1-of-N or a CPU beyond the board become its first
    /// CPU, refused; another INTID's route is refused whatever CPU it names.
    #[test]
    fn an_smp_host_routes_its_own_to_either_of_its_cpus() {
        let f = DistFilter::new(qemu_gicd(), IntidSet::of(HOST), &[0x8000_0000, 0x8000_0001]);
        assert_eq!((f.affinity(), f.affinities()), (0, &[0, 1][..]));
        let r = off::IROUTER + 8 * 36;
        assert_eq!(f.write(r, 8, 1), None, "its CPU 1");
        assert_eq!((f.frame().intid(36)[7], f.read(r, 8)), (1, 1));
        assert_eq!(f.write(r, 8, 0), None, "its CPU 0");
        assert_eq!(f.read(r, 8), 0);
        assert_eq!(f.write(r, 4, 1), None, "the low half alone");
        assert_eq!(f.read(r, 8), 1);
        assert_eq!(f.write(r + 4, 4, 0), None, "the high half as it is");
        for bad in [2, 3, 4, 1 << 31, 1 << 31 | 1, 1 << 32 | 1, 0x100] {
            assert_eq!(f.write(r, 8, 1), None);
            let refused = f.write(r, 8, bad).expect("refused");
            assert!(refused.own && refused.kind == Kind::Route, "{bad:#x}");
            assert_eq!(f.read(r, 8), 0, "{bad:#x}: its first CPU");
        }
        assert_eq!(f.write(r, 8, 1), None);
        assert!(f.write(r, 4, 2).is_some(), "a guest's CPU by the low half");
        assert_eq!(f.read(r, 8), 0);
        assert_eq!(f.write(r, 8, 1), None);
        assert!(f.write(r + 4, 4, 1).is_some(), "Aff3 = 1 by the high half");
        assert_eq!(f.read(r, 8), 0);
        // Another INTID's route, even to the host's own CPU 1.
        let before = others(f.frame());
        let other = off::IROUTER + 8 * 100;
        assert!(f.write(other, 8, 1).is_some_and(|x| !x.own));
        assert!(f.write(other, 4, 1).is_some_and(|x| !x.own));
        assert_eq!(others(f.frame()), before);
    }

    /// Its own routes read back whole (a 64-bit read, and each half), with its CPU's Aff3;
    /// another INTID's route reads as zero.
    #[test]
    fn its_own_routes_read_back_whole() {
        let f = DistFilter::new(qemu_gicd(), IntidSet::of(HOST), &[1 << 32 | 0x0203]);
        let r = off::IROUTER + 8 * 36;
        assert_eq!(f.write(r, 8, 1 << 32 | 0x0203), None);
        assert_eq!(f.read(r, 8), 1 << 32 | 0x0203);
        assert_eq!(f.read(r, 4), 0x0203);
        assert_eq!(f.read(r + 4, 4), 1);
        // The low half alone: the route it makes is with this INTID's high half (its Aff3),
        // not the one of the register below it.
        assert_eq!(f.write(r, 4, 0x0203), None, "the low half, Aff3 = 1 in the high half");
        assert!(f.write(r, 4, 0x0204).is_some(), "another CPU of Aff3 = 1");
        assert_eq!(f.read(r, 8), 1 << 32 | 0x0203);
        let other = off::IROUTER + 8 * 106;
        assert_ne!(f.frame().get(other), 0, "routed to the hypervisor's CPU");
        assert_eq!(f.read(other, 8), 0);
        assert_eq!(f.read(other, 4), 0);
        // 8-byte reads exist only for IROUTER.
        assert_eq!(f.read(off::ISENABLER + 4, 8), 0);
    }

    /// A byte write of its own priority lands in exactly its byte lane, whichever lane of the
    /// word it is; the other INTIDs' priorities in that word keep theirs.
    #[test]
    fn byte_priorities_land_in_their_own_lane() {
        let f = filter();
        for (intid, prio) in [(35u32, 0xa0u64), (37, 0x90), (38, 0xe0), (36, 0x80)] {
            let before = others(f.frame());
            assert_eq!(f.write(off::IPRIORITYR + intid as u64, 1, prio), None, "INTID {intid}");
            assert_eq!(f.frame().intid(intid)[6], prio, "INTID {intid}");
            assert_eq!(f.read(off::IPRIORITYR + intid as u64, 1), prio);
            assert_eq!(others(f.frame()), before, "INTID {intid}: others unchanged");
        }
        assert_eq!(f.frame().intid(35)[6], 0xa0, "still");
    }

    /// No priority of its own above the floor (0x80): the hypervisor's interrupts are at 0, and
    /// one of the host's at their level, taken and never ended, would hold them off. Raised,
    /// in its own lane only, and the write refused as a priority change (Linux's 0xa0 is not).
    #[test]
    fn its_priorities_stay_below_the_hypervisors() {
        let f = filter();
        for (intid, prio) in [(35u32, 0x00u64), (37, 0x20), (38, 0x7f), (36, 0x10)] {
            let before = others(f.frame());
            let r = f.write(off::IPRIORITYR + intid as u64, 1, prio).unwrap();
            assert_eq!((r.kind, r.intid, r.own), (Kind::Priority, Some(intid), true));
            assert_eq!(f.frame().intid(intid)[6], 0x80, "INTID {intid}");
            assert_eq!(others(f.frame()), before, "INTID {intid}: others unchanged");
        }
        // A word (INTIDs 36..39, 39 not its own): each of its lanes below the floor raised, the
        // others kept; the refusal names the first raised one.
        let before = f.frame().intid(39)[6];
        let r = f.write(off::IPRIORITYR + 36, 4, 0x0000_8110).unwrap();
        assert_eq!((r.kind, r.intid), (Kind::Priority, Some(36)));
        assert_eq!([36, 37, 38].map(|i| f.frame().intid(i)[6]), [0x80, 0x81, 0x80]);
        assert_eq!(f.frame().intid(39)[6], before, "not its own");
        assert_eq!(f.write(off::IPRIORITYR + 36, 4, 0x00a0_a0a0), None);
    }

    /// Its interrupts stay group 1 (group 0 is the hypervisor's, FIQs at EL2): a zero in its
    /// own IGROUPR bits is written as one, and refused as a group change; ones pass.
    #[test]
    fn its_interrupts_stay_group_1() {
        let f = filter();
        let w = off::IGROUPR + 4; // INTIDs 32..63, its own 35..38
        let own = 0b1111 << 3;
        assert_eq!(f.write(w, 4, own), None, "all its own to group 1");
        assert_eq!([35, 36, 37, 38].map(|i| f.frame().intid(i)[3]), [1; 4]);
        let r = f.write(w, 4, own & !(1 << 4)).unwrap();
        assert_eq!((r.kind, r.intid, r.own), (Kind::Group, Some(36), true));
        assert_eq!(f.frame().intid(36)[3], 1, "still group 1");
        assert_eq!(f.read(w, 4), own);
    }

    /// Its own group-modifier bits (IGRPMODR) stay 0: a one is refused as a group-modifier
    /// change and not written; another INTID's too.
    #[test]
    fn its_own_group_modifier_bits_stay_clear() {
        let f = filter();
        let w = off::IGRPMODR + 4; // INTIDs 32..63
        let r = f.write(w, 4, 1 << 3).unwrap();
        assert_eq!((r.kind, r.intid, r.own), (Kind::GroupModifier, Some(35), true));
        assert_eq!(f.frame().intid(35)[4], 0);
        assert_eq!(f.read(w, 4), 0);
        assert_eq!(f.write(w, 4, 0), None);
        let r = f.write(w, 4, 1 << 10).unwrap();
        assert_eq!((r.kind, r.intid), (Kind::GroupModifier, Some(42)));
        assert_eq!(f.frame().intid(42)[4], 0);
    }

    #[test]
    fn cannot_regroup_retrigger_or_reprioritise_others_bit_exact() {
        let f = filter();
        // Give every field of other INTIDs a distinct pattern, to see a single bit move.
        for (i, o) in (0x80u64..0x100).step_by(4).enumerate().skip(1) {
            f.frame().set(o, 0x5a5a_5a5a ^ i as u32);
        }
        for (i, o) in (0xc00u64..0xd00).step_by(4).enumerate().skip(2) {
            f.frame().set(o, 0xa5a5_a5a5 ^ (i as u32) << 1);
        }
        for (i, o) in (0x400u64..0x800).step_by(4).enumerate().skip(8) {
            f.frame().set(o, 0x1234_5678_u32.rotate_left(i as u32));
        }
        let before = others(f.frame());
        for pattern in [0u32, u32::MAX, 0x5555_5555, 0xaaaa_aaaa] {
            for o in (0x80u64..0x100).chain(0x400..0x800).chain(0xc00..0xd80).step_by(4) {
                f.write(o, 4, pattern as u64);
            }
            for o in 0x400u64..0x800 {
                f.write(o, 1, pattern as u64 & 0xff);
            }
            for o in (0x400u64..0x800).step_by(2) {
                f.write(o, 2, pattern as u64 & 0xffff);
            }
        }
        assert_eq!(others(f.frame()), before);
        // The host's own fields did change: last pattern 0xaaaa_aaaa written.
        assert_eq!(f.frame().intid(36)[6], 0xaa);
        assert_eq!(f.frame().intid(36)[5], 2, "ICFGR field 0b10: edge");
    }

    #[test]
    fn reads_show_only_the_hosts_bits() {
        let f = filter();
        // Everything pending, active, enabled in hardware.
        for n in 0..9u64 {
            for b in [0x100u64, 0x200, 0x300] {
                f.frame().set(b + 4 * n, u32::MAX);
            }
        }
        let host_bits_1 = 0xf << 3; // INTIDs 35..38 in word 1
        for b in [0x100u64, 0x180, 0x200, 0x280, 0x300, 0x380] {
            assert_eq!(f.read(b + 4, 4), host_bits_1, "{b:#x}");
            assert_eq!(f.read(b + 12, 4), 0, "{b:#x}: INTIDs 96..127 are none of its own");
            assert_eq!(f.read(b + 32, 4), 0b11 << 16, "{b:#x}: INTIDs 272, 273");
            assert_eq!(f.read(b, 4), 0, "SGIs and PPIs are not in the distributor");
        }
        // Group: every SPI is group 1 in hardware; the host sees its own as such.
        assert_eq!(f.read(0x84, 4), host_bits_1);
        // Priorities: INTIDs 36..39 share word 9, of which 39 is not the host's.
        assert_eq!(f.read(0x424, 4), 0x0080_8080);
        assert_eq!(f.read(0x427, 1), 0);
        assert_eq!(f.read(0x426, 1), 0x80);
        assert_eq!(f.read(0x400 + 106, 1), 0);
        // No 2-byte or 8-byte access to a 32-bit register.
        assert_eq!(f.read(0x424, 2), 0);
        assert_eq!(f.read(0x100, 8), 0);
        // The hypervisor's SMMU SPIs read as nothing at all.
        for i in HYP {
            assert_eq!(f.read(0x100 + 4 * (i as u64 / 32), 4), 0);
            assert_eq!(f.read(0xc00 + 4 * (i as u64 / 16), 4), 0);
            assert_eq!(f.read(0x400 + 4 * (i as u64 / 4), 4), 0);
        }
    }

    #[test]
    fn ctlr_and_read_only_registers() {
        let f = filter();
        assert_eq!(f.read(off::CTLR, 4), 0x52);
        for v in [0u64, 0x13, 0x80, u32::MAX as u64] {
            let r = f.write(off::CTLR, 4, v).unwrap();
            assert_eq!((r.kind, r.intid), (Kind::Ctlr, None));
        }
        assert_eq!(f.read(off::CTLR, 4), 0x52);
        assert_eq!(f.read(off::TYPER, 4) & 0x1f, 8);
        assert_eq!(f.read(off::IIDR, 4), 0x0100_043b);
        assert_eq!(f.read(0xffe8, 4), 0x3b, "PIDR2 from the hardware");
        for o in [off::TYPER, off::IIDR, off::TYPER2, off::STATUSR, 0xffe8] {
            assert_eq!(f.write(o, 4, 0xffff_ffff).unwrap().kind, Kind::Other);
        }
        assert!(f.frame().writes().is_empty());
        assert_eq!(f.refused(Kind::Ctlr), 4);
    }

    #[test]
    fn setspi_only_for_its_own() {
        let f = filter();
        assert_eq!(f.write(off::SETSPI_NSR, 4, 36), None);
        assert_eq!(f.frame().intid(36)[1], 1);
        assert_eq!(f.write(off::CLRSPI_NSR, 4, 36), None);
        assert_eq!(f.frame().intid(36)[1], 0);
        let r = f.write(off::SETSPI_NSR, 4, 106).unwrap();
        assert_eq!((r.kind, r.intid, r.own), (Kind::SetClrSpi, Some(106), false));
        assert!(f.write(off::CLRSPI_NSR, 4, 100).is_some());
        // Upper bits do not smuggle an INTID through: 36 + 8192 is not 36.
        assert!(f.write(off::SETSPI_NSR, 4, 36 | 1 << 12).is_some());
        // Bits above the INTID field are RES0: 36 with bit 13 set is 36.
        assert_eq!(f.write(off::CLRSPI_NSR, 4, 36 | 1 << 13), None);
        // The secure ones never, counted as SETSPI/CLRSPI refusals (not as "other").
        let other = f.refused(Kind::Other);
        let r = f.write(off::SETSPI_SR, 4, 36).unwrap();
        assert_eq!((r.kind, r.intid), (Kind::SetClrSpi, None));
        assert_eq!(f.write(off::CLRSPI_SR, 4, 36).map(|r| r.kind), Some(Kind::SetClrSpi));
        assert_eq!(f.refused(Kind::Other), other);
        assert_eq!(
            f.frame().writes(),
            [(off::SETSPI_NSR, 36), (off::CLRSPI_NSR, 36), (off::CLRSPI_NSR, 36)]
        );
        assert_eq!(f.read(off::SETSPI_NSR, 4), 0, "write-only");
        assert_eq!(f.frame().intid(106)[1], 0);
    }

    #[test]
    fn legacy_secure_extended_and_reserved_space_is_raz_wi() {
        let f = filter();
        let before = others(f.frame());
        let offsets = (0x800u64..0xc00).chain(0xd80..0x6000).chain(0x7fe0..0xffd0).step_by(4);
        for o in offsets.chain([0x14, 0x20, 0x3c, 0x60, 0x7c]) {
            assert_eq!(f.read(o, 4), 0, "{o:#x}");
            assert_eq!(f.write(o, 4, 0xffff_ffff).map(|r| r.kind), Some(Kind::Other), "{o:#x}");
        }
        assert_eq!(f.read(0x800 + 36, 1), 0, "ITARGETSR of its own INTID");
        assert!(f.write(0x800 + 36, 1, 1).is_some());
        assert!(f.frame().writes().is_empty());
        assert_eq!(others(f.frame()), before);
    }

    #[test]
    fn refusals_name_the_first_intid_and_are_first_once_per_kind() {
        let f = filter();
        let r = f.write(off::ICENABLER + 12, 4, 1 << 10).unwrap();
        assert_eq!((r.kind, r.intid, r.first), (Kind::Enable, Some(106), true));
        assert_eq!(
            std::format!("{r}"),
            "its write to ISENABLER/ICENABLER of INTID 106 (not its interrupt) ignored"
        );
        let r = f.write(off::ISENABLER + 4, 4, 0xffff_ffff).unwrap();
        assert_eq!((r.intid, r.first), (Some(32), false));
        assert_eq!(f.refused(Kind::Enable), 2);
        let r = f.write(off::IROUTER + 8 * 132, 8, 0).unwrap();
        assert_eq!(
            std::format!("{r}"),
            "its write to IROUTER of INTID 132 (not its interrupt) ignored"
        );
        let r = f.write(off::IPRIORITYR + 4 * 9, 4, 0xa0a0_a0a0).unwrap();
        assert_eq!(r.intid, Some(39), "36..38 are its own");
        let r = f.write(off::ICFGR + 4 * 2, 4, 0xffff_ffff).unwrap();
        assert_eq!(r.intid, Some(32));
        let r = f.write(off::ICFGR + 4 * 2, 4, 2 << 18).unwrap();
        assert_eq!(r.intid, Some(41));
        let r = f.write(off::CTLR, 4, 0x13).unwrap();
        assert!(std::format!("{r}").starts_with("its write of 0x13 to CTLR ignored"));
        let r = f.write(0x800, 4, 1).unwrap();
        assert_eq!(
            std::format!("{r}"),
            "its 4-byte write of 0x1 at offset 0x800 (ITARGETSR (legacy)) ignored"
        );
        let r = f.write(off::IROUTER + 8 * 36, 8, 1).unwrap();
        assert!(std::format!("{r}").contains(
            "INTID 36 (its interrupt, routed to none of its CPUs) replaced by its first CPU's"
        ));
        // Zeros where it reads zeros: nothing asked, nothing refused.
        assert_eq!(f.write(off::ICENABLER + 12, 4, 0), None);
        assert_eq!(f.write(off::ICFGR + 4 * 6, 4, 0), None);
        assert_eq!(f.write(off::IPRIORITYR + 106, 1, 0), None);
    }

    #[test]
    fn rmw_keeps_others_fields_bit_exact_under_concurrency() {
        // The host's CPU writes its fields while another agent flips other INTIDs' fields in
        // the same words directly in the hardware; nothing the other agent set may be undone.
        let f = std::sync::Arc::new(filter());
        let hw = std::sync::Arc::clone(&f);
        let t = std::thread::spawn(move || {
            for k in 0..2000u32 {
                // INTID 39's priority (word 9, byte 3) and INTID 32's group (word 1 bit 0).
                let _l = hw.rmw.lock();
                let p = hw.frame().get(0x424);
                hw.frame().set(0x424, (p & 0x00ff_ffff) | (k & 0xff) << 24);
                let g = hw.frame().get(0x84);
                hw.frame().set(0x84, (g & !1) | (k & 1));
            }
        });
        for k in 0..2000u64 {
            f.write(0x424, 4, k & 0xff);
            f.write(0x425, 1, k & 0xff);
            f.write(0x84, 4, (k & 1) << 4);
        }
        t.join().unwrap();
        assert_eq!(f.frame().get(0x424) >> 24, 1999 & 0xff, "INTID 39 as the other agent left it");
        assert_eq!(f.frame().get(0x84) & 1, 1999 & 1);
    }

    // --- Linux's view: gic_dist_init, then its own interrupts' life. ---

    #[test]
    fn linux_init_configures_its_own_and_nothing_else() {
        let f = filter();
        let before = others(f.frame());
        let typer = f.read(off::TYPER, 4);
        let lines = 32 * ((typer & 0x1f) + 1);
        assert_eq!(lines as u32, LINES);
        let ctlr = f.read(off::CTLR, 4);
        assert_ne!(ctlr & (1 << 6), 0, "DS: single security state");
        // gic_dist_init: disable, wait for RWP, groups, config, priorities, deactivate and
        // disable, enable, wait, then route everything to the boot CPU.
        f.write(off::CTLR, 4, 0);
        assert_eq!(f.read(off::CTLR, 4) & (1 << 31), 0, "RWP clear");
        for i in (32..lines).step_by(32) {
            f.write(off::IGROUPR + i / 8, 4, 0xffff_ffff);
        }
        for i in (32..lines).step_by(16) {
            f.write(off::ICFGR + i / 4, 4, 0);
        }
        for i in (32..lines).step_by(4) {
            f.write(off::IPRIORITYR + i, 4, 0xa0a0_a0a0);
        }
        for i in (32..lines).step_by(32) {
            f.write(off::ICACTIVER + i / 8, 4, 0xffff_ffff);
            f.write(off::ICENABLER + i / 8, 4, 0xffff_ffff);
        }
        f.write(off::CTLR, 4, 0x13);
        for i in 32..lines {
            f.write(off::IROUTER + 8 * i, 8, 0);
        }
        assert_eq!(others(f.frame()), before, "nothing of the others changed");
        assert_eq!(f.read(off::CTLR, 4), 0x52, "the hypervisor's CTLR");
        // One refusal per kind it touched: CTLR, IGROUPR (all ones), IPRIORITYR, ICACTIVER,
        // ICENABLER, IROUTER; ICFGR wrote zeros where it reads zeros.
        let refused: Vec<_> = Kind::ALL.iter().filter(|k| f.refused(**k) > 0).collect();
        assert_eq!(
            refused,
            [
                &Kind::Ctlr,
                &Kind::Enable,
                &Kind::Active,
                &Kind::Group,
                &Kind::Priority,
                &Kind::Route
            ]
        );
        assert_eq!(f.refused(Kind::Route), LINES - 32 - 6);
        // Its own: group 1, level, priority 0xa0, disabled, routed to CPU 0.
        for i in HOST {
            assert_eq!(f.frame().intid(i), [0, 0, 0, 1, 0, 0, 0xa0, 0], "INTID {i}");
        }
        // Then each of its interrupts: type (edge for the SMMU's), priority, unmask, mask.
        let cfg = |i: u32| off::ICFGR + 4 * (i as u64 / 16);
        for i in [272u32, 273] {
            // gic_configure_irq: read, set the edge bit, write, read back to check.
            let v = f.read(cfg(i), 4) as u32 | 2 << (2 * (i % 16));
            assert_eq!(f.write(cfg(i), 4, v as u64), None);
            assert_eq!(f.read(cfg(i), 4) as u32, v, "reads back as written");
        }
        for i in HOST {
            let w = 4 * (i as u64 / 32);
            assert_eq!(f.write(off::IPRIORITYR + i as u64, 1, 0x80), None);
            assert_eq!(f.write(off::ISENABLER + w, 4, 1 << (i % 32)), None);
            assert_ne!(f.read(off::ISENABLER + w, 4) & 1 << (i % 32), 0);
            assert_eq!(f.write(off::ISPENDR + w, 4, 1 << (i % 32)), None);
            assert_ne!(f.read(off::ISPENDR + w, 4) & 1 << (i % 32), 0);
            assert_eq!(f.write(off::ICPENDR + w, 4, 1 << (i % 32)), None);
            assert_eq!(f.write(off::ICENABLER + w, 4, 1 << (i % 32)), None);
            assert_eq!(f.read(off::ISENABLER + w, 4) & 1 << (i % 32), 0);
        }
        assert_eq!(f.frame().intid(272)[5], 2);
        assert_eq!(f.frame().intid(36)[6], 0x80);
        assert_eq!(others(f.frame()), before);
    }

    #[test]
    fn the_allowed_path_is_one_hardware_access() {
        let f = filter();
        f.frame().writes();
        assert_eq!(f.write(off::ISENABLER + 4, 4, 1 << 4), None);
        assert_eq!(f.write(off::ICENABLER + 4, 4, 1 << 4), None);
        assert_eq!(
            f.frame().writes(),
            [(off::ISENABLER + 4, 1 << 4), (off::ICENABLER + 4, 1 << 4)]
        );
        // A word with nothing of the host's is not even read.
        let reads = f.frame().reads.load(Ordering::Relaxed);
        assert_eq!(f.read(off::ISENABLER + 12, 4), 0);
        assert_eq!(f.read(off::IPRIORITYR + 104, 4), 0);
        assert!(f.write(off::IPRIORITYR + 104, 4, 0x1111_1111).is_some());
        assert!(f.write(off::ICENABLER + 12, 4, 0xffff_ffff).is_some());
        assert!(f.frame().writes().is_empty());
        assert_eq!(f.frame().reads.load(Ordering::Relaxed), reads);
    }

    /// The audit reads the SPIs' configuration words only (INTIDs 32 up: the SGIs' and PPIs'
    /// words are the redistributor's business), each once.
    #[test]
    fn the_audit_covers_exactly_the_spis() {
        let f = filter();
        let c = f.others_config();
        assert_eq!(c.lines(), LINES);
        let spis = LINES - 32;
        // Three 1-bit registers, ICFGR (2 bits), IPRIORITYR (8 bits), IROUTER (two words).
        let expected = 3 * spis / 32 + spis / 16 + spis / 4 + 2 * spis;
        assert_eq!(c.words.len() as u32, expected);
    }

    /// A field register word wholly the host's is written straight, without reading it first
    /// (no read-modify-write, no lock).
    #[test]
    fn a_word_wholly_the_hosts_is_one_write() {
        let f = DistFilter::new(qemu_gicd(), IntidSet::of(32..64), &[0]);
        f.frame().writes();
        let reads = f.frame().reads.load(Ordering::Relaxed);
        assert_eq!(f.write(off::IPRIORITYR + 36, 4, 0x90a0_b0c0), None);
        assert_eq!(f.write(off::IGROUPR + 4, 4, 0xffff_ffff), None);
        assert_eq!(
            f.frame().writes(),
            [(off::IPRIORITYR + 36, 0x90a0_b0c0), (off::IGROUPR + 4, 0xffff_ffff)]
        );
        assert_eq!(f.frame().reads.load(Ordering::Relaxed), reads, "nothing read");
    }

    #[test]
    fn the_audit_sees_any_change_to_others_and_ignores_the_hosts() {
        let f = filter();
        let before = f.others_config();
        assert_eq!(before.lines(), LINES);
        assert_eq!(f.changed_since(&before), None);
        // The host's own changes are not the audit's business.
        f.write(off::ISENABLER + 4, 4, 0xf << 3);
        f.write(off::IPRIORITYR + 36, 1, 0);
        f.write(off::IROUTER + 8 * 272, 8, 5);
        assert_eq!(f.changed_since(&before), None);
        // Anything else, bit by bit, is found, with its INTID.
        let cases: [(u64, u32, Kind, u32); 7] = [
            (off::ISENABLER + 12, 1 << 10, Kind::Enable, 106),
            (off::IGROUPR + 4, 1 << 2, Kind::Group, 34),
            (off::IGRPMODR + 8, 1 << 31, Kind::GroupModifier, 95),
            (off::ICFGR + 24, 2 << 20, Kind::Config, 106),
            (off::IPRIORITYR + 108, 1 << 9, Kind::Priority, 109),
            (off::IROUTER + 8 * 109, 1, Kind::Route, 109),
            (off::IROUTER + 8 * 287 + 4, 1, Kind::Route, 287),
        ];
        for (o, bit, kind, intid) in cases {
            let v = f.frame().get(o);
            f.frame().set(o, v ^ bit);
            assert_eq!(f.changed_since(&before), Some((kind, intid)), "{o:#x}");
            f.frame().set(o, v);
        }
        assert_eq!(f.changed_since(&before), None);
    }

    /// A Linux guest's INTIDs, configured by the guest through its own filter, are left out of
    /// the host's audit; everything else is still seen, in the same words too.
    #[test]
    fn the_audit_leaves_out_other_linux_vms_interrupts_only() {
        let guest = IntidSet::of([39, 274]);
        let hw: &'static FakeGicd = std::boxed::Box::leak(std::boxed::Box::new(qemu_gicd()));
        let f = DistFilter::new(hw, IntidSet::of(HOST), &[0]).not_auditing(guest);
        let g = DistFilter::new(hw, IntidSet::of([39, 274]), &[2]);
        let before = f.others_config();
        // The guest's filter: its priority (IPRIORITYR word 9, with the host's 36..38), its
        // trigger (ICFGR word 2, with the host's), its enable and route.
        assert_eq!(g.write(off::IPRIORITYR + 39, 1, 0xa0), None);
        assert_eq!(g.write(off::ICFGR + 8, 4, 2 << 14), None);
        assert_eq!(g.write(off::ISENABLER + 4, 4, 1 << 7), None);
        assert_eq!(g.write(off::IROUTER + 8 * 274, 8, 2), None);
        assert_eq!(f.frame().get(off::IPRIORITYR + 36) >> 24, 0xa0, "reached the hardware");
        assert_eq!(f.changed_since(&before), None);
        // Its neighbours are still the audit's: INTID 40's priority, INTID 275's route.
        let v = f.frame().get(off::IPRIORITYR + 40);
        f.frame().set(off::IPRIORITYR + 40, v ^ 1);
        assert_eq!(f.changed_since(&before), Some((Kind::Priority, 40)));
        f.frame().set(off::IPRIORITYR + 40, v);
        f.frame().set(off::IROUTER + 8 * 275, 3);
        assert_eq!(f.changed_since(&before), Some((Kind::Route, 275)));
        // Without the exception the guest's changes are found.
        let plain = DistFilter::new(hw, IntidSet::of(HOST), &[0]);
        let b2 = plain.others_config();
        g.write(off::IPRIORITYR + 39, 1, 0x10);
        assert_eq!(plain.changed_since(&b2), Some((Kind::Priority, 39)));
        // Every filter shares the one read-modify-write lock.
        assert!(core::ptr::eq(f.rmw, g.rmw) && core::ptr::eq(f.rmw, &DIST_RMW));
    }

    /// The filter as the host's MMIO path sees it: loads and stores of every size decoded from
    /// a syndrome, through `mmio::emulate`.
    #[test]
    fn through_the_mmio_path() {
        struct Regs([u64; 31]);
        impl Registers for Regs {
            fn get(&self, n: u8) -> u64 {
                self.0[n as usize]
            }
            fn set(&mut self, n: u8, value: u64) {
                self.0[n as usize] = value;
            }
        }
        let f = filter();
        let gicd = MemRange::new(BOARD.gicd.base, BOARD.gicd.size);
        let regions = [Region { range: gicd, device: &f as &(dyn Device + Sync) }];
        let esr = |sas: u64, write: bool| {
            Esr((0x24 << 26)
                | (1 << 25)
                | (1 << 24)
                | (sas << 22)
                | (1 << 15)
                | ((write as u64) << 6)
                | 7)
        };
        let mut regs = Regs([0; 31]);
        // str x0, [IROUTER of 106] with x0 = 0 (CPU 0): ignored.
        let o = emulate(&regions, esr(3, true), gicd.base + 0x6000 + 8 * 106, &mut regs);
        assert!(matches!(o, Outcome::Emulated { access } if access.write && access.size == 8));
        assert_eq!(f.frame().intid(106)[7], 1);
        // ldrb of its own priority.
        emulate(&regions, esr(0, false), gicd.base + 0x400 + 36, &mut regs);
        assert_eq!(regs.get(0), 0x80);
        // ldr w0, ISENABLER3: the hypervisor's SMMU SPIs are enabled, it sees none.
        regs.set(0, 7);
        emulate(&regions, esr(2, false), gicd.base + 0x10c, &mut regs);
        assert_eq!(regs.get(0), 0);
        assert_eq!(f.frame().intid(106)[0], 1);
        // str w0, ISENABLER1 with its own INTID 36: reaches the distributor.
        assert_eq!(f.frame().intid(36)[0], 0);
        regs.set(0, 1 << 4);
        emulate(&regions, esr(2, true), gicd.base + 0x104, &mut regs);
        assert_eq!(f.frame().intid(36)[0], 1);
    }
}
