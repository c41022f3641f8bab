//! Memory ordering between the CPU and the SMMU, by construction.
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
//! Barriers go through the register trait ([`SmmuBarriers`]), so the host tests' software SMMU
//! sees them and shows what silicon may do without one ([`crate::iommu::soft::visible`]). In
//! mutation-testing builds only (`--cfg mutants`), the tokens can also be made from nothing,
//! so that cargo-mutants can take each barrier away on its own and the tests must notice.

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

impl DmaBuf {
    /// The buffer as a barrier names it.
    pub fn range(&self) -> DmaRange {
        DmaRange { pa: self.pa(), len: self.len_words() as u64 * 8 }
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
