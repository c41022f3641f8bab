//! Register access to one SMMUv3 instance: the one trait through which everything reaches the
//! SMMU's registers (the hypervisor's driver, the platform's power controller, and the host
//! tests' software SMMU, which implements it too).

/// 32-bit register access to one SMMU instance (64-bit registers as two halves unless the
/// implementation does better).
pub trait SmmuRegs {
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
