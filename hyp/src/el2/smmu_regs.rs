//! The real SMMU's registers, reached through safe-mmio (no references to device memory), and
//! the QEMU platform's fault injection: a simulated power loss just before the N-th register
//! write from now.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use host_abi::smmu::regs::{self, off, Gbpa};
use hyp::iommu::driver::{Barrier, SmmuBarriers, SmmuRegs};
use log::warn;
use safe_mmio::fields::ReadWrite;
use safe_mmio::UniqueMmioPointer;

/// 32-bit registers in the SMMU's two 64 KiB pages.
const WORDS: usize = regs::SIZE / 4;

/// The SMMU's register space.
pub struct MmioRegs {
    regs: UniqueMmioPointer<'static, [ReadWrite<u32>; WORDS]>,
}

// SAFETY: the pointer is only an address of device memory every CPU may access; the one
// instance that drives the SMMU is behind the service's lock.
unsafe impl Send for MmioRegs {}

/// Fault injection (test platforms): SMMU register writes left before a simulated power loss
/// (0: none armed). One relaxed load per write when disarmed.
static LOSS_COUNTDOWN: AtomicU64 = AtomicU64::new(0);
/// GBPA's reset value on this run (for the simulated loss).
static GBPA_RESET: AtomicU32 = AtomicU32::new(0);

impl MmioRegs {
    /// The register space at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the SMMU's 128 KiB register space, mapped as device memory (or the MMU
    /// off), and no other `MmioRegs` may be in use for it at the same time.
    pub unsafe fn new(base: usize) -> Self {
        let p = NonNull::new(base as *mut [ReadWrite<u32>; WORDS]).expect("SMMU base is not 0");
        // SAFETY: per the caller: valid device memory for the whole register space, unaliased.
        Self { regs: unsafe { UniqueMmioPointer::new(p) } }
    }

    #[inline(always)]
    fn reg(&mut self, off: usize) -> UniqueMmioPointer<'_, ReadWrite<u32>> {
        // An offset outside the register space is a bug in the driver: stop, do not touch
        // anything else.
        self.regs.get(off / 4).expect("SMMU register offset inside its 128 KiB")
    }

    #[inline(always)]
    fn raw_write32(&mut self, off: usize, value: u32) {
        self.reg(off).write(value)
    }

    /// Counts down an armed injection (`n` writes were left); at zero the SMMU "loses power"
    /// before this write: every register back to its architected reset value
    /// ([`regs::RESET`]), GBPA to the platform's. Out of line: it never runs outside tests.
    #[cold]
    #[inline(never)]
    fn count_down(&mut self, n: u64) {
        LOSS_COUNTDOWN.store(n - 1, Ordering::Relaxed);
        if n == 1 {
            for (o, v) in regs::RESET {
                self.raw_write32(o, v);
            }
            self.raw_write32(off::GBPA, GBPA_RESET.load(Ordering::Relaxed) | Gbpa::UPDATE);
            warn!("SMMU power: injected power loss in the middle of a sequence");
        }
    }

    /// Arms a loss just before the `n`-th register write from now.
    pub fn arm_loss(n: u64) {
        LOSS_COUNTDOWN.store(n, Ordering::Relaxed);
    }

    /// Records GBPA's reset value for simulated losses.
    pub fn set_gbpa_reset(v: u32) {
        GBPA_RESET.store(v, Ordering::Relaxed);
    }
}

impl SmmuBarriers for MmioRegs {
    /// The instruction Linux's `dma_wmb()`, `dma_rmb()` and `dma_mb()` give on arm64: outer
    /// shareable, since the SMMU is another observer in the system, not a CPU of this cluster.
    /// A coherent SMMU needs no more; a non-coherent one's cache maintenance is
    /// [`super::cache`]'s.
    #[inline(always)]
    fn barrier(&mut self, b: Barrier) {
        match b {
            // SAFETY: a DMB reads and writes no memory and no register; it only orders this
            // CPU's accesses around it (no `nomem`: the compiler must not move accesses across).
            Barrier::Publish(_) => unsafe {
                core::arch::asm!("dmb oshst", options(nostack, preserves_flags))
            },
            // SAFETY: as above.
            Barrier::Acquire => unsafe {
                core::arch::asm!("dmb oshld", options(nostack, preserves_flags))
            },
            // SAFETY: as above.
            Barrier::Release => unsafe {
                core::arch::asm!("dmb osh", options(nostack, preserves_flags))
            },
            Barrier::Clean(r) => super::cache::clean(r),
            Barrier::Invalidate(r) => super::cache::clean_invalidate(r),
        }
    }
}

impl SmmuRegs for MmioRegs {
    #[inline(always)]
    fn read32(&mut self, off: usize) -> u32 {
        self.reg(off).read()
    }
    #[inline(always)]
    fn write32(&mut self, off: usize, value: u32) {
        // One relaxed load per write when no injection is armed.
        let n = LOSS_COUNTDOWN.load(Ordering::Relaxed);
        if n != 0 {
            self.count_down(n);
        }
        self.raw_write32(off, value)
    }
}
