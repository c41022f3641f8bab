//! PCIe ECAM access and boot-time bring-up of the devices in the manifest.

use alloc::vec::Vec;
use core::ptr::NonNull;
use hyp::pci::{self, ConfigSpace, Configured, Windows};
use log::{info, warn};
use platform::{Board, Manifest, PciAddr};
use safe_mmio::fields::ReadWrite;
use safe_mmio::UniqueMmioPointer;

/// 32-bit words of the ECAM window: 256 buses of 32 devices of 8 functions of 4 KiB.
const ECAM_WORDS: usize = (256 << 20) / 4;

/// Configuration space through the ECAM window (identity-mapped as device memory at EL2),
/// through safe-mmio.
pub struct Ecam {
    regs: UniqueMmioPointer<'static, [ReadWrite<u32>; ECAM_WORDS]>,
}

// SAFETY: only an address of device memory every CPU may access; each instance is used by one
// CPU at a time (boot, then the Linux host's filter, behind the filter's lock whichever of the
// host's CPUs traps).
unsafe impl Send for Ecam {}
// SAFETY: as for Send; a shared `Ecam` gives no access (every access takes `&mut self`).
unsafe impl Sync for Ecam {}

impl Ecam {
    /// The board's ECAM.
    ///
    /// # Safety
    ///
    /// The board's ECAM window must be mapped as device memory, and no other `Ecam` may be
    /// used while this one is (boot uses one, then the Linux host's configuration filter).
    pub unsafe fn new(board: &Board) -> Self {
        assert!(board.pcie_ecam.size as usize >= ECAM_WORDS * 4, "a full 256-bus ECAM window");
        let p = NonNull::new(board.pcie_ecam.base as *mut [ReadWrite<u32>; ECAM_WORDS])
            .expect("ECAM base is not 0");
        // SAFETY: per the caller: mapped device memory for the whole window, unaliased.
        Self { regs: unsafe { UniqueMmioPointer::new(p) } }
    }

    /// Word index of the configuration register `off` of function `a`.
    fn index(a: PciAddr, off: u16) -> usize {
        (((a.bus as usize) << 20)
            | ((a.dev as usize & 0x1f) << 15)
            | ((a.func as usize & 7) << 12)
            | (off as usize & 0xffc))
            / 4
    }

    fn word(&mut self, a: PciAddr, off: u16) -> UniqueMmioPointer<'_, ReadWrite<u32>> {
        self.regs.get(Self::index(a, off)).expect("inside the 256-bus window by construction")
    }
}

impl ConfigSpace for Ecam {
    fn read32(&mut self, a: PciAddr, off: u16) -> u32 {
        self.word(a, off).read()
    }
    fn write32(&mut self, a: PciAddr, off: u16, value: u32) {
        // Only the hypervisor writes configuration space (a Linux host's writes come through
        // the filter).
        self.word(a, off).write(value)
    }
    fn write_narrow(&mut self, a: PciAddr, off: u16, size: u8, value: u32) {
        // Narrow writes stay narrow: a 32-bit read-modify-write would also write the
        // neighbouring register (the status register's write-one-to-clear bits, for example).
        let addr = self.word(a, off).ptr() as usize + (off as usize & 3);
        match size {
            1 => {
                let p = NonNull::new(addr as *mut ReadWrite<u8>).expect("not 0");
                // SAFETY: a byte of the word just located inside the window (mapped device
                // memory); `&mut self` keeps the whole window unused meanwhile. ECAM accepts
                // byte accesses.
                unsafe { UniqueMmioPointer::new(p) }.write(value as u8)
            }
            _ => {
                let p = NonNull::new((addr & !1) as *mut ReadWrite<u16>).expect("not 0");
                // SAFETY: as above, a naturally aligned halfword of that word.
                unsafe { UniqueMmioPointer::new(p) }.write(value as u16)
            }
        }
    }
}

/// Lets the assigned, configured functions master the bus. Call only once the SMMU translates
/// (every stream aborts until a VM attaches it).
pub fn enable_dma(board: &Board, devices: &[Vec<Configured>]) {
    // SAFETY: the board's ECAM, mapped at EL2; boot is single-threaded and `bring_up`'s
    // instance is gone.
    let mut ecam = unsafe { Ecam::new(board) };
    for c in devices.iter().flatten() {
        pci::set_bus_master(&mut ecam, c.function.addr, true);
    }
}

/// Configures every device the manifest assigns (memory BARs in the 32-bit window, I/O BARs in
/// the I/O window, decoding on, bus mastering off) and returns them per VM id. Devices present
/// but not assigned are left with decoding and DMA disabled.
pub fn bring_up(board: &Board, manifest: &Manifest) -> Vec<Vec<Configured>> {
    // SAFETY: the board's ECAM, mapped at EL2; the only instance during bring-up (boot CPU).
    let mut ecam = unsafe { Ecam::new(board) };
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
