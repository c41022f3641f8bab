//! The PL011 UART a Linux guest is given (its console, `ttyAMA0` and `earlycon=pl011`): emulated
//! on a page absent from its stage-2, every byte it transmits handed to the hypervisor's console
//! (which prints it as a `[name]` line).
//!
//! Why a PL011 rather than a hypercall console: an unmodified Debian kernel has the PL011
//! driver built in (`SERIAL_AMBA_PL011=y`, with its console and `earlycon`) but no console
//! that makes hypercalls, and its DCC console (`HVC_DCC`) is not built; a PL011 needs nothing
//! of the guest but its device tree.
//!
//! What is emulated (register offsets and bits from Arm's PL011 TRM, DDI 0183):
//! - `UARTDR` writes transmit their low byte; the transmit FIFO is never full and never busy
//!   (`UARTFR` reads `TXFE | RXFE`), so Linux's transmit path writes every byte at once and
//!   never waits for the transmit interrupt. There is no input: reads of `UARTDR` are 0 and the
//!   receive FIFO is always empty.
//! - The configuration registers (`ILPR`, `IBRD`, `FBRD`, `LCR_H`, `CR`, `IFLS`, `IMSC`,
//!   `DMACR`) keep what is written, to their implemented widths; `RIS` and `MIS` read 0 (no
//!   interrupt is ever raised: its SPI stays quiet), `ICR` and `RSR/ECR` ignore writes.
//! - The peripheral and PrimeCell ID registers read as a PL011 r1p5 (the AMBA bus matches the
//!   driver on them).
//! - Everything else reads as zero and ignores writes.
//!
//! Every value the guest writes is data: nothing it writes changes what the hypervisor does
//! beyond storing a register or printing a byte (its console lines are bounded by
//! `vm::console::LineBuffer`, as the hypercall console's are).
#![forbid(unsafe_code)]

use crate::host::mmio::Device;
use spin::mutex::SpinMutex;

/// Register offsets.
pub mod off {
    /// Data.
    pub const DR: u64 = 0x000;
    /// Receive status / error clear.
    pub const RSR_ECR: u64 = 0x004;
    /// Flags.
    pub const FR: u64 = 0x018;
    /// IrDA low-power counter.
    pub const ILPR: u64 = 0x020;
    /// Integer baud-rate divisor.
    pub const IBRD: u64 = 0x024;
    /// Fractional baud-rate divisor.
    pub const FBRD: u64 = 0x028;
    /// Line control.
    pub const LCR_H: u64 = 0x02c;
    /// Control.
    pub const CR: u64 = 0x030;
    /// Interrupt FIFO level select.
    pub const IFLS: u64 = 0x034;
    /// Interrupt mask set/clear.
    pub const IMSC: u64 = 0x038;
    /// Raw interrupt status.
    pub const RIS: u64 = 0x03c;
    /// Masked interrupt status.
    pub const MIS: u64 = 0x040;
    /// Interrupt clear.
    pub const ICR: u64 = 0x044;
    /// DMA control.
    pub const DMACR: u64 = 0x048;
    /// First of the eight ID registers (`UARTPeriphID0..3`, `UARTPCellID0..3`).
    pub const ID: u64 = 0xfe0;
}

/// `UARTFR.RXFE`: receive FIFO empty.
pub const FR_RXFE: u32 = 1 << 4;
/// `UARTFR.TXFE`: transmit FIFO empty.
pub const FR_TXFE: u32 = 1 << 7;

/// `UARTPeriphID0..3` and `UARTPCellID0..3`, one byte in each register: part 0x011, designer
/// 0x41 (Arm), revision 1 (r1p5), and the PrimeCell identification.
pub const ID_BYTES: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// The configuration registers that keep what is written, with their implemented bits.
const STORED: [(u64, u32); 8] = [
    (off::ILPR, 0xff),
    (off::IBRD, 0xffff),
    (off::FBRD, 0x3f),
    (off::LCR_H, 0xff),
    (off::CR, 0xff87),
    (off::IFLS, 0x3f),
    (off::IMSC, 0x7ff),
    (off::DMACR, 0x7),
];

/// `UARTCR` at reset: `TXE | RXE` (the UART itself disabled).
const CR_RESET: u32 = 0x300;
/// `UARTIFLS` at reset: both FIFOs at half.
const IFLS_RESET: u32 = 0x12;

/// The registers a PL011 keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regs {
    /// Stored values, in [`STORED`] order.
    stored: [u32; STORED.len()],
}

impl Default for Regs {
    fn default() -> Self {
        let mut stored = [0; STORED.len()];
        for (i, (o, _)) in STORED.iter().enumerate() {
            stored[i] = match *o {
                off::CR => CR_RESET,
                off::IFLS => IFLS_RESET,
                _ => 0,
            };
        }
        Self { stored }
    }
}

impl Regs {
    /// The value a load of the 32-bit register at `offset` (word-aligned) reads.
    pub fn read(&self, offset: u64) -> u32 {
        match offset {
            off::FR => FR_TXFE | FR_RXFE,
            off::ID..=0xffc => ID_BYTES[((offset - off::ID) / 4) as usize] as u32,
            _ => STORED.iter().position(|(o, _)| *o == offset).map_or(0, |i| self.stored[i]),
        }
    }

    /// A store of `value` to the register at `offset` (word-aligned): returns the byte
    /// transmitted, if it is one.
    pub fn write(&mut self, offset: u64, value: u32) -> Option<u8> {
        if offset == off::DR {
            return Some(value as u8);
        }
        if let Some(i) = STORED.iter().position(|(o, _)| *o == offset) {
            self.stored[i] = value & STORED[i].1;
        }
        None
    }
}

/// An emulated PL011 whose transmitted bytes go to `out`.
pub struct Pl011<O> {
    regs: SpinMutex<Regs>,
    out: O,
}

impl<O: Fn(u8) + Sync> Pl011<O> {
    /// A PL011 at reset.
    pub fn new(out: O) -> Self {
        Self { regs: SpinMutex::new(Regs::default()), out }
    }
}

impl<O: Fn(u8) + Sync> Device for Pl011<O> {
    fn name(&self) -> &'static str {
        "PL011"
    }

    /// Any size: the byte, halfword or word at `offset` of the register's word (Linux reads the
    /// IDs as words and its registers as halfwords; earlycon may write bytes).
    fn read(&self, offset: u64, size: u8) -> u64 {
        let word = self.regs.lock().read(offset & !3);
        let shifted = (word >> ((offset & 3) * 8)) as u64;
        if size >= 4 {
            shifted
        } else {
            shifted & ((1 << (size * 8)) - 1)
        }
    }

    /// A store to the low bytes of a register is a store of those bytes to it (narrow stores
    /// at an offset inside a register are ignored: no driver makes them).
    fn write(&self, offset: u64, _size: u8, value: u64) {
        if offset & 3 != 0 {
            return;
        }
        let sent = self.regs.lock().write(offset, value as u32);
        // Outside the lock: the console takes its own.
        if let Some(b) = sent {
            (self.out)(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use std::boxed::Box;
    use std::sync::Mutex;

    fn uart() -> (Pl011<impl Fn(u8) + Sync>, &'static Mutex<Vec<u8>>) {
        let out: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        (Pl011::new(move |b| out.lock().unwrap().push(b)), out)
    }

    #[test]
    fn bytes_written_to_dr_are_transmitted_and_nothing_else_is() {
        let (u, out) = uart();
        for b in b"hi\n" {
            u.write(off::DR, 2, *b as u64);
        }
        // The low byte only, whatever else the store carries.
        u.write(off::DR, 4, 0xffff_ff41);
        for o in [off::IBRD, off::CR, off::IMSC, off::ICR, off::RSR_ECR, 0x100, 0xfe0, 0xffc] {
            u.write(o, 4, 0x5a);
        }
        // A narrow store inside a register is no transmission.
        u.write(off::DR + 1, 1, b'x' as u64);
        assert_eq!(out.lock().unwrap().as_slice(), b"hi\nA");
    }

    #[test]
    fn the_fifo_is_never_full_and_never_has_input() {
        let (u, _) = uart();
        assert_eq!(u.name(), "PL011");
        // TXFE (bit 7) and RXFE (bit 4), as the TRM numbers them.
        assert_eq!((FR_TXFE, FR_RXFE), (0x80, 0x10));
        assert_eq!(u.read(off::FR, 2), 0x90);
        assert_eq!(u.read(off::FR, 2) & (1 << 5), 0, "TXFF never set");
        assert_eq!(u.read(off::FR, 2) & (1 << 3), 0, "BUSY never set");
        assert_eq!(u.read(off::DR, 2), 0);
        u.write(off::IMSC, 2, 0x7ff);
        assert_eq!((u.read(off::RIS, 2), u.read(off::MIS, 2)), (0, 0), "no interrupt, ever");
    }

    #[test]
    fn configuration_registers_keep_their_implemented_bits() {
        let (u, _) = uart();
        assert_eq!(u.read(off::CR, 4), 0x300, "reset: TXE | RXE");
        assert_eq!(u.read(off::IFLS, 4), 0x12);
        for (o, mask) in STORED {
            u.write(o, 4, 0xffff_ffff);
            assert_eq!(u.read(o, 4), mask as u64, "{o:#x}");
            u.write(o, 2, 0);
            assert_eq!(u.read(o, 4), 0, "{o:#x}");
        }
        // Registers not emulated read zero after any write.
        for o in [off::RIS, off::MIS, off::ICR, off::RSR_ECR, 0x04c, 0x800, 0xfdc] {
            u.write(o, 4, 0xffff_ffff);
            assert_eq!(u.read(o, 4), 0, "{o:#x}");
        }
    }

    #[test]
    fn the_ids_are_a_pl011s() {
        let (u, _) = uart();
        let ids: Vec<u8> = (0..8).map(|i| u.read(off::ID + 4 * i, 4) as u8).collect();
        assert_eq!(ids, ID_BYTES);
        // Linux's amba bus: periphid = the low bytes of the four PeriphID registers.
        let pid = (0..4).fold(0u32, |a, i| a | (u.read(off::ID + 4 * i, 4) as u32) << (8 * i));
        assert_eq!(pid & 0x000f_ffff, 0x0004_1011, "Arm's PL011");
        let cid =
            (4..8).fold(0u32, |a, i| a | (u.read(off::ID + 4 * i, 4) as u32) << (8 * (i - 4)));
        assert_eq!(cid, 0xb105_f00d, "the PrimeCell ID");
        // A byte load of a register's second byte.
        u.write(off::IBRD, 4, 0x1234);
        assert_eq!(u.read(off::IBRD + 1, 1), 0x12);
        assert_eq!(u.read(off::IBRD, 1), 0x34);
        // Narrow loads are truncated to their size.
        u.write(off::IBRD, 4, 0xffff);
        assert_eq!((u.read(off::IBRD, 1), u.read(off::IBRD, 2)), (0xff, 0xffff));
    }
}
