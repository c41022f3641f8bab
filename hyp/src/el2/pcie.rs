//! PCIe ECAM access and boot-time bring-up of the devices in the manifest.

use alloc::vec::Vec;
use hyp::pci::{self, ConfigSpace, Configured, Windows};
use log::{info, warn};
use platform::{Board, Manifest, PciAddr};

/// Configuration space through the ECAM window (identity-mapped as device memory at EL2).
pub struct Ecam {
    base: usize,
}

impl Ecam {
    /// The board's ECAM.
    pub fn new(board: &Board) -> Self {
        Self { base: board.pcie_ecam.base as usize }
    }

    fn ptr(&self, a: PciAddr, off: u16) -> *mut u32 {
        let offset = ((a.bus as usize) << 20)
            | ((a.dev as usize & 0x1f) << 15)
            | ((a.func as usize & 7) << 12)
            | (off as usize & 0xffc);
        (self.base + offset) as *mut u32
    }
}

impl ConfigSpace for Ecam {
    fn read32(&mut self, a: PciAddr, off: u16) -> u32 {
        // SAFETY: the address is inside the ECAM window (bus < 256, 4 KiB per function), mapped
        // as device memory; a config read has no side effect.
        unsafe { self.ptr(a, off).read_volatile() }
    }
    fn write32(&mut self, a: PciAddr, off: u16, value: u32) {
        // SAFETY: as for `read32`; only the hypervisor writes configuration space (a Linux
        // host's writes come through the filter).
        unsafe { self.ptr(a, off).write_volatile(value) }
    }
    fn write_narrow(&mut self, a: PciAddr, off: u16, size: u8, value: u32) {
        let p = self.ptr(a, off) as usize + (off as usize & 3);
        match size {
            // SAFETY: as for `write32`; ECAM accepts byte accesses.
            1 => unsafe { (p as *mut u8).write_volatile(value as u8) },
            // SAFETY: as for `write32`; ECAM accepts naturally aligned halfword accesses.
            _ => unsafe { (p as *mut u16).write_volatile(value as u16) },
        }
    }
}

/// Lets the assigned, configured functions master the bus. Call only once the SMMU translates
/// (every stream aborts until a VM attaches it).
pub fn enable_dma(board: &Board, devices: &[Vec<Configured>]) {
    let mut ecam = Ecam::new(board);
    for c in devices.iter().flatten() {
        pci::set_bus_master(&mut ecam, c.function.addr, true);
    }
}

/// Configures every device the manifest assigns (memory BARs in the 32-bit window, I/O BARs in
/// the I/O window, decoding on, bus mastering off) and returns them per VM id. Devices present
/// but not assigned are left with decoding and DMA disabled.
pub fn bring_up(board: &Board, manifest: &Manifest) -> Vec<Vec<Configured>> {
    let mut ecam = Ecam::new(board);
    let mut windows = Windows::new(board.pcie_mmio32, board.pcie_pio);
    let mut per_vm: Vec<Vec<Configured>> = manifest.vms.iter().map(|_| Vec::new()).collect();
    for dev in 0..32u8 {
        let addr = PciAddr::slot(dev, 0);
        let Some((vendor, device)) = pci::probe(&mut ecam, addr) else {
            continue;
        };
        match manifest.owner_of_device(addr) {
            None => {
                pci::set_bus_master(&mut ecam, addr, false);
                info!("pci {addr} [{vendor:04x}:{device:04x}]: not assigned, DMA off");
            }
            Some(vm) => match pci::configure(&mut ecam, addr, &mut windows) {
                Ok(c) => {
                    for r in c.regs.iter().flatten() {
                        let (what, cpu) = match r.kind {
                            pci::BarKind::Io => ("I/O", board.pcie_pio.base + r.bus_addr),
                            pci::BarKind::Mem32 { .. } => ("mem32", r.bus_addr),
                            pci::BarKind::Mem64 { .. } => ("mem64", r.bus_addr),
                        };
                        info!(
                            "pci {addr} [{vendor:04x}:{device:04x}] -> vm {}, stream {:#x}, BAR{} {what} {:#x}+{:#x} at {cpu:#x}",
                            vm.name,
                            addr.rid(),
                            r.index,
                            r.bus_addr,
                            r.size,
                        );
                    }
                    per_vm[vm.id as usize].push(c);
                }
                Err(e) => warn!("{e}: not given to vm {}", vm.name),
            },
        }
    }
    for vm in manifest.vms {
        for d in vm.devices {
            if !per_vm[vm.id as usize].iter().any(|c| c.function.addr == *d) {
                warn!("vm {}: manifest device {d} is not present", vm.name);
            }
        }
    }
    per_vm
}
