//! PCI bring-up done by the hypervisor itself: find the functions on bus 0, size and assign
//! their BARs (memory BARs, 32- or 64-bit, in the host bridge's 32-bit MMIO window; I/O BARs in
//! its I/O window), and enable decoding. Guests never touch configuration space: they learn about
//! their devices through a hypercall and reach the BARs through their stage-2. A Linux host reads
//! its own functions' configuration space through the filter in [`filter`].
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
    /// One past BAR 5.
    pub const BAR_END: u16 = 0x28;
    /// Expansion ROM base address.
    pub const ROM: u16 = 0x30;
    /// Interrupt line (7:0), interrupt pin (15:8).
    pub const INTERRUPT: u16 = 0x3c;
}

/// Command register: I/O space decoding (bit 0).
pub const CMD_IO: u32 = 1;
/// Command register: memory space decoding.
pub const CMD_MEMORY: u32 = 1 << 1;
/// Command register: bus mastering (the function may issue DMA).
pub const CMD_BUS_MASTER: u32 = 1 << 2;

/// Configuration-space access. Reads have no side effects, so narrower reads are done with
/// [`ConfigSpace::read32`]; narrower writes need their own access (a read-modify-write of the
/// dword would write back write-one-to-clear status bits).
pub trait ConfigSpace {
    /// Reads the dword at `off` (a multiple of 4) of function `addr` (all ones if absent).
    fn read32(&mut self, addr: PciAddr, off: u16) -> u32;
    /// Writes the dword at `off` (a multiple of 4) of function `addr`.
    fn write32(&mut self, addr: PciAddr, off: u16, value: u32);
    /// Writes the low `size` (1 or 2) bytes of `value` at `off` (a multiple of `size`), leaving
    /// the other bytes of the dword alone.
    fn write_narrow(&mut self, addr: PciAddr, off: u16, size: u8, value: u32);
}

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory BAR.
    Mem32 {
        /// Prefetchable.
        prefetch: bool,
    },
    /// 64-bit memory BAR (uses this register and the next).
    Mem64 {
        /// Prefetchable.
        prefetch: bool,
    },
    /// I/O BAR.
    Io,
}

impl BarKind {
    /// From a BAR register's read-only low bits.
    pub fn from_register(v: u32) -> Self {
        if v & 1 == 1 {
            return BarKind::Io;
        }
        let prefetch = v & (1 << 3) != 0;
        if (v >> 1) & 3 == 2 {
            BarKind::Mem64 { prefetch }
        } else {
            BarKind::Mem32 { prefetch }
        }
    }

    /// The register's read-only low bits (type and prefetch flags).
    pub fn flags(self) -> u32 {
        match self {
            BarKind::Io => 1,
            BarKind::Mem32 { prefetch } => (prefetch as u32) << 3,
            BarKind::Mem64 { prefetch } => (2 << 1) | ((prefetch as u32) << 3),
        }
    }

    /// Address bits of the register that are not flags.
    pub fn address_mask(self) -> u32 {
        match self {
            BarKind::Io => !0x3,
            _ => !0xf,
        }
    }

    /// Whether the BAR takes two registers.
    pub fn is_64(self) -> bool {
        matches!(self, BarKind::Mem64 { .. })
    }
}

/// An assigned BAR as the VM's stage-2 maps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// BAR index (0..6); a 64-bit BAR uses `index` and `index + 1`.
    pub index: u8,
    /// CPU physical address where it decodes (for an I/O BAR, inside the host bridge's I/O
    /// window); mapped at IPA == PA in the owner's stage-2.
    pub base: u64,
    /// Size of the stage-2 mapping: the BAR's size rounded up to whole pages (no two BARs
    /// share a page).
    pub size: u64,
}

/// A BAR register as the hardware has it: what the configuration-space filter emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarReg {
    /// BAR index (0..6).
    pub index: u8,
    /// Memory (32/64-bit) or I/O.
    pub kind: BarKind,
    /// The BAR's own size (a power of two; an I/O BAR can be as small as 4 bytes).
    pub size: u64,
    /// The bus address the hypervisor programmed (== the CPU address for memory BARs on
    /// `virt`; the I/O-space address for I/O BARs).
    pub bus_addr: u64,
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
    /// Its BARs, as mapped.
    pub bars: [Option<Bar>; 6],
}

/// A configured function with its BAR registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Configured {
    /// The function, as VMs are told about it.
    pub function: Function,
    /// Its BAR registers (index `i` for BAR `i`; the upper half of a 64-bit BAR has none).
    pub regs: [Option<BarReg>; 6],
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
                write!(f, "BARs of PCI function {a} do not fit in the host bridge's windows")
            }
        }
    }
}

/// Hands out naturally aligned ranges of a window, never less than a 4 KiB page so that two
/// BARs (possibly of different VMs) never share a stage-2 page.
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

/// Where BARs go: the host bridge's windows.
#[derive(Clone, Copy, Debug)]
pub struct Windows {
    /// Memory BARs (bus address == CPU address).
    pub mem: BarAllocator,
    /// I/O BARs, in I/O-space addresses (starting above the legacy range: 0 reads as
    /// "unassigned" to some OSes).
    pub io: BarAllocator,
    /// CPU address of I/O-space address 0.
    pub io_cpu_base: u64,
}

impl Windows {
    /// First I/O-space address handed out.
    pub const IO_START: u64 = 0x1000;

    /// Allocators over a bridge's 32-bit memory window and its I/O window (CPU range).
    pub fn new(mem: MemRange, pio: MemRange) -> Self {
        Self {
            mem: BarAllocator::new(mem),
            io: BarAllocator::new(MemRange::new(
                Self::IO_START,
                pio.size.saturating_sub(Self::IO_START),
            )),
            io_cpu_base: pio.base,
        }
    }
}

/// Vendor and device ID of the function at `addr`, if present.
pub fn probe(cfg: &mut dyn ConfigSpace, addr: PciAddr) -> Option<(u16, u16)> {
    let id = cfg.read32(addr, reg::ID);
    let vendor = id as u16;
    (vendor != 0xffff && vendor != 0).then_some((vendor, (id >> 16) as u16))
}

/// Rounds up to whole 4 KiB pages.
fn page_extent(size: u64) -> u64 {
    size.max(BarAllocator::MIN).next_power_of_two()
}

/// Sizes and assigns the BARs of an endpoint and enables memory and I/O decoding for those it
/// has. Bus mastering stays off: see [`set_bus_master`].
pub fn configure(
    cfg: &mut dyn ConfigSpace,
    addr: PciAddr,
    windows: &mut Windows,
) -> Result<Configured, PciError> {
    let (vendor, device) = probe(cfg, addr).ok_or(PciError::NotPresent(addr))?;
    if (cfg.read32(addr, reg::HEADER) >> 16) & 0x7f != 0 {
        return Err(PciError::NotEndpoint(addr));
    }
    // No decoding, no DMA while the BARs move.
    let cmd = cfg.read32(addr, reg::COMMAND) & 0xffff;
    cfg.write32(addr, reg::COMMAND, cmd & !(CMD_MEMORY | CMD_BUS_MASTER | CMD_IO));
    let mut bars = [None; 6];
    let mut regs = [None; 6];
    let mut decode = 0;
    let mut i = 0u8;
    while i < 6 {
        let off = reg::BAR0 + 4 * i as u16;
        let orig = cfg.read32(addr, off);
        let kind = BarKind::from_register(orig);
        let step = if kind.is_64() && i < 5 { 2 } else { 1 };
        cfg.write32(addr, off, 0xffff_ffff);
        let low = cfg.read32(addr, off) & kind.address_mask();
        let high = if step == 2 {
            cfg.write32(addr, off + 4, 0xffff_ffff);
            cfg.read32(addr, off + 4)
        } else {
            0
        };
        let mask = ((high as u64) << 32) | low as u64;
        if mask == 0 {
            // Unimplemented BAR.
            cfg.write32(addr, off, orig);
            i += step;
            continue;
        }
        // The size is the lowest writable address bit (I/O BARs may decode only 16 bits).
        let size = mask & mask.wrapping_neg();
        let (bus, cpu) = match kind {
            BarKind::Io => {
                let bus = windows.io.alloc(size).ok_or(PciError::WindowExhausted(addr))?;
                decode |= CMD_IO;
                (bus, windows.io_cpu_base + bus)
            }
            _ => {
                let bus = windows.mem.alloc(size).ok_or(PciError::WindowExhausted(addr))?;
                decode |= CMD_MEMORY;
                (bus, bus)
            }
        };
        cfg.write32(addr, off, bus as u32);
        if step == 2 {
            cfg.write32(addr, off + 4, (bus >> 32) as u32);
        }
        bars[i as usize] = Some(Bar { index: i, base: cpu, size: page_extent(size) });
        regs[i as usize] = Some(BarReg { index: i, kind, size, bus_addr: bus });
        i += step;
    }
    cfg.write32(addr, reg::COMMAND, (cmd & !(CMD_BUS_MASTER | CMD_IO | CMD_MEMORY)) | decode);
    Ok(Configured { function: Function { addr, vendor, device, bars }, regs })
}

/// Turns bus mastering (DMA) on or off.
pub fn set_bus_master(cfg: &mut dyn ConfigSpace, addr: PciAddr, on: bool) {
    let cmd = cfg.read32(addr, reg::COMMAND) & 0xffff;
    let cmd = if on { cmd | CMD_BUS_MASTER } else { cmd & !CMD_BUS_MASTER };
    cfg.write32(addr, reg::COMMAND, cmd);
}

/// A software configuration space for tests.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    /// Functions with BAR masks; unimplemented registers read as zero, absent functions as ones.
    #[derive(Default)]
    pub struct FakeBus {
        pub regs: BTreeMap<(u32, u16), u32>,
        /// Writable bits and read-only flag bits of each BAR register.
        pub masks: BTreeMap<(u32, u16), (u32, u32)>,
        /// Every write that reached the bus: (rid, offset, size, value).
        pub writes: Vec<(u32, u16, u8, u32)>,
    }

    impl FakeBus {
        /// A function with BARs given as (index, writable mask, flag bits).
        pub fn add(&mut self, a: PciAddr, id: u32, bars: &[(u8, u32, u32)]) {
            self.regs.insert((a.rid(), reg::ID), id);
            self.regs.insert((a.rid(), reg::COMMAND), 0);
            self.regs.insert((a.rid(), reg::HEADER), 0);
            for &(i, mask, flags) in bars {
                self.masks.insert((a.rid(), reg::BAR0 + 4 * i as u16), (mask, flags));
                self.regs.insert((a.rid(), reg::BAR0 + 4 * i as u16), flags);
            }
        }

        fn store(&mut self, a: PciAddr, off: u16, v: u32) {
            let v = match self.masks.get(&(a.rid(), off)) {
                Some(&(m, flags)) => (v & m) | flags,
                None if (reg::BAR0..reg::BAR_END).contains(&off) => 0,
                None => v,
            };
            self.regs.insert((a.rid(), off), v);
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
            self.writes.push((a.rid(), off, 4, v));
            self.store(a, off, v);
        }
        fn write_narrow(&mut self, a: PciAddr, off: u16, size: u8, v: u32) {
            self.writes.push((a.rid(), off, size, v));
            let base = off & !3;
            let shift = 8 * (off & 3) as u32;
            let mask = if size == 1 { 0xff } else { 0xffff } << shift;
            let old = self.regs.get(&(a.rid(), base)).copied().unwrap_or(0);
            self.store(a, base, (old & !mask) | ((v << shift) & mask));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeBus;
    use super::*;

    const EDU: PciAddr = PciAddr::slot(3, 0);
    const MEM: MemRange = MemRange::new(0x1000_0000, 0x1000_0000);
    const PIO: MemRange = MemRange::new(0x3eff_0000, 0x1_0000);

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
        let mut win = Windows::new(MEM, PIO);
        let c = configure(&mut bus, EDU, &mut win).unwrap();
        let f = c.function;
        assert_eq!((f.vendor, f.device), (0x1234, 0x11e8));
        assert_eq!(f.bars[0], Some(Bar { index: 0, base: 0x1000_0000, size: 0x10_0000 }));
        assert!(f.bars[1..].iter().all(|b| b.is_none()));
        assert_eq!(
            c.regs[0],
            Some(BarReg {
                index: 0,
                kind: BarKind::Mem32 { prefetch: false },
                size: 0x10_0000,
                bus_addr: 0x1000_0000
            })
        );
        assert_eq!(bus.read32(EDU, reg::BAR0), 0x1000_0000);
        let cmd = bus.read32(EDU, reg::COMMAND);
        assert_eq!(cmd & (CMD_MEMORY | CMD_IO), CMD_MEMORY);
        assert_eq!(cmd & CMD_BUS_MASTER, 0, "no DMA until the SMMU is ready");
        set_bus_master(&mut bus, EDU, true);
        assert_eq!(bus.read32(EDU, reg::COMMAND) & CMD_BUS_MASTER, CMD_BUS_MASTER);
    }

    #[test]
    fn sixty_four_bit_bars_take_two_slots() {
        let mut bus = FakeBus::default();
        // virtio-like: BAR0 64-bit prefetchable 16 KiB, BAR2 32-bit 1 MiB.
        bus.add(
            EDU,
            0x0001_1af4,
            &[(0, 0xffff_c000, 0b1100), (1, 0xffff_ffff, 0), (2, 0xfff0_0000, 0)],
        );
        let mut win = Windows::new(MEM, PIO);
        let c = configure(&mut bus, EDU, &mut win).unwrap();
        let f = c.function;
        assert_eq!(f.bars[0], Some(Bar { index: 0, base: 0x1000_0000, size: 0x4000 }));
        assert_eq!(f.bars[1], None);
        assert_eq!(c.regs[0].unwrap().kind, BarKind::Mem64 { prefetch: true });
        assert_eq!(c.regs[1], None);
        assert_eq!(f.bars[2], Some(Bar { index: 2, base: 0x1010_0000, size: 0x10_0000 }));
        assert_eq!(bus.read32(EDU, reg::BAR0 + 4), 0);
    }

    #[test]
    fn io_bars_go_to_the_io_window_and_map_a_whole_page() {
        let mut bus = FakeBus::default();
        // pci-serial: BAR0 is an 8-byte I/O BAR.
        bus.add(EDU, 0x0002_1b36, &[(0, 0xffff_fff8, 0b01)]);
        let mut win = Windows::new(MEM, PIO);
        let c = configure(&mut bus, EDU, &mut win).unwrap();
        assert_eq!(
            c.regs[0],
            Some(BarReg { index: 0, kind: BarKind::Io, size: 8, bus_addr: 0x1000 })
        );
        assert_eq!(
            c.function.bars[0],
            Some(Bar { index: 0, base: 0x3eff_1000, size: 0x1000 }),
            "mapped as the whole page of the I/O window"
        );
        assert_eq!(bus.read32(EDU, reg::BAR0), 0x1001);
        assert_eq!(bus.read32(EDU, reg::COMMAND) & (CMD_IO | CMD_MEMORY), CMD_IO);
        // A 16-bit I/O decoder (upper half reads zero) sizes the same.
        let other = PciAddr::slot(4, 0);
        bus.add(other, 0x0002_1b36, &[(0, 0x0000_ffc0, 0b01)]);
        let c = configure(&mut bus, other, &mut win).unwrap();
        assert_eq!(c.regs[0].unwrap().size, 0x40);
        assert_eq!(c.regs[0].unwrap().bus_addr, 0x2000, "a page of its own");
    }

    #[test]
    fn absent_and_exhausted() {
        let mut bus = FakeBus::default();
        let mut win = Windows::new(MemRange::new(0x1000_0000, 0x8_0000), PIO);
        assert_eq!(probe(&mut bus, EDU), None);
        assert_eq!(configure(&mut bus, EDU, &mut win), Err(PciError::NotPresent(EDU)));
        bus.add(EDU, 0x11e8_1234, &[(0, 0xfff0_0000, 0)]);
        assert_eq!(configure(&mut bus, EDU, &mut win), Err(PciError::WindowExhausted(EDU)));
    }

    #[test]
    fn bar_kinds_round_trip() {
        for k in [
            BarKind::Io,
            BarKind::Mem32 { prefetch: false },
            BarKind::Mem32 { prefetch: true },
            BarKind::Mem64 { prefetch: false },
            BarKind::Mem64 { prefetch: true },
        ] {
            assert_eq!(BarKind::from_register(k.flags()), k);
        }
    }

    /// A bridge (header type 1) is refused, with or without the multi-function bit; an
    /// endpoint with the multi-function bit is configured.
    #[test]
    fn only_type_0_headers_are_configured() {
        for (header, ok) in [(0x0001_0000, false), (0x0081_0000, false), (0x0080_0000, true)] {
            let mut bus = FakeBus::default();
            bus.add(EDU, 0x11e8_1234, &[(0, 0xfff0_0000, 0)]);
            bus.regs.insert((EDU.rid(), reg::HEADER), header);
            let mut win = Windows::new(MEM, PIO);
            let r = configure(&mut bus, EDU, &mut win);
            assert_eq!(r.is_ok(), ok, "header {header:#x}");
            if !ok {
                assert_eq!(r, Err(PciError::NotEndpoint(EDU)));
                assert!(bus.writes.is_empty(), "nothing written to a bridge");
            }
        }
    }

    /// Decoding and DMA are off while the BARs move (every other command bit kept), and the
    /// function ends with exactly the decoding its BARs need, bus mastering still off.
    #[test]
    fn decoding_is_off_while_the_bars_move() {
        let mut bus = FakeBus::default();
        bus.add(EDU, 0x11e8_1234, &[(0, 0xfff0_0000, 0)]);
        let start = CMD_IO | CMD_MEMORY | CMD_BUS_MASTER | (1 << 10) | (1 << 6);
        bus.regs.insert((EDU.rid(), reg::COMMAND), start);
        let mut win = Windows::new(MEM, PIO);
        configure(&mut bus, EDU, &mut win).unwrap();
        let cmds: std::vec::Vec<u32> =
            bus.writes.iter().filter(|w| w.1 == reg::COMMAND).map(|w| w.3).collect();
        assert_eq!(cmds, [0x440, 0x442], "off first, then memory decoding only");
        let first_cmd = bus.writes.iter().position(|w| w.1 == reg::COMMAND).unwrap();
        let first_bar = bus.writes.iter().position(|w| w.1 == reg::BAR0).unwrap();
        assert!(first_cmd < first_bar, "decoding off before sizing");
    }

    /// A 64-bit BAR sizes and assigns both halves of its own register pair (and nothing
    /// around it); one larger than 4 GiB (no writable low address bit) does not fit a 32-bit
    /// window; a 64-bit type in BAR5 (no upper half to pair with) is sized as one register.
    #[test]
    fn sixty_four_bit_bars_use_exactly_their_register_pair() {
        let mut bus = FakeBus::default();
        bus.add(EDU, 0x0001_1af4, &[(2, 0xffff_c000, 0b1100), (3, 0xffff_ffff, 0)]);
        let mut win = Windows::new(MEM, PIO);
        configure(&mut bus, EDU, &mut win).unwrap();
        let offs: std::vec::Vec<u16> = bus.writes.iter().map(|w| w.1).collect();
        for o in [0x08, 0x0c, 0x28] {
            assert!(!offs.contains(&o), "wrote {o:#x}: {offs:x?}");
        }
        assert!(bus.writes.contains(&(EDU.rid(), 0x1c, 4, 0xffff_ffff)), "upper half sized");
        assert_eq!(bus.writes.iter().rfind(|w| w.1 == 0x1c), Some(&(EDU.rid(), 0x1c, 4, 0)));
        // In a window above 4 GiB the upper half gets the address's upper half.
        let mut bus = FakeBus::default();
        bus.add(EDU, 0x0001_1af4, &[(0, 0xffff_c000, 0b1100), (1, 0xffff_ffff, 0)]);
        let mut win = Windows::new(MemRange::new(0x80_1234_0000, 0x1_0000_0000), PIO);
        let c = configure(&mut bus, EDU, &mut win).unwrap();
        assert_eq!(c.regs[0].unwrap().bus_addr, 0x80_1234_0000);
        assert_eq!(bus.read32(EDU, reg::BAR0), 0x1234_000c);
        assert_eq!(bus.read32(EDU, reg::BAR0 + 4), 0x80);
        // 8 GiB: the low half has no address bit, the size is in the upper half.
        let mut bus = FakeBus::default();
        bus.add(EDU, 0x0001_1af4, &[(0, 0, 0b1100), (1, 0xffff_fffe, 0)]);
        let mut win = Windows::new(MEM, PIO);
        assert_eq!(configure(&mut bus, EDU, &mut win), Err(PciError::WindowExhausted(EDU)));
        // BAR5 says 64-bit: one register only.
        let mut bus = FakeBus::default();
        bus.add(EDU, 0x0001_1af4, &[(5, 0xffff_f000, 0b0100)]);
        let mut win = Windows::new(MEM, PIO);
        let c = configure(&mut bus, EDU, &mut win).unwrap();
        assert!(bus.writes.iter().all(|w| w.1 != 0x28), "BAR5's neighbour (CardBus CIS) written");
        assert_eq!(c.function.bars[5].map(|b| b.size), Some(0x1000));
    }

    /// Bus mastering turns on and off alone: every other command bit, status kept out.
    #[test]
    fn bus_mastering_alone_turns_on_and_off() {
        let mut bus = FakeBus::default();
        bus.add(EDU, 0x11e8_1234, &[]);
        bus.regs.insert((EDU.rid(), reg::COMMAND), 0xf900_0442);
        set_bus_master(&mut bus, EDU, true);
        assert_eq!(bus.writes.last(), Some(&(EDU.rid(), reg::COMMAND, 4, 0x446)));
        set_bus_master(&mut bus, EDU, true);
        assert_eq!(bus.writes.last(), Some(&(EDU.rid(), reg::COMMAND, 4, 0x446)));
        set_bus_master(&mut bus, EDU, false);
        assert_eq!(bus.writes.last(), Some(&(EDU.rid(), reg::COMMAND, 4, 0x442)));
        set_bus_master(&mut bus, EDU, false);
        assert_eq!(bus.writes.last(), Some(&(EDU.rid(), reg::COMMAND, 4, 0x442)));
    }

    #[test]
    fn errors_say_what_went_wrong() {
        let a = PciAddr::slot(3, 0);
        assert_eq!(
            std::format!("{}", PciError::NotPresent(a)),
            std::format!("no PCI function at {a}")
        );
        assert_eq!(
            std::format!("{}", PciError::NotEndpoint(a)),
            std::format!("PCI function {a} is not an endpoint")
        );
        assert!(std::format!("{}", PciError::WindowExhausted(a)).contains("do not fit"));
    }
}
