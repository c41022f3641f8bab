//! PCI bring-up done by the hypervisor itself: find the functions on bus 0, size and assign
//! their memory BARs in the host bridge's 32-bit window, and enable decoding. VMs never touch
//! configuration space; they learn about their devices through a hypercall and reach the BARs
//! through their stage-2.
//!
//! Configuration space is reached through [`ConfigSpace`] (ECAM on `virt`), so all of this runs
//! on the host against a fake.

use platform::{MemRange, PciAddr};

/// Configuration-space register offsets (PCI Local Bus spec, type 0 header).
pub mod reg {
    /// Vendor ID (15:0), device ID (31:16).
    pub const ID: u16 = 0x00;
    /// Command (15:0), status (31:16).
    pub const COMMAND: u16 = 0x04;
    /// Revision (7:0), class code (31:8).
    pub const CLASS: u16 = 0x08;
    /// Cache line, latency, header type (23:16), BIST.
    pub const HEADER: u16 = 0x0c;
    /// BAR 0; BAR n is at `BAR0 + 4 * n`.
    pub const BAR0: u16 = 0x10;
}

/// Command register: memory space decoding.
pub const CMD_MEMORY: u32 = 1 << 1;
/// Command register: bus mastering (the function may issue DMA).
pub const CMD_BUS_MASTER: u32 = 1 << 2;

/// 32-bit configuration-space access.
pub trait ConfigSpace {
    /// Reads the dword at `off` of function `addr` (all ones if absent).
    fn read32(&mut self, addr: PciAddr, off: u16) -> u32;
    /// Writes the dword at `off` of function `addr`.
    fn write32(&mut self, addr: PciAddr, off: u16, value: u32);
}

/// An assigned memory BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// BAR index (0..6); a 64-bit BAR uses `index` and `index + 1`.
    pub index: u8,
    /// Assigned bus address (== physical address on `virt`).
    pub base: u64,
    /// Size in bytes (a power of two).
    pub size: u64,
}

/// A function the hypervisor configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Where it is.
    pub addr: PciAddr,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Its memory BARs.
    pub bars: [Option<Bar>; 6],
}

/// Why a function could not be configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciError {
    /// Nothing answers at this address.
    NotPresent(PciAddr),
    /// Not a type-0 (endpoint) header.
    NotEndpoint(PciAddr),
    /// The BARs do not fit in the window.
    WindowExhausted(PciAddr),
}

impl core::fmt::Display for PciError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PciError::NotPresent(a) => write!(f, "no PCI function at {a}"),
            PciError::NotEndpoint(a) => write!(f, "PCI function {a} is not an endpoint"),
            PciError::WindowExhausted(a) => {
                write!(f, "BARs of PCI function {a} do not fit in the MMIO window")
            }
        }
    }
}

/// Hands out naturally aligned ranges of the bridge's MMIO window, never less than a 4 KiB page
/// so that two BARs (possibly of different VMs) never share a stage-2 page.
#[derive(Clone, Copy, Debug)]
pub struct BarAllocator {
    next: u64,
    end: u64,
}

impl BarAllocator {
    /// Smallest granule handed out.
    pub const MIN: u64 = 4096;

    /// An allocator over `window`.
    pub fn new(window: MemRange) -> Self {
        Self { next: window.base, end: window.end() }
    }

    /// A range of `size` bytes aligned to its size (rounded up to 4 KiB).
    pub fn alloc(&mut self, size: u64) -> Option<u64> {
        let size = size.max(Self::MIN).checked_next_power_of_two()?;
        let base = self.next.checked_add(size - 1)? & !(size - 1);
        let end = base.checked_add(size)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(base)
    }
}

/// Vendor and device ID of the function at `addr`, if present.
pub fn probe(cfg: &mut dyn ConfigSpace, addr: PciAddr) -> Option<(u16, u16)> {
    let id = cfg.read32(addr, reg::ID);
    let vendor = id as u16;
    (vendor != 0xffff && vendor != 0).then_some((vendor, (id >> 16) as u16))
}

/// Sizes and assigns the memory BARs of an endpoint and enables memory decoding. Bus mastering
/// stays off: see [`set_bus_master`].
pub fn configure(
    cfg: &mut dyn ConfigSpace,
    addr: PciAddr,
    window: &mut BarAllocator,
) -> Result<Function, PciError> {
    let (vendor, device) = probe(cfg, addr).ok_or(PciError::NotPresent(addr))?;
    if (cfg.read32(addr, reg::HEADER) >> 16) & 0x7f != 0 {
        return Err(PciError::NotEndpoint(addr));
    }
    // No decoding, no DMA while the BARs move.
    let cmd = cfg.read32(addr, reg::COMMAND) & 0xffff;
    cfg.write32(addr, reg::COMMAND, cmd & !(CMD_MEMORY | CMD_BUS_MASTER | 1));
    let mut bars = [None; 6];
    let mut i = 0u8;
    while i < 6 {
        let off = reg::BAR0 + 4 * i as u16;
        let orig = cfg.read32(addr, off);
        if orig & 1 == 1 {
            // I/O BAR: not used on this platform; leave it unassigned.
            i += 1;
            continue;
        }
        let is_64 = (orig >> 1) & 3 == 2;
        cfg.write32(addr, off, 0xffff_ffff);
        let low = cfg.read32(addr, off) & !0xf;
        let high = if is_64 {
            cfg.write32(addr, off + 4, 0xffff_ffff);
            cfg.read32(addr, off + 4)
        } else {
            0xffff_ffff
        };
        let mask = ((high as u64) << 32) | low as u64;
        if low == 0 {
            // Unimplemented BAR.
            cfg.write32(addr, off, orig);
            i += if is_64 { 2 } else { 1 };
            continue;
        }
        let size = (!mask).wrapping_add(1);
        let base = window.alloc(size).ok_or(PciError::WindowExhausted(addr))?;
        cfg.write32(addr, off, base as u32);
        if is_64 {
            cfg.write32(addr, off + 4, (base >> 32) as u32);
        }
        bars[i as usize] = Some(Bar { index: i, base, size: size.max(BarAllocator::MIN) });
        i += if is_64 { 2 } else { 1 };
    }
    cfg.write32(addr, reg::COMMAND, (cmd & !(CMD_BUS_MASTER | 1)) | CMD_MEMORY);
    Ok(Function { addr, vendor, device, bars })
}

/// Turns bus mastering (DMA) on or off.
pub fn set_bus_master(cfg: &mut dyn ConfigSpace, addr: PciAddr, on: bool) {
    let cmd = cfg.read32(addr, reg::COMMAND) & 0xffff;
    let cmd = if on { cmd | CMD_BUS_MASTER } else { cmd & !CMD_BUS_MASTER };
    cfg.write32(addr, reg::COMMAND, cmd);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Functions with BAR masks; unimplemented registers read as zero, absent functions as ones.
    #[derive(Default)]
    struct FakeBus {
        regs: BTreeMap<(u32, u16), u32>,
        /// Writable bits and read-only flag bits of each BAR register.
        masks: BTreeMap<(u32, u16), (u32, u32)>,
    }

    impl FakeBus {
        fn add(&mut self, a: PciAddr, id: u32, bars: &[(u8, u32, u32)]) {
            self.regs.insert((a.rid(), reg::ID), id);
            self.regs.insert((a.rid(), reg::COMMAND), 0);
            self.regs.insert((a.rid(), reg::HEADER), 0);
            for &(i, mask, flags) in bars {
                self.masks.insert((a.rid(), reg::BAR0 + 4 * i as u16), (mask, flags));
                self.regs.insert((a.rid(), reg::BAR0 + 4 * i as u16), flags);
            }
        }
    }

    impl ConfigSpace for FakeBus {
        fn read32(&mut self, a: PciAddr, off: u16) -> u32 {
            if !self.regs.contains_key(&(a.rid(), reg::ID)) {
                return 0xffff_ffff;
            }
            *self.regs.get(&(a.rid(), off)).unwrap_or(&0)
        }
        fn write32(&mut self, a: PciAddr, off: u16, v: u32) {
            let v = match self.masks.get(&(a.rid(), off)) {
                Some(&(m, flags)) => (v & m) | flags,
                None if (reg::BAR0..reg::BAR0 + 24).contains(&off) => 0,
                None => v,
            };
            self.regs.insert((a.rid(), off), v);
        }
    }

    const EDU: PciAddr = PciAddr::slot(3, 0);

    #[test]
    fn allocator_aligns_and_bounds() {
        let mut a = BarAllocator::new(MemRange::new(0x1000_0000, 0x30_0000));
        assert_eq!(a.alloc(0x100), Some(0x1000_0000)); // rounded up to a page
        assert_eq!(a.alloc(0x10_0000), Some(0x1010_0000)); // 1 MiB aligned
        assert_eq!(a.alloc(0x10_0000), Some(0x1020_0000));
        assert_eq!(a.alloc(0x1000), None);
    }

    #[test]
    fn edu_like_function_gets_its_bar() {
        let mut bus = FakeBus::default();
        // edu: vendor 0x1234, device 0x11e8, BAR0 32-bit 1 MiB.
        bus.add(EDU, 0x11e8_1234, &[(0, 0xfff0_0000, 0)]);
        let mut win = BarAllocator::new(MemRange::new(0x1000_0000, 0x1000_0000));
        let f = configure(&mut bus, EDU, &mut win).unwrap();
        assert_eq!((f.vendor, f.device), (0x1234, 0x11e8));
        assert_eq!(f.bars[0], Some(Bar { index: 0, base: 0x1000_0000, size: 0x10_0000 }));
        assert!(f.bars[1..].iter().all(|b| b.is_none()));
        assert_eq!(bus.read32(EDU, reg::BAR0), 0x1000_0000);
        let cmd = bus.read32(EDU, reg::COMMAND);
        assert_eq!(cmd & CMD_MEMORY, CMD_MEMORY);
        assert_eq!(cmd & CMD_BUS_MASTER, 0, "no DMA until the SMMU is ready");
        set_bus_master(&mut bus, EDU, true);
        assert_eq!(bus.read32(EDU, reg::COMMAND) & CMD_BUS_MASTER, CMD_BUS_MASTER);
    }

    #[test]
    fn sixty_four_bit_bars_take_two_slots() {
        let mut bus = FakeBus::default();
        bus.add(
            EDU,
            0x0001_1af4,
            &[(0, 0xffff_c000, 0b100), (1, 0xffff_ffff, 0), (2, 0xfff0_0000, 0)],
        );
        let mut win = BarAllocator::new(MemRange::new(0x1000_0000, 0x1000_0000));
        let f = configure(&mut bus, EDU, &mut win).unwrap();
        assert_eq!(f.bars[0], Some(Bar { index: 0, base: 0x1000_0000, size: 0x4000 }));
        assert_eq!(f.bars[1], None);
        assert_eq!(f.bars[2], Some(Bar { index: 2, base: 0x1010_0000, size: 0x10_0000 }));
        assert_eq!(bus.read32(EDU, reg::BAR0 + 4), 0);
    }

    #[test]
    fn absent_and_exhausted() {
        let mut bus = FakeBus::default();
        let mut win = BarAllocator::new(MemRange::new(0x1000_0000, 0x8_0000));
        assert_eq!(probe(&mut bus, EDU), None);
        assert_eq!(configure(&mut bus, EDU, &mut win), Err(PciError::NotPresent(EDU)));
        bus.add(EDU, 0x11e8_1234, &[(0, 0xfff0_0000, 0)]);
        assert_eq!(configure(&mut bus, EDU, &mut win), Err(PciError::WindowExhausted(EDU)));
    }
}
