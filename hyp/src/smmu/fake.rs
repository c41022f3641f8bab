//! A small software SMMU for the driver's unit tests: a register file that acknowledges CR0 and
//! GBPA updates, consumes the command queue from memory (rejecting unknown opcodes the way the
//! hardware does), and lets tests post event records.

use super::regs::{gerror, off};
use super::SmmuRegs;
use std::collections::BTreeMap;
use std::vec::Vec;

/// Opcodes the fake accepts.
const KNOWN: [u64; 14] =
    [0x01, 0x03, 0x04, 0x05, 0x06, 0x10, 0x11, 0x12, 0x20, 0x28, 0x30, 0x40, 0x41, 0x46];

#[derive(Default)]
pub struct FakeSmmu {
    pub regs: BTreeMap<usize, u32>,
    /// Every register write, in order.
    pub writes: Vec<(usize, u32)>,
    /// Every command consumed, in order (rejected ones excluded).
    pub consumed: Vec<[u64; 2]>,
}

impl FakeSmmu {
    /// QEMU 10's ID registers (stage=nested).
    pub fn qemu() -> Self {
        let mut f = FakeSmmu::default();
        f.regs.insert(off::IDR0, 0x0d44_101b);
        f.regs.insert(off::IDR1, 16 | (16 << 6) | (19 << 16) | (19 << 21));
        f.regs.insert(off::IDR5, 0x55);
        f.regs.insert(off::GBPA, 0x1000);
        f
    }

    fn reg(&self, o: usize) -> u32 {
        *self.regs.get(&o).unwrap_or(&0)
    }

    fn base64(&self, o: usize) -> u64 {
        self.reg(o) as u64 | (self.reg(o + 4) as u64) << 32
    }

    /// Consumes commands from CONS up to PROD unless a command error is pending.
    fn run_cmdq(&mut self) {
        let base = self.base64(off::CMDQ_BASE);
        let log2 = (base & 0x1f) as u32;
        let addr = base & ((1 << 52) - 1) & !0x1f;
        let mask = (2u32 << log2) - 1;
        loop {
            if (self.reg(off::GERROR) ^ self.reg(off::GERRORN)) & gerror::CMDQ_ERR != 0 {
                return;
            }
            let prod = self.reg(off::CMDQ_PROD) & mask;
            let cons = self.reg(off::CMDQ_CONS) & mask;
            if prod == cons {
                return;
            }
            let i = (cons & ((1 << log2) - 1)) as u64;
            // SAFETY: the driver gave us the address of its own (identity-mapped) queue.
            let c = unsafe { *((addr + i * 16) as *const [u64; 2]) };
            if !KNOWN.contains(&(c[0] & 0xff)) {
                // CERROR_ILL in CONS.ERR, CMDQ_ERR toggled in GERROR.
                self.regs.insert(off::CMDQ_CONS, cons | (1 << 24));
                let g = self.reg(off::GERROR) ^ gerror::CMDQ_ERR;
                self.regs.insert(off::GERROR, g);
                return;
            }
            self.consumed.push(c);
            self.regs.insert(off::CMDQ_CONS, (cons + 1) & mask);
        }
    }

    /// Loses power: every register back to its reset value, GBPA to `gbpa` (the platform's
    /// IMPLEMENTATION DEFINED reset value), ID registers kept.
    pub fn power_loss(&mut self, gbpa: u32) {
        let keep = [off::IDR0, off::IDR1, off::IDR5];
        self.regs.retain(|o, _| keep.contains(o));
        self.regs.insert(off::GBPA, gbpa);
        self.writes.push((usize::MAX, 0));
    }

    /// Opcodes consumed, in order.
    pub fn opcodes(&self) -> Vec<u64> {
        self.consumed.iter().map(|c| c[0] & 0xff).collect()
    }
}

impl SmmuRegs for FakeSmmu {
    fn read32(&mut self, o: usize) -> u32 {
        self.reg(o)
    }

    fn write32(&mut self, o: usize, v: u32) {
        self.writes.push((o, v));
        match o {
            off::GBPA => {
                self.regs.insert(o, v & !(1 << 31));
            }
            off::CR0 => {
                self.regs.insert(o, v);
                self.regs.insert(off::CR0ACK, v);
            }
            off::CMDQ_PROD => {
                self.regs.insert(o, v);
                if self.reg(off::CR0) & (1 << 3) != 0 {
                    self.run_cmdq();
                }
            }
            off::GERRORN => {
                self.regs.insert(o, v);
                // Acknowledging CMDQ_ERR restarts the queue; ERR is cleared.
                let cons = self.reg(off::CMDQ_CONS) & 0x00ff_ffff;
                self.regs.insert(off::CMDQ_CONS, cons);
                self.run_cmdq();
            }
            _ => {
                self.regs.insert(o, v);
            }
        }
    }
}
