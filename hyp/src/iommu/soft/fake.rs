//! The driver's test double: the software SMMU ([`SoftSmmu`]) configured to behave like
//! QEMU's, executing commands as soon as PROD moves (rejecting opcodes the architecture does not
//! define, as hardware does), recording every register write and consumed command, and letting
//! tests post events, raise errors and cut power.

use super::{MemFault, SmmuIdRegs, SmmuMemory, SoftSmmu, WriteEffect};
use crate::iommu::driver::{Barrier, SmmuBarriers, SmmuRegs};
use host_abi::smmu::regs::{off, Gbpa, Gerror};
use std::vec::Vec;

/// The host's own memory, at the addresses the driver hands the SMMU (its heap buffers).
pub struct HostMemory;

impl SmmuMemory for HostMemory {
    fn read(&mut self, addr: u64, out: &mut [u64]) -> Result<(), MemFault> {
        for (i, w) in out.iter_mut().enumerate() {
            // SAFETY: test-only; the driver gave the SMMU the address of its own live, aligned
            // heap buffer (a queue or table), which is what the fake reads.
            *w = unsafe { ((addr + i as u64 * 8) as *const u64).read_volatile() };
        }
        Ok(())
    }
    fn write(&mut self, addr: u64, data: &[u64]) -> Result<(), MemFault> {
        for (i, w) in data.iter().enumerate() {
            // SAFETY: as for `read`: the driver's own event queue.
            unsafe { ((addr + i as u64 * 8) as *mut u64).write_volatile(*w) };
        }
        Ok(())
    }
}

pub struct FakeSmmu {
    /// The SMMU.
    pub smmu: SoftSmmu,
    /// Every register write, in order (`(usize::MAX, 0)` marks a power loss).
    pub writes: Vec<(usize, u32)>,
    /// Register reads so far.
    pub reads: u64,
    /// Every barrier, with the number of register writes before it.
    pub barriers: Vec<(usize, Barrier)>,
    /// Every command consumed, in order (rejected ones excluded).
    pub consumed: Vec<[u64; 2]>,
    /// Stop consuming commands (a hung SMMU).
    pub hold_commands: bool,
    /// A slow SMMU: commands held (`hold_commands`) are consumed when CMDQ_CONS is read for
    /// the n-th time from now, just before that read returns.
    pub consume_at_cons_read: Option<u32>,
    /// Lose power (GBPA back to abort) just before the register write with this index in
    /// `writes` (a power cut in the middle of a sequence).
    pub lose_power_before_write: Option<usize>,
    /// An implementation that refuses commands with this opcode (CMDQ_CONS.ERR = ILL), as it
    /// does unknown ones.
    pub reject_opcode: Option<u8>,
}

impl FakeSmmu {
    /// QEMU 10's SMMU (stage=nested), coming out of reset in bypass as QEMU's does.
    pub fn qemu() -> Self {
        Self::with_ids(SmmuIdRegs::QEMU)
    }

    /// An SMMU with these ID registers.
    pub fn with_ids(ids: SmmuIdRegs) -> Self {
        // QEMU's GBPA reset value: bypass with SHCFG = 0b01.
        FakeSmmu {
            smmu: SoftSmmu::new(ids, 0x1000),
            writes: Vec::new(),
            reads: 0,
            barriers: Vec::new(),
            consumed: Vec::new(),
            hold_commands: false,
            consume_at_cons_read: None,
            lose_power_before_write: None,
            reject_opcode: None,
        }
    }

    /// Consumes commands from CONS up to PROD unless the queue is stopped.
    fn run_cmdq(&mut self) {
        if self.hold_commands {
            return;
        }
        while let Some(c) = self.smmu.next_command(&mut HostMemory) {
            let c = c.expect("host memory never faults");
            if !SoftSmmu::known_opcode(c[0] as u8) || self.reject_opcode == Some(c[0] as u8) {
                self.smmu.fail_command(SoftSmmu::ILLEGAL);
                return;
            }
            self.consumed.push(c);
            self.smmu.consume();
        }
    }

    /// Loses power: every register back to its reset value, GBPA to `gbpa` (the platform's
    /// IMPLEMENTATION DEFINED reset value), ID registers kept.
    pub fn power_loss(&mut self, gbpa: u32) {
        self.smmu = SoftSmmu::new(*self.smmu.id(), gbpa);
        self.writes.push((usize::MAX, 0));
    }

    /// Writes an event record into the event queue, as a faulting device would make the SMMU.
    pub fn post_event(&mut self, record: [u64; 4]) {
        let _ = self.smmu.post_event(&mut HostMemory, &record);
    }

    /// Raises global errors.
    pub fn raise(&mut self, e: Gerror) {
        self.smmu.raise(e);
    }

    /// Opcodes consumed, in order.
    pub fn opcodes(&self) -> Vec<u64> {
        self.consumed.iter().map(|c| c[0] & 0xff).collect()
    }

    /// GBPA says abort.
    pub fn aborts(&self) -> bool {
        self.smmu.gbpa().abort()
    }
}

impl SmmuBarriers for FakeSmmu {
    fn barrier(&mut self, b: Barrier) {
        self.barriers.push((self.writes.len(), b));
    }
}

impl SmmuRegs for FakeSmmu {
    fn read32(&mut self, o: usize) -> u32 {
        self.reads += 1;
        if o == off::CMDQ_CONS {
            match self.consume_at_cons_read {
                Some(n) if n <= 1 => {
                    self.consume_at_cons_read = None;
                    self.hold_commands = false;
                    self.run_cmdq();
                }
                Some(n) => self.consume_at_cons_read = Some(n - 1),
                None => {}
            }
        }
        self.smmu.read32(o)
    }

    fn write32(&mut self, o: usize, v: u32) {
        if self.lose_power_before_write == Some(self.writes.len()) {
            self.lose_power_before_write = None;
            self.power_loss(Gbpa::ABORT);
        }
        self.writes.push((o, v));
        match self.smmu.write32(o, v) {
            WriteEffect::CmdqProd | WriteEffect::GerrorAck(_) | WriteEffect::Cr0 { .. } => {
                self.run_cmdq()
            }
            _ => {}
        }
    }
}
