//! Driver for QEMU's `edu` PCI device as seen from a VM: its BAR0 registers (mapped in the VM's
//! stage-2 by the hypervisor) and its DMA engine, used to make real DMA through the SMMU.

/// edu BAR0 register offsets.
mod reg {
    /// Identification: 0x010000ed.
    pub const ID: usize = 0x00;
    /// Liveness check: reads back the inverse of what was written.
    pub const LIVENESS: usize = 0x04;
    /// DMA source address.
    pub const DMA_SRC: usize = 0x80;
    /// DMA destination address.
    pub const DMA_DST: usize = 0x88;
    /// DMA transfer count.
    pub const DMA_CNT: usize = 0x90;
    /// DMA command: bit 0 start/busy, bit 1 direction (1: device buffer to RAM).
    pub const DMA_CMD: usize = 0x98;
}

/// The value of the ID register.
pub const EDU_ID: u32 = 0x0100_00ed;
/// Device-side address of edu's 4 KiB DMA buffer.
pub const EDU_BUFFER: u64 = 0x4_0000;
/// Size of that buffer.
pub const EDU_BUFFER_SIZE: u64 = 4096;

const CMD_START: u64 = 1;
const CMD_TO_RAM: u64 = 2;

/// An edu device at a BAR0 address.
pub struct Edu {
    bar0: usize,
}

/// A DMA that did not complete in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaTimeout;

impl Edu {
    /// The device whose BAR0 is mapped at `bar0` (an IPA in this VM's stage-2).
    ///
    /// # Safety
    ///
    /// `bar0` must be the BAR0 of an edu device mapped as device memory.
    pub const unsafe fn new(bar0: u64) -> Self {
        Self { bar0: bar0 as usize }
    }

    fn r32(&self, off: usize) -> u32 {
        // SAFETY: inside the BAR (new's contract); edu accepts 4-byte reads below 0x80.
        unsafe { ((self.bar0 + off) as *const u32).read_volatile() }
    }
    fn w32(&self, off: usize, v: u32) {
        // SAFETY: as for r32.
        unsafe { ((self.bar0 + off) as *mut u32).write_volatile(v) }
    }
    fn r64(&self, off: usize) -> u64 {
        // SAFETY: inside the BAR; edu accepts 8-byte accesses at 0x80 and above.
        unsafe { ((self.bar0 + off) as *const u64).read_volatile() }
    }
    fn w64(&self, off: usize, v: u64) {
        // SAFETY: as for r64.
        unsafe { ((self.bar0 + off) as *mut u64).write_volatile(v) }
    }

    /// The ID register.
    pub fn id(&self) -> u32 {
        self.r32(reg::ID)
    }

    /// Writes `v` to the liveness register and returns what it reads back (`!v` if alive).
    pub fn liveness(&self, v: u32) -> u32 {
        self.w32(reg::LIVENESS, v);
        self.r32(reg::LIVENESS)
    }

    fn run(&self, src: u64, dst: u64, len: u64, cmd: u64, ticks: u64) -> Result<(), DmaTimeout> {
        self.w64(reg::DMA_SRC, src);
        self.w64(reg::DMA_DST, dst);
        self.w64(reg::DMA_CNT, len);
        self.w64(reg::DMA_CMD, cmd | CMD_START);
        let start = counter();
        while self.r64(reg::DMA_CMD) & CMD_START != 0 {
            if counter().wrapping_sub(start) > ticks {
                return Err(DmaTimeout);
            }
        }
        Ok(())
    }

    /// DMA of `len` bytes from the device's buffer (offset `off`) to device address `dst`
    /// (translated by the SMMU). Waits for completion (edu takes about 100 ms of virtual time).
    pub fn to_ram(&self, off: u64, dst: u64, len: u64) -> Result<(), DmaTimeout> {
        self.run(EDU_BUFFER + off, dst, len, CMD_TO_RAM, timeout_ticks())
    }

    /// DMA of `len` bytes from device address `src` into the device's buffer (offset `off`).
    pub fn from_ram(&self, src: u64, off: u64, len: u64) -> Result<(), DmaTimeout> {
        self.run(src, EDU_BUFFER + off, len, 0, timeout_ticks())
    }
}

fn counter() -> u64 {
    let v: u64;
    // SAFETY: reading the virtual counter has no side effect.
    unsafe { core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Five seconds of counter ticks.
fn timeout_ticks() -> u64 {
    let f: u64;
    // SAFETY: reading the counter frequency has no side effect.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    5 * f
}
