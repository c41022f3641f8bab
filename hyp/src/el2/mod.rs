//! The EL2 side: everything that touches system registers or devices.

pub mod cache;
pub mod firmware;
pub mod front_door;
pub mod gic;
pub mod guestmem;
pub mod irq;
pub mod linux;
pub mod mmu;
pub mod pcie;
pub mod smmu_regs;
pub mod sysreg;
pub mod trap;
pub mod uart;
pub mod vm;

use platform::qemu_virt::QemuVirt;
use platform::Manifest;

core::arch::global_asm!(include_str!("entry.S"));

/// The platform this image is built for.
pub const PLATFORM: QemuVirt = QemuVirt;
/// Its manifest, as a constant (for statics sized by it).
pub const PLATFORM_MANIFEST: Manifest = platform::qemu_virt::MANIFEST;
/// The board (for code that runs where no `Platform` is at hand: interrupt handling).
pub const PLATFORM_BOARD: &platform::Board = &platform::qemu_virt::BOARD;
/// The board's UART, for the emergency console.
pub const UART_BASE: usize = platform::qemu_virt::BOARD.uart.base as usize;
