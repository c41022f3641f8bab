//! Memory ordering and cache maintenance between the CPU and the SMMU, by construction.
//!
//! The SMMU reads its queues and tables from Normal memory when a Device-memory register write
//! (a doorbell) tells it to, or whenever a device's transaction needs an entry it does not
//! hold; it writes an event record before it moves its producer index. The architecture lets
//! other observers see the CPU's Normal-memory accesses and its register accesses in any order
//! unless a barrier separates them, and QEMU forgives what silicon does not. Each ordering the
//! driver relies on is a token here that only its barrier makes and only the access that needs
//! it takes:
//!
//! * [`Published`] ([`Barrier::Publish`], Linux's `dma_wmb()`): made by [`DmaBuf::publish`]
//!   after the CPU wrote memory the SMMU reads; taken by the doorbells (CMDQ_PROD, GERRORN when
//!   it restarts the command queue on a rewritten entry, the CR0 enables) and by the level-1
//!   stream-table descriptor that makes a level-2 table reachable.
//! * [`Acquired`] ([`Barrier::Acquire`], `dma_rmb()`): made after the load of a producer index;
//!   taken by the loads of the records it covers ([`DmaBuf::read_acquired`]).
//! * [`Released`] ([`Barrier::Release`], `dma_mb()`): made after the CPU's last access to
//!   records; taken by the consumer-index write that gives their slots back to the SMMU.
//!
//! A non-coherent SMMU ([`Coherency::NonCoherent`]: the platform says so and IDR0.COHACC does
//! not contradict it) reads and writes memory past the CPU's caches, so a barrier alone is not
//! enough: what the CPU wrote is cleaned to the point of coherency ([`Coherency::clean`],
//! [`Barrier::Clean`]) before the barrier and the doorbell that let the SMMU read it, and
//! records the SMMU wrote are invalidated ([`Coherency::invalidate`], [`Barrier::Invalidate`])
//! after the acquire and before they are read. Each clean names exactly what was written (a
//! command-queue entry, one STE, one CD), and each point that cleans is a function of its own
//! at its call site (`clean_*`, `invalidate_*`), so that cargo-mutants can take each one away
//! on its own. On a coherent SMMU each is one predictable branch and nothing else.
//!
//! Barriers go through the register trait ([`SmmuBarriers`]), so the host tests' software SMMU
//! sees them and shows what silicon may do without one ([`crate::iommu::soft::visible`]: a
//! stale command, a stale STE or CD, a lost or stale event record). In mutation-testing builds
//! only (`--cfg mutants`), the tokens can also be made from nothing, so that cargo-mutants can
//! take each barrier away on its own and the tests must notice.

use super::dmabuf::DmaBuf;
pub use platform::regs::{Barrier, DmaRange, SmmuBarriers};

/// Proof that the CPU's stores so far (to memory the SMMU reads) are published: a
/// [`Barrier::Publish`] was executed after them. Made only by [`publish`] (and
/// [`DmaBuf::publish`], which names its buffer).
#[must_use = "the access that must come after the barrier takes it"]
#[derive(Debug)]
#[cfg_attr(mutants, derive(Default))]
pub struct Published(());

/// Proof that a producer index was loaded and then [`Barrier::Acquire`] executed: the records
/// it covers may be read. Made only by [`acquire`].
#[must_use = "the record loads take it"]
#[derive(Debug)]
#[cfg_attr(mutants, derive(Default))]
pub struct Acquired(());

/// Proof that [`Barrier::Release`] was executed after the CPU's last access to records: their
/// slots may be given back. Made only by [`release`].
#[must_use = "the consumer-index write takes it"]
#[derive(Debug)]
#[cfg_attr(mutants, derive(Default))]
pub struct Released(());

/// Whether the SMMU's accesses to memory are coherent with the CPU's caches (the platform's
/// `smmu_coherent`, or the boot option that forces the non-coherent path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coherency {
    /// The interconnect snoops the SMMU's accesses: barriers suffice, walks are cacheable.
    Coherent,
    /// It does not: cache maintenance to the point of coherency, non-cacheable walks.
    NonCoherent,
}

impl Coherency {
    /// `Coherent` if `coherent`.
    pub const fn of(coherent: bool) -> Self {
        if coherent {
            Coherency::Coherent
        } else {
            Coherency::NonCoherent
        }
    }

    /// SMMU_CR1 for this SMMU: write-back cacheable, inner-shareable walks of queues and
    /// tables when coherent; non-cacheable, outer-shareable ones when not.
    pub const fn cr1(self) -> host_abi::smmu::regs::Cr1 {
        use host_abi::smmu::regs::{Cr1, CR1_NC_OSH, CR1_WB_ISH};
        match self {
            Coherency::Coherent => Cr1(CR1_WB_ISH),
            Coherency::NonCoherent => Cr1(CR1_NC_OSH),
        }
    }

    /// After the CPU wrote `range` (memory the SMMU reads), before the barrier and the access
    /// that let the SMMU read it: on a non-coherent SMMU, [`Barrier::Clean`] naming it; on a
    /// coherent one, nothing.
    #[inline(always)]
    pub fn clean(self, b: &mut (impl SmmuBarriers + ?Sized), range: DmaRange) {
        if self == Coherency::NonCoherent {
            b.barrier(Barrier::Clean(range));
        }
    }

    /// After the acquire that follows a producer-index load, before the CPU reads `range` (the
    /// records that index covers): on a non-coherent SMMU, [`Barrier::Invalidate`] naming it; on
    /// a coherent one, nothing.
    #[inline(always)]
    pub fn invalidate(self, b: &mut (impl SmmuBarriers + ?Sized), range: DmaRange) {
        if self == Coherency::NonCoherent {
            b.barrier(Barrier::Invalidate(range));
        }
    }
}

impl DmaBuf {
    /// The buffer as a barrier names it.
    pub fn range(&self) -> DmaRange {
        DmaRange { pa: self.pa(), len: self.len_words() as u64 * 8 }
    }

    /// The `words` words from word `i` on, as a barrier names them.
    #[inline(always)]
    pub fn words(&self, i: usize, words: usize) -> DmaRange {
        DmaRange { pa: self.pa() + i as u64 * 8, len: words as u64 * 8 }
    }

    /// Publishes what the CPU wrote to this buffer (and, on a coherent SMMU, everything it
    /// wrote before): [`Barrier::Publish`] naming it.
    #[inline(always)]
    pub fn publish(&self, b: &mut (impl SmmuBarriers + ?Sized)) -> Published {
        publish(b, self.range())
    }

    /// Reads the `N` words from word `i` on, records the SMMU wrote and a producer index
    /// covers, after the barrier that orders that index's load before them.
    #[inline(always)]
    pub fn read_acquired<const N: usize>(&self, i: usize, _: &Acquired) -> [u64; N] {
        self.read_entry(i)
    }
}

/// After the CPU wrote `range` (memory the SMMU reads), before anything that lets the SMMU read
/// it: [`Barrier::Publish`] naming it.
#[inline(always)]
pub fn publish(b: &mut (impl SmmuBarriers + ?Sized), range: DmaRange) -> Published {
    b.barrier(Barrier::Publish(range));
    Published(())
}

/// After the load of a producer index: [`Barrier::Acquire`].
#[inline(always)]
pub fn acquire(b: &mut (impl SmmuBarriers + ?Sized)) -> Acquired {
    b.barrier(Barrier::Acquire);
    Acquired(())
}

/// After the CPU's last access to records, before their slots are given back:
/// [`Barrier::Release`].
#[inline(always)]
pub fn release(b: &mut (impl SmmuBarriers + ?Sized)) -> Released {
    b.barrier(Barrier::Release);
    Released(())
}
