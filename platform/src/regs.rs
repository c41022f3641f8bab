//! Register access to one SMMUv3 instance: the one trait through which everything reaches the
//! SMMU's registers (the hypervisor's driver, the platform's power controller, and the host
//! tests' software SMMU, which implements it too), and the memory barriers that order the CPU's
//! accesses to the memory the SMMU reads and writes against those register accesses.

/// Memory the SMMU reads (or writes), named by the barrier or the cache maintenance that
/// concerns it: what the driver has just written there (a queue's entries, a level-2 stream
/// table, an STE, a CD) or is about to read (event records). A coherent SMMU needs no more than
/// the barrier (which orders every earlier store, named or not); a non-coherent one has the
/// range cleaned to the point of coherency first ([`Barrier::Clean`]), and the test SMMU learns
/// from it which memory the SMMU may later be pointed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaRange {
    /// Physical address of the first byte.
    pub pa: u64,
    /// Length in bytes.
    pub len: u64,
}

/// A memory barrier on the SMMU's path (Arm ARM B2.3; the instruction is the one Linux's
/// `arm-smmu-v3` gets from the same helper at the same point).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Barrier {
    /// `DMB OSHST` (Linux's `dma_wmb()`, the barrier `writel()` puts before its store): every
    /// store the CPU made so far, to the named range among them, is observed by the SMMU
    /// before any later store of the CPU: a doorbell register (CMDQ_PROD, GERRORN, CR0), or a
    /// descriptor that points at the range (a level-1 stream-table descriptor).
    Publish(DmaRange),
    /// `DMB OSHLD` (Linux's `dma_rmb()`, the barrier `readl()` puts after its load): the CPU's
    /// loads so far (a queue's producer index) complete before any later load (the records that
    /// index covers), so none of those is served from before the SMMU wrote it.
    Acquire,
    /// `DMB OSH` (Linux's `dma_mb()`, `__iomb()` before a queue's CONS write): the CPU's loads
    /// and stores so far complete before any later store, so the SMMU does not overwrite
    /// records the CPU is still reading once that store (EVENTQ_CONS) frees their slots.
    Release,
    /// Cache maintenance for a non-coherent SMMU, after the CPU wrote `range` and before the
    /// barrier that publishes it: `DC CVAC` on every cache line the range touches, then
    /// `DSB SY` (the cleans complete before anything after them): the SMMU, which reads memory
    /// past the CPU's caches, finds there what the CPU wrote. Never needed on a coherent SMMU.
    Clean(DmaRange),
    /// Cache maintenance for a non-coherent SMMU, before the CPU reads `range` the SMMU (or a
    /// VM writing through a non-cacheable mapping) wrote: `DC CIVAC` on every line the range
    /// touches, then `DSB SY`: no line the CPU's caches held from before the write serves the
    /// loads that follow. Clean as well as invalidate, so that a line the CPU itself dirtied is
    /// never discarded. Never needed on a coherent SMMU.
    Invalidate(DmaRange),
}

/// The barriers (and, for a non-coherent SMMU, the cache maintenance) the SMMU's driver needs,
/// executed by whoever gives it its registers (the EL2 side: the real instructions; the host
/// tests' software SMMU: what silicon may do without them). None is a register access: the
/// SMMU's power does not matter to them.
pub trait SmmuBarriers {
    /// Executes barrier `b`.
    fn barrier(&mut self, b: Barrier);
}

/// 32-bit register access to one SMMU instance (64-bit registers as two halves unless the
/// implementation does better), and its barriers.
pub trait SmmuRegs: SmmuBarriers {
    /// Reads the register at byte offset `off`.
    fn read32(&mut self, off: usize) -> u32;
    /// Writes the register at byte offset `off`.
    fn write32(&mut self, off: usize, value: u32);
    /// Reads a 64-bit register (two 32-bit reads, low half first, unless overridden).
    fn read64(&mut self, off: usize) -> u64 {
        self.read32(off) as u64 | (self.read32(off + 4) as u64) << 32
    }
    /// Writes a 64-bit register (two 32-bit writes, low half first, unless overridden).
    fn write64(&mut self, off: usize, value: u64) {
        self.write32(off, value as u32);
        self.write32(off + 4, (value >> 32) as u32);
    }
}

impl<T: SmmuBarriers + ?Sized> SmmuBarriers for &mut T {
    fn barrier(&mut self, b: Barrier) {
        (**self).barrier(b)
    }
}

impl<T: SmmuRegs + ?Sized> SmmuRegs for &mut T {
    fn read32(&mut self, off: usize) -> u32 {
        (**self).read32(off)
    }
    fn write32(&mut self, off: usize, value: u32) {
        (**self).write32(off, value)
    }
    fn read64(&mut self, off: usize) -> u64 {
        (**self).read64(off)
    }
    fn write64(&mut self, off: usize, value: u64) {
        (**self).write64(off, value)
    }
}
