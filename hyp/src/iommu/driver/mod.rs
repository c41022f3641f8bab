//! The driver of the real SMMUv3 and the pure pieces it is made of: queue index arithmetic,
//! stream table entries and their hitless updates, the stream table itself, and the one
//! sequence the hypervisor runs before anything else at boot: `GBPA.ABORT` with the UPDATE
//! handshake, so that a disabled SMMU aborts every incoming transaction instead of letting it
//! through untranslated (QEMU resets GBPA to bypass).
//!
//! Hardware is reached only through [`SmmuRegs`], so all of it is tested on the host against
//! the software SMMU ([`crate::iommu::soft`], whose `fake` configuration is the driver's test
//! double).

pub mod dmabuf;
pub mod order;
pub mod queue;
pub mod smmu;
pub mod ste;
pub mod strtab;

pub use host_abi::smmu::regs::{self, Gbpa};
pub use platform::regs::{Barrier, SmmuBarriers, SmmuRegs};
use regs::off as offset;

/// Why the SMMU could not be put into abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GbpaError {
    /// GBPA.UPDATE did not clear within the poll budget.
    GbpaUpdateTimeout {
        /// The last value read.
        last: u32,
    },
}

impl core::fmt::Display for GbpaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GbpaError::GbpaUpdateTimeout { last } => {
                write!(
                    f,
                    "SMMU_GBPA.UPDATE did not clear within {GBPA_POLL_LIMIT} reads (last read {last:#010x})"
                )
            }
        }
    }
}

/// Reads of GBPA before the UPDATE handshake is given up on (each wait of it: for an update in
/// flight, then for the driver's own).
pub const GBPA_POLL_LIMIT: u32 = 1_000_000;

/// Makes every transaction abort while the SMMU is disabled: waits for any update in flight,
/// writes GBPA with ABORT and UPDATE set, and waits for UPDATE to clear. Returns the GBPA value
/// found before the write (to log whether the hardware came up in bypass).
pub fn set_global_abort(regs: &mut dyn SmmuRegs) -> Result<Gbpa, GbpaError> {
    let before = wait_gbpa_idle(regs)?;
    regs.write32(offset::GBPA, before.with_abort().0 | Gbpa::UPDATE);
    wait_gbpa_idle(regs)?;
    Ok(before)
}

fn wait_gbpa_idle(regs: &mut dyn SmmuRegs) -> Result<Gbpa, GbpaError> {
    let mut last = 0;
    for _ in 0..GBPA_POLL_LIMIT {
        last = regs.read32(offset::GBPA);
        if !Gbpa(last).update_pending() {
            return Ok(Gbpa(last));
        }
    }
    Err(GbpaError::GbpaUpdateTimeout { last })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// A GBPA that takes `delay` reads to apply an update, recording every access.
    struct FakeSmmu {
        gbpa: u32,
        delay: u32,
        pending: u32,
        log: Vec<(char, usize, u32)>,
    }
    impl SmmuBarriers for FakeSmmu {
        fn barrier(&mut self, _: Barrier) {
            unreachable!("the GBPA handshake needs no barrier");
        }
    }
    impl SmmuRegs for FakeSmmu {
        fn read32(&mut self, off: usize) -> u32 {
            assert_eq!(off, offset::GBPA);
            if self.pending > 0 {
                self.pending -= 1;
                if self.pending == 0 {
                    self.gbpa &= !Gbpa::UPDATE;
                }
            }
            self.log.push(('r', off, self.gbpa));
            self.gbpa
        }
        fn write32(&mut self, off: usize, value: u32) {
            self.log.push(('w', off, value));
            self.gbpa = value;
            self.pending = self.delay;
        }
    }

    #[test]
    fn abort_is_written_with_update_and_awaited() {
        // QEMU's reset value: bypass, with SHCFG = 0b01 (use incoming).
        let mut s = FakeSmmu { gbpa: 0x1000, delay: 3, pending: 0, log: Vec::new() };
        let before = set_global_abort(&mut s).unwrap();
        assert_eq!(before, Gbpa(0x1000));
        let writes: Vec<_> = s.log.iter().filter(|e| e.0 == 'w').collect();
        assert_eq!(writes.len(), 1);
        // UPDATE (bit 31) | ABORT (bit 20) | SHCFG kept.
        assert_eq!(writes[0].2, 0x8010_1000);
        assert_eq!(s.gbpa, 0x0010_1000, "update completed");
        assert_eq!(s.log.last().unwrap().0, 'r', "the handshake ends with a read");
    }

    #[test]
    fn a_stuck_update_is_an_error() {
        let mut s = FakeSmmu { gbpa: Gbpa::UPDATE, delay: 0, pending: 0, log: Vec::new() };
        assert_eq!(
            set_global_abort(&mut s),
            Err(GbpaError::GbpaUpdateTimeout { last: Gbpa::UPDATE })
        );
        assert!(s.log.iter().all(|e| e.0 == 'r'), "nothing written while an update is pending");
        let e = GbpaError::GbpaUpdateTimeout { last: Gbpa::UPDATE | Gbpa::ABORT };
        assert_eq!(
            std::string::ToString::to_string(&e),
            "SMMU_GBPA.UPDATE did not clear within 1000000 reads (last read 0x80100000)"
        );
    }
}
