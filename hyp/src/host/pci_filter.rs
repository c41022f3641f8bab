//! A VM's view of PCI configuration space (the Linux host's: it probes PCI itself). The ECAM
//! window is absent from the VM's stage-2, so every configuration access traps and comes here
//! through the MMIO emulation path ([`crate::host::mmio`]):
//!
//! - only the VM's own functions exist: every other function (other VMs', the host bridge at
//!   00:00.0, unassigned ones, other buses) reads as all ones and ignores writes;
//! - the BARs of its functions are emulated: the VM reads the address the hypervisor assigned
//!   and can size them the usual way (write all ones, read the mask), but what it writes never
//!   reaches the device: a BAR cannot be moved away from what the VM's stage-2 maps (and the
//!   tree also says `linux,pci-probe-only`); expansion ROMs read as absent;
//! - writes reach the device only where they concern the function alone: the command register
//!   (decoding, bus mastering, INTx disable: DMA still goes through the SMMU), the status
//!   register (write-one-to-clear), cache line size and latency timer, interrupt line, and the
//!   capability space from 0x40 on (MSI, power management, PCIe control: none of the assigned
//!   devices has a capability that moves or resizes a BAR). Everything else is dropped.
#![forbid(unsafe_code)]

use crate::host::mmio::Device;
use crate::pci::{reg, BarReg, ConfigSpace, Configured, CMD_BUS_MASTER, CMD_IO, CMD_MEMORY};
use alloc::vec::Vec;
use platform::PciAddr;

/// Command register bits the VM may change: I/O, memory, bus master, parity error response,
/// SERR#, INTx disable.
pub const COMMAND_WRITABLE: u32 =
    CMD_IO | CMD_MEMORY | CMD_BUS_MASTER | (1 << 6) | (1 << 8) | (1 << 10);

/// One of the VM's functions, with its BAR registers as the VM sees them.
#[derive(Clone, Debug)]
struct Owned {
    addr: PciAddr,
    regs: [Option<BarReg>; 6],
    /// The BAR registers' values as the VM last wrote them (initially what was assigned).
    shadow: [u32; 6],
}

impl Owned {
    fn new(c: &Configured) -> Self {
        let mut shadow = [0u32; 6];
        for r in c.regs.iter().flatten() {
            shadow[r.index as usize] = r.bus_addr as u32;
            if r.kind.is_64() && r.index < 5 {
                shadow[r.index as usize + 1] = (r.bus_addr >> 32) as u32;
            }
        }
        Self { addr: c.function.addr, regs: c.regs, shadow }
    }

    /// The emulated value of BAR register `i`.
    fn bar(&self, i: usize) -> u32 {
        let size_mask = |r: &BarReg| !(r.size.max(1) - 1);
        if let Some(r) = self.regs[i] {
            let mask = size_mask(&r) as u32 & r.kind.address_mask();
            return (self.shadow[i] & mask) | r.kind.flags();
        }
        // The upper half of a 64-bit BAR.
        if let Some(r) = i.checked_sub(1).and_then(|lo| self.regs[lo]).filter(|r| r.kind.is_64()) {
            return self.shadow[i] & (size_mask(&r) >> 32) as u32;
        }
        0
    }
}

/// Configuration space as one VM sees it.
pub struct ConfigFilter<C> {
    cfg: C,
    owned: Vec<Owned>,
    /// Writes that were dropped (not the VM's to make).
    pub dropped_writes: u64,
}

/// A decoded ECAM offset.
fn ecam_decode(offset: u64) -> (PciAddr, u16) {
    let addr = PciAddr {
        bus: ((offset >> 20) & 0xff) as u8,
        dev: ((offset >> 15) & 0x1f) as u8,
        func: ((offset >> 12) & 0x7) as u8,
    };
    (addr, (offset & 0xfff) as u16)
}

impl<C: ConfigSpace> ConfigFilter<C> {
    /// The view of a VM that owns `functions` (as configured by the hypervisor).
    pub fn new(cfg: C, functions: &[Configured]) -> Self {
        Self { cfg, owned: functions.iter().map(Owned::new).collect(), dropped_writes: 0 }
    }

    fn owned(&mut self, addr: PciAddr) -> Option<usize> {
        self.owned.iter().position(|o| o.addr == addr)
    }

    /// The dword at `off` (a multiple of 4) of an owned function, as the VM sees it.
    fn dword(&mut self, i: usize, off: u16) -> u32 {
        let addr = self.owned[i].addr;
        match off {
            reg::BAR0..reg::BAR_END => self.owned[i].bar(((off - reg::BAR0) / 4) as usize),
            reg::ROM => 0,
            _ => self.cfg.read32(addr, off),
        }
    }

    /// A load of `size` bytes at ECAM offset `offset`.
    pub fn read(&mut self, offset: u64, size: u8) -> u64 {
        let ones = crate::host::mmio::truncate(u64::MAX, size);
        let (addr, off) = ecam_decode(offset);
        let Some(i) = self.owned(addr) else { return ones };
        if size > 4 {
            // Configuration space has no 64-bit registers: ECAM does not support such reads.
            return ones;
        }
        let shift = 8 * (off & 3) as u32;
        crate::host::mmio::truncate((self.dword(i, off & !3) >> shift) as u64, size)
    }

    /// A store of `size` bytes of `value` at ECAM offset `offset`.
    pub fn write(&mut self, offset: u64, size: u8, value: u64) {
        let (addr, off) = ecam_decode(offset);
        let (Some(i), true) = (self.owned(addr), size <= 4) else {
            self.dropped_writes += 1;
            return;
        };
        let value = value as u32;
        let cfg = &mut self.cfg;
        let narrow = |cfg: &mut C, off: u16, size: u8, v: u32| {
            if size == 4 {
                cfg.write32(addr, off, v)
            } else {
                cfg.write_narrow(addr, off, size, v)
            }
        };
        match off {
            // BARs: only the shadow registers change.
            reg::BAR0..reg::BAR_END => {
                let slot = &mut self.owned[i].shadow[((off - reg::BAR0) / 4) as usize];
                let shift = 8 * (off & 3) as u32;
                let mask = (crate::host::mmio::truncate(u64::MAX, size) as u32) << shift;
                *slot = (*slot & !mask) | ((value << shift) & mask);
            }
            // Command (with status, when the write covers both).
            reg::COMMAND | 0x05 => {
                let current = cfg.read32(addr, reg::COMMAND) & 0xffff;
                let shift = 8 * (off & 3) as u32;
                let cmd =
                    ((value << shift) & 0xffff & COMMAND_WRITABLE) | (current & !COMMAND_WRITABLE);
                match size {
                    4 => cfg.write32(addr, reg::COMMAND, (value & 0xffff_0000) | cmd),
                    2 if off == reg::COMMAND => cfg.write_narrow(addr, reg::COMMAND, 2, cmd),
                    1 => cfg.write_narrow(addr, off, 1, cmd >> shift),
                    _ => self.dropped_writes += 1,
                }
            }
            // Status: write-one-to-clear error bits of the function itself.
            0x06 | 0x07 => narrow(cfg, off, size, value),
            // Cache line size and latency timer, never the header type or BIST beside them.
            0x0c | 0x0d => {
                let keep = if off == 0x0c { size.min(2) } else { 1 };
                narrow(cfg, off, keep, value)
            }
            // Interrupt line (a scratch register for the OS), never the read-only pin beside it.
            reg::INTERRUPT => narrow(cfg, off, 1, value),
            // Capabilities and extended configuration space.
            0x40.. => narrow(cfg, off, size, value),
            _ => self.dropped_writes += 1,
        }
    }

    /// The real registers, for tests and logs.
    pub fn inner(&mut self) -> &mut C {
        &mut self.cfg
    }
}

/// The ECAM window of one VM as an emulated MMIO device.
pub struct EcamFilter<C> {
    inner: spin::Mutex<ConfigFilter<C>>,
}

impl<C: ConfigSpace> EcamFilter<C> {
    /// The filter, behind a lock.
    pub fn new(filter: ConfigFilter<C>) -> Self {
        Self { inner: spin::Mutex::new(filter) }
    }

    /// Writes dropped so far.
    pub fn dropped_writes(&self) -> u64 {
        self.inner.lock().dropped_writes
    }
}

impl<C: ConfigSpace + Send> Device for EcamFilter<C> {
    fn name(&self) -> &'static str {
        "PCI configuration space"
    }
    fn read(&self, offset: u64, size: u8) -> u64 {
        self.inner.lock().read(offset, size)
    }
    fn write(&self, offset: u64, size: u8, value: u64) {
        self.inner.lock().write(offset, size, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::fake::FakeBus;
    use crate::pci::{configure, Windows, CMD_BUS_MASTER, CMD_IO, CMD_MEMORY};
    use platform::MemRange;

    const EDU: PciAddr = PciAddr::slot(2, 0);
    const SERIAL: PciAddr = PciAddr::slot(5, 0);
    const DISK: PciAddr = PciAddr::slot(6, 0);
    const GUEST_EDU: PciAddr = PciAddr::slot(3, 0);
    const BRIDGE: PciAddr = PciAddr::slot(0, 0);

    fn ecam(a: PciAddr, off: u16) -> u64 {
        ((a.bus as u64) << 20) | ((a.dev as u64) << 15) | ((a.func as u64) << 12) | off as u64
    }

    /// The bus of the QEMU run: host edu, serial, disk; a guest's edu; the host bridge. The
    /// host owns the first three.
    fn host_view() -> ConfigFilter<FakeBus> {
        let mut bus = FakeBus::default();
        bus.add(BRIDGE, 0x0008_1b36, &[]);
        bus.add(EDU, 0x11e8_1234, &[(0, 0xfff0_0000, 0)]);
        bus.add(GUEST_EDU, 0x11e8_1234, &[(0, 0xfff0_0000, 0)]);
        bus.add(SERIAL, 0x0002_1b36, &[(0, 0xffff_fff8, 1)]);
        bus.add(
            DISK,
            0x1001_1af4,
            &[(0, 0xffff_ff80, 1), (1, 0xffff_f000, 0), (4, 0xffff_c000, 0b1100), (5, !0, 0)],
        );
        bus.regs.insert((EDU.rid(), reg::INTERRUPT), 0x0000_0100); // pin A
        let mut win = Windows::new(
            MemRange::new(0x1000_0000, 0x2eff_0000),
            MemRange::new(0x3eff_0000, 0x1_0000),
        );
        let mine: Vec<Configured> = [EDU, GUEST_EDU, SERIAL, DISK]
            .into_iter()
            .map(|a| configure(&mut bus, a, &mut win).unwrap())
            .filter(|c| c.function.addr != GUEST_EDU)
            .collect();
        bus.writes.clear();
        ConfigFilter::new(bus, &mine)
    }

    #[test]
    fn only_owned_functions_exist() {
        let mut f = host_view();
        assert_eq!(f.read(ecam(EDU, 0), 4), 0x11e8_1234);
        assert_eq!(f.read(ecam(EDU, 2), 2), 0x11e8, "device ID, halfword read");
        assert_eq!(f.read(ecam(SERIAL, 0), 4), 0x0002_1b36);
        for absent in [BRIDGE, GUEST_EDU, PciAddr::slot(9, 0), PciAddr { bus: 1, dev: 2, func: 0 }]
        {
            assert_eq!(f.read(ecam(absent, 0), 4), 0xffff_ffff, "{absent}");
            assert_eq!(f.read(ecam(absent, 0x10), 4), 0xffff_ffff, "{absent} BAR0");
            assert_eq!(f.read(ecam(absent, 0), 2), 0xffff);
            assert_eq!(f.read(ecam(absent, 0), 1), 0xff);
        }
        assert_eq!(
            f.read(ecam(PciAddr { bus: 0, dev: 2, func: 1 }, 0), 4),
            0xffff_ffff,
            "other functions of an owned slot"
        );
    }

    #[test]
    fn other_functions_cannot_be_touched() {
        let mut f = host_view();
        let before = f.inner().regs.clone();
        for (a, off) in [(GUEST_EDU, reg::COMMAND), (GUEST_EDU, reg::BAR0), (BRIDGE, reg::COMMAND)]
        {
            f.write(ecam(a, off), 4, 0);
            f.write(ecam(a, off), 2, 0xffff);
        }
        assert!(f.inner().writes.is_empty(), "nothing reached the bus");
        assert_eq!(f.inner().regs, before);
        assert_eq!(f.dropped_writes, 6);
    }

    #[test]
    fn bars_read_as_assigned_and_size_without_moving() {
        let mut f = host_view();
        assert_eq!(f.read(ecam(EDU, 0x10), 4), 0x1000_0000);
        // Sizing: all ones in, the size mask out.
        f.write(ecam(EDU, 0x10), 4, 0xffff_ffff);
        assert_eq!(f.read(ecam(EDU, 0x10), 4), 0xfff0_0000);
        f.write(ecam(EDU, 0x10), 4, 0x1000_0000);
        assert_eq!(f.read(ecam(EDU, 0x10), 4), 0x1000_0000);
        // Moving it: the VM reads back what it wrote, the device never sees it.
        f.write(ecam(EDU, 0x10), 4, 0x2000_0000);
        assert_eq!(f.read(ecam(EDU, 0x10), 4), 0x2000_0000);
        assert_eq!(f.inner().read32(EDU, 0x10), 0x1000_0000, "real BAR unchanged");
        assert!(f.inner().writes.is_empty());
        // Unimplemented BARs and the ROM read as absent.
        assert_eq!(f.read(ecam(EDU, 0x14), 4), 0);
        f.write(ecam(EDU, 0x14), 4, 0xffff_ffff);
        assert_eq!(f.read(ecam(EDU, 0x14), 4), 0);
        f.write(ecam(EDU, reg::ROM), 4, 0xffff_f800);
        assert_eq!(f.read(ecam(EDU, reg::ROM), 4), 0);
    }

    /// A function with a real option ROM: its expansion-ROM BAR (0x30: address 31:11, enable
    /// bit 0) never sees a write, whatever its size or byte, so the host can neither place it
    /// over another BAR nor turn its decoding on; it reads as absent before and after.
    #[test]
    fn the_expansion_rom_cannot_be_moved_or_enabled() {
        let mut f = host_view();
        // A 64 KiB ROM, disabled, at an address firmware left in it (the hypervisor assigns
        // none and never enables one).
        f.inner().masks.insert((EDU.rid(), reg::ROM), (0xffff_0001, 0));
        f.inner().regs.insert((EDU.rid(), reg::ROM), 0x3000_0000);
        let guest_bar = 0x1010_0000u32; // what a move over another BAR would aim at
        for (off, size, v) in [
            (reg::ROM, 4, 0xffff_f800u64), // sizing
            (reg::ROM, 4, (guest_bar | 1) as u64),
            (reg::ROM, 2, 0x0001),
            (reg::ROM + 2, 2, (guest_bar >> 16) as u64),
            (reg::ROM, 1, 0x01),
            (reg::ROM + 1, 1, 0xff),
            (reg::ROM + 2, 1, 0x10),
            (reg::ROM + 3, 1, 0x10),
        ] {
            f.write(ecam(EDU, off), size, v);
            assert_eq!(f.read(ecam(EDU, reg::ROM), 4), 0, "ROM reads as absent after {off:#x}");
        }
        assert!(
            f.inner().writes.is_empty(),
            "a ROM write reached the device: {:x?}",
            f.inner().writes
        );
        assert_eq!(f.inner().read32(EDU, reg::ROM), 0x3000_0000, "the real ROM BAR, unchanged");
        assert_eq!(f.dropped_writes, 8);
        assert_eq!(f.read(ecam(EDU, reg::ROM + 2), 2), 0);
        assert_eq!(f.read(ecam(EDU, reg::ROM + 3), 1), 0);
        // The reserved dword after the capability pointer (0x38) and the capability pointer's
        // own dword are dropped too.
        for off in [0x34u16, 0x38, 0x3b] {
            f.write(ecam(EDU, off), 1, 0xff);
        }
        assert!(f.inner().writes.is_empty());
    }

    #[test]
    fn io_and_sixty_four_bit_bars_size_like_the_hardware() {
        let mut f = host_view();
        assert_eq!(f.read(ecam(SERIAL, 0x10), 4), 0x1001, "I/O BAR at 0x1000");
        f.write(ecam(SERIAL, 0x10), 4, 0xffff_ffff);
        assert_eq!(f.read(ecam(SERIAL, 0x10), 4), 0xffff_fff9, "8-byte I/O BAR");
        // virtio: BAR4/5 a 64-bit prefetchable 16 KiB BAR.
        let (lo, hi) = (f.read(ecam(DISK, 0x20), 4), f.read(ecam(DISK, 0x24), 4));
        assert_eq!(lo & 0xf, 0b1100);
        assert_eq!((hi << 32) | (lo & !0xf), 0x1020_4000);
        f.write(ecam(DISK, 0x20), 4, 0xffff_ffff);
        f.write(ecam(DISK, 0x24), 4, 0xffff_ffff);
        assert_eq!(f.read(ecam(DISK, 0x20), 4), 0xffff_c00c);
        assert_eq!(f.read(ecam(DISK, 0x24), 4), 0xffff_ffff);
        // A byte write into a BAR changes only that byte of the shadow.
        f.write(ecam(DISK, 0x14), 4, 0x1010_0000);
        f.write(ecam(DISK, 0x17), 1, 0x20);
        assert_eq!(f.read(ecam(DISK, 0x14), 4), 0x2010_0000);
        assert!(f.inner().writes.is_empty());
    }

    #[test]
    fn command_register_is_filtered() {
        let mut f = host_view();
        let cmd = f.inner().read32(EDU, reg::COMMAND);
        assert_eq!(cmd & CMD_MEMORY, CMD_MEMORY);
        // Bus master and INTx disable pass; special cycles (bit 3) and MWI (bit 4) do not.
        f.write(
            ecam(EDU, 4),
            2,
            (CMD_MEMORY | CMD_BUS_MASTER | (1 << 3) | (1 << 4) | (1 << 10)) as u64,
        );
        assert_eq!(
            f.inner().read32(EDU, reg::COMMAND) & 0xffff,
            CMD_MEMORY | CMD_BUS_MASTER | (1 << 10)
        );
        assert_eq!(f.inner().writes.last(), Some(&(EDU.rid(), 4, 2, 0x406)), "a halfword write");
        // A dword write reaches command and status together (status bits are RW1C).
        f.write(ecam(SERIAL, 4), 4, 0xf900_0001);
        assert_eq!(f.inner().writes.last(), Some(&(SERIAL.rid(), 4, 4, 0xf900_0001)));
        // A byte write of the command's low byte.
        f.write(ecam(SERIAL, 4), 1, (CMD_IO | (1 << 4)) as u64);
        assert_eq!(f.inner().writes.last(), Some(&(SERIAL.rid(), 4, 1, CMD_IO)));
    }

    /// Each command bit on its own, set and cleared: exactly I/O (0), memory (1), bus master
    /// (2), parity error response (6), SERR# (8) and INTx disable (10) follow the write; every
    /// other bit keeps what the device had.
    #[test]
    fn every_command_bit_is_writable_or_kept_as_listed() {
        const WRITABLE: [u32; 6] = [0, 1, 2, 6, 8, 10];
        for bit in 0..16 {
            for start in [0u32, 0xffff] {
                let mut f = host_view();
                f.inner().regs.insert((EDU.rid(), reg::COMMAND), start);
                let v = start ^ (1 << bit);
                f.write(ecam(EDU, reg::COMMAND), 2, v as u64);
                let now = f.inner().read32(EDU, reg::COMMAND) & 0xffff;
                let want = if WRITABLE.contains(&bit) { v } else { start };
                assert_eq!(now, want, "bit {bit} toggled from {start:#x}");
            }
        }
    }

    /// A byte write to the command register's high byte (0x05) changes only SERR# (8) and
    /// INTx disable (10) there, as a byte; a halfword at 0x05 (command and status halves, not
    /// an access the MMIO path lets through) is dropped and counted.
    #[test]
    fn command_high_byte_and_a_misaligned_halfword() {
        let mut f = host_view();
        f.inner().regs.insert((EDU.rid(), reg::COMMAND), 0x0002);
        f.write(ecam(EDU, 0x05), 1, 0x0f);
        assert_eq!(f.inner().writes.last(), Some(&(EDU.rid(), 0x05, 1, 0x05)));
        assert_eq!(f.inner().read32(EDU, reg::COMMAND) & 0xffff, 0x0502);
        f.write(ecam(EDU, 0x05), 1, 0x00);
        assert_eq!(f.inner().read32(EDU, reg::COMMAND) & 0xffff, 0x0002);
        let n = f.inner().writes.len();
        f.write(ecam(EDU, 0x05), 2, 0xffff);
        assert_eq!(f.inner().writes.len(), n, "nothing reached the device");
        assert_eq!(f.dropped_writes, 1);
        f.write(ecam(EDU, 0x05), 2, 0xffff);
        assert_eq!(f.dropped_writes, 2);
        assert_eq!(f.inner().read32(EDU, reg::COMMAND) & 0xffff, 0x0002);
    }

    /// The status register's error bits are write-one-to-clear and the function's own: a
    /// halfword or byte write to them reaches the device as it is, never widened to the command
    /// register beside it.
    #[test]
    fn status_writes_reach_the_device_narrow() {
        let mut f = host_view();
        f.write(ecam(EDU, 0x06), 2, 0xf900);
        assert_eq!(f.inner().writes.last(), Some(&(EDU.rid(), 0x06, 2, 0xf900)));
        f.write(ecam(EDU, 0x07), 1, 0x80);
        assert_eq!(f.inner().writes.last(), Some(&(EDU.rid(), 0x07, 1, 0x80)));
        assert_eq!(f.inner().writes.len(), 2);
        assert_eq!(f.dropped_writes, 0);
    }

    #[test]
    fn header_writes_reach_only_harmless_registers() {
        let mut f = host_view();
        // Vendor/device, class, header type, BIST, subsystem, capability pointer: dropped.
        for off in [0x00, 0x08, 0x0e, 0x0f, 0x2c, 0x34] {
            f.write(ecam(EDU, off), 1, 0x5a);
        }
        assert!(f.inner().writes.is_empty());
        // Cache line size / latency: written, never the header type or BIST beside them.
        f.write(ecam(EDU, 0x0c), 4, 0xffff_4010);
        assert_eq!(f.inner().writes.last(), Some(&(EDU.rid(), 0x0c, 2, 0xffff_4010)));
        // Interrupt line: written, never the pin.
        f.write(ecam(EDU, reg::INTERRUPT), 4, 0x0000_0223);
        assert_eq!(f.inner().writes.last(), Some(&(EDU.rid(), reg::INTERRUPT, 1, 0x223)));
        assert_eq!(f.read(ecam(EDU, 0x3d), 1), 1, "pin A still");
        // Capability space passes (MSI, PM, PCIe control of the function itself).
        f.write(ecam(EDU, 0x44), 2, 0x1234);
        assert_eq!(f.inner().writes.last(), Some(&(EDU.rid(), 0x44, 2, 0x1234)));
        // No 64-bit configuration accesses.
        let n = f.inner().writes.len();
        f.write(ecam(EDU, 0x40), 8, 0);
        assert_eq!(f.inner().writes.len(), n);
        assert_eq!(f.read(ecam(EDU, 0), 8), u64::MAX);
    }

    #[test]
    fn works_as_an_mmio_device() {
        let dev = EcamFilter::new(host_view());
        assert_eq!(dev.name(), "PCI configuration space");
        assert_eq!(Device::read(&dev, ecam(EDU, 0), 4), 0x11e8_1234);
        assert_eq!(dev.dropped_writes(), 0);
        Device::write(&dev, ecam(GUEST_EDU, 4), 4, 0);
        assert_eq!(dev.dropped_writes(), 1);
        Device::write(&dev, ecam(BRIDGE, 4), 2, 0);
        Device::write(&dev, ecam(EDU, reg::ROM), 4, 0xffff_f801);
        assert_eq!(dev.dropped_writes(), 3);
    }
}
