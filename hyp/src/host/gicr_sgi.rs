//! The host's view of the register page of its CPUs' SGI/PPI frames: the first 4 KiB of each
//! CPU's SGI frame, where the group, priority, enable, pending, active and configuration bits of
//! its SGIs and PPIs live. The rest of the frame (reserved space) stays mapped in its stage-2;
//! this page is trapped so that two things cannot happen:
//!
//! - **An interrupt of the host above the hypervisor's.** The hypervisor's own interrupts (the
//!   real SMMU's) are group 0 at priority 0 and reach EL2 as FIQs on the host's CPUs only when
//!   they are above the CPU's running priority. A host that gave one of its own interrupts
//!   priority 0, took it and never ended it would hold them off for as long as it liked (and
//!   with `ICC_BPR1_EL1` = 7, which stays the host's, any priority below 0x80 has the group
//!   priority 0). Every priority byte the host writes is raised to at least
//!   [`PRIORITY_FLOOR`] (0x80): Linux uses 0xa0, and 0x20 only for pseudo-NMIs, which are off.
//! - **An interrupt of the host turned into one of the hypervisor's.** Group 0 is the
//!   hypervisor's: `IGROUPR0` is kept all ones (group 1, which is what Linux writes) and
//!   `IGRPMODR0` all zeros; `NSACR` reads as zero and ignores writes.
//!
//! Enables, pending and active bits and the trigger configuration pass as written (the host
//! drives its SGIs and PPIs itself). Accesses are 32-bit, or 8-bit to `IPRIORITYR`; other
//! offsets and sizes read as zero and ignore writes. A write that asked for more than it got (a
//! priority above the floor, group 0, a group modifier) is counted, and the first is logged by
//! the caller. Linux touches this page when a CPU comes up and when it enables or disables a
//! PPI, never on an interrupt's own path (acknowledge and end are system registers), so the
//! trap costs nothing per interrupt.
#![forbid(unsafe_code)]

use crate::host::mmio::{Device, Frame};
use core::sync::atomic::{AtomicU32, Ordering};

/// Register offsets from the start of the SGI frame (the one table: `platform::gic::gicr`).
pub mod off {
    use platform::gic::gicr as g;
    /// GICR_IGROUPR0.
    pub const IGROUPR0: u64 = g::SGI_IGROUPR0 - g::SGI_FRAME;
    /// GICR_ISENABLER0.
    pub const ISENABLER0: u64 = g::SGI_ISENABLER0 - g::SGI_FRAME;
    /// GICR_ICENABLER0.
    pub const ICENABLER0: u64 = g::SGI_ICENABLER0 - g::SGI_FRAME;
    /// GICR_ISPENDR0.
    pub const ISPENDR0: u64 = g::SGI_ISPENDR0 - g::SGI_FRAME;
    /// GICR_ICPENDR0.
    pub const ICPENDR0: u64 = g::SGI_ICPENDR0 - g::SGI_FRAME;
    /// GICR_ISACTIVER0.
    pub const ISACTIVER0: u64 = g::SGI_ISACTIVER0 - g::SGI_FRAME;
    /// GICR_ICACTIVER0.
    pub const ICACTIVER0: u64 = g::SGI_ICACTIVER0 - g::SGI_FRAME;
    /// GICR_IPRIORITYR0..7 (a byte per SGI/PPI).
    pub const IPRIORITYR: u64 = g::SGI_IPRIORITYR - g::SGI_FRAME;
    /// One past GICR_IPRIORITYR7.
    pub const IPRIORITYR_END: u64 = IPRIORITYR + 32;
    /// GICR_ICFGR0.
    pub const ICFGR0: u64 = g::SGI_ICFGR0 - g::SGI_FRAME;
    /// GICR_ICFGR1.
    pub const ICFGR1: u64 = g::SGI_ICFGR1 - g::SGI_FRAME;
    /// GICR_IGRPMODR0.
    pub const IGRPMODR0: u64 = g::SGI_IGRPMODR0 - g::SGI_FRAME;
    /// GICR_NSACR.
    pub const NSACR: u64 = g::SGI_NSACR - g::SGI_FRAME;
    /// The page this filter covers.
    pub const PAGE: u64 = g::SGI_REGISTERS_PAGE;
}

/// The most urgent priority the host may give one of its interrupts (numerically the lowest):
/// the hypervisor's own are at 0 (`el2::gic`), and 0x80 keeps the host's below them whatever
/// binary point it sets for group 1 (`platform::gic::VM_PRIORITY_FLOOR`).
pub const PRIORITY_FLOOR: u8 = platform::gic::VM_PRIORITY_FLOOR;

/// `word` (four priority bytes) with each byte selected by `lanes` (0xff per byte) raised to
/// at least [`PRIORITY_FLOOR`]; other bytes as they are.
pub fn raise_priorities(word: u32, lanes: u32) -> u32 {
    let mut out = word;
    for lane in 0..4 {
        let shift = 8 * lane;
        if (lanes >> shift) & 0xff == 0 {
            continue;
        }
        let byte = (word >> shift) & 0xff;
        if byte < u32::from(PRIORITY_FLOOR) {
            out = (out & !(0xff << shift)) | u32::from(PRIORITY_FLOOR) << shift;
        }
    }
    out
}

/// What a write asked for that it did not get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shaped {
    /// A priority above [`PRIORITY_FLOOR`] (raised to it).
    Priority,
    /// Group 0, or a group modifier (group 1 kept).
    Group,
    /// `NSACR`, or an offset or size that is no register here (ignored).
    Other,
}

/// The filter over one CPU's SGI-frame register page.
pub struct SgiFrameFilter<F> {
    frame: F,
    /// Writes that asked for more than they got, by [`Shaped`] kind.
    shaped: [AtomicU32; 3],
}

impl<F: Frame> SgiFrameFilter<F> {
    /// The host's view of `frame` (offsets from the start of the SGI frame).
    pub fn new(frame: F) -> Self {
        Self { frame, shaped: [const { AtomicU32::new(0) }; 3] }
    }

    /// The frame behind the filter.
    pub fn frame(&self) -> &F {
        &self.frame
    }

    /// Writes of `kind` that asked for more than they got so far.
    pub fn shaped(&self, kind: Shaped) -> u32 {
        self.shaped[kind as usize].load(Ordering::Relaxed)
    }

    fn count(&self, kind: Shaped) -> Option<Shaped> {
        self.shaped[kind as usize].fetch_add(1, Ordering::Relaxed);
        Some(kind)
    }

    fn readable(offset: u64) -> bool {
        matches!(
            offset,
            off::IGROUPR0
                | off::ISENABLER0
                | off::ICENABLER0
                | off::ISPENDR0
                | off::ICPENDR0
                | off::ISACTIVER0
                | off::ICACTIVER0
                | off::ICFGR0
                | off::ICFGR1
                | off::IGRPMODR0
        ) || (off::IPRIORITYR..off::IPRIORITYR_END).contains(&offset)
    }

    /// A load of `size` bytes at `offset`.
    pub fn read(&self, offset: u64, size: u8) -> u64 {
        match size {
            4 if offset.is_multiple_of(4) && Self::readable(offset) => {
                self.frame.read32(offset) as u64
            }
            1 if (off::IPRIORITYR..off::IPRIORITYR_END).contains(&offset) => {
                (self.frame.read32(offset & !3) >> (8 * (offset & 3))) as u8 as u64
            }
            _ => 0,
        }
    }

    /// A store of `size` bytes of `value` at `offset`. Returns what it asked for and did not
    /// get, if anything (what it may have is written either way).
    pub fn write(&self, offset: u64, size: u8, value: u64) -> Option<Shaped> {
        let is_priority = (off::IPRIORITYR..off::IPRIORITYR_END).contains(&offset);
        match size {
            1 if is_priority => {
                let (word, shift) = (offset & !3, 8 * (offset & 3));
                let want = (value as u32 & 0xff) << shift;
                let lane = 0xff << shift;
                let got = raise_priorities(want, lane);
                // The other three bytes as the hardware has them (a byte store to a GICR
                // priority register changes one byte).
                let old = self.frame.read32(word);
                self.frame.write32(word, (old & !lane) | got);
                (got != want).then(|| self.count(Shaped::Priority)).flatten()
            }
            4 if offset.is_multiple_of(4) && is_priority => {
                let want = value as u32;
                let got = raise_priorities(want, u32::MAX);
                self.frame.write32(offset, got);
                (got != want).then(|| self.count(Shaped::Priority)).flatten()
            }
            4 if offset == off::IGROUPR0 => {
                self.frame.write32(offset, u32::MAX);
                (value as u32 != u32::MAX).then(|| self.count(Shaped::Group)).flatten()
            }
            4 if offset == off::IGRPMODR0 => {
                self.frame.write32(offset, 0);
                (value as u32 != 0).then(|| self.count(Shaped::Group)).flatten()
            }
            4 if offset.is_multiple_of(4) && offset != off::NSACR && Self::readable(offset) => {
                self.frame.write32(offset, value as u32);
                None
            }
            _ => self.count(Shaped::Other),
        }
    }
}

impl<F: Frame> Device for SgiFrameFilter<F> {
    fn name(&self) -> &'static str {
        "GIC redistributor (SGI frame registers)"
    }
    fn read(&self, offset: u64, size: u8) -> u64 {
        SgiFrameFilter::read(self, offset, size)
    }
    fn write(&self, offset: u64, size: u8, value: u64) {
        let _ = SgiFrameFilter::write(self, offset, size, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mmio::FakeFrame;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    fn filter() -> SgiFrameFilter<FakeFrame> {
        let mut regs = BTreeMap::new();
        for o in [
            off::IGROUPR0,
            off::ISENABLER0,
            off::ICENABLER0,
            off::ISPENDR0,
            off::ICPENDR0,
            off::ISACTIVER0,
            off::ICACTIVER0,
            off::ICFGR0,
            off::ICFGR1,
            off::IGRPMODR0,
        ] {
            regs.insert(o, 0);
        }
        regs.insert(off::IGROUPR0, u32::MAX);
        for o in (off::IPRIORITYR..off::IPRIORITYR_END).step_by(4) {
            regs.insert(o, 0xa0a0_a0a0);
        }
        SgiFrameFilter::new(FakeFrame::with(regs))
    }

    fn writes(f: &SgiFrameFilter<FakeFrame>) -> Vec<(u64, u32)> {
        core::mem::take(&mut *f.frame().writes.lock())
    }

    #[test]
    fn the_offsets_are_the_architectures() {
        assert_eq!(
            [off::IGROUPR0, off::ISENABLER0, off::ICENABLER0, off::ISPENDR0, off::ICPENDR0],
            [0x80, 0x100, 0x180, 0x200, 0x280]
        );
        assert_eq!([off::ISACTIVER0, off::ICACTIVER0, off::IPRIORITYR], [0x300, 0x380, 0x400]);
        assert_eq!(
            [off::ICFGR0, off::ICFGR1, off::IGRPMODR0, off::NSACR],
            [0xc00, 0xc04, 0xd00, 0xe00]
        );
        assert_eq!(off::PAGE, 0x1000);
    }

    #[test]
    fn priorities_are_raised_to_the_floor_and_no_further() {
        assert_eq!(raise_priorities(0x0010_80ff, u32::MAX), 0x8080_80ff);
        assert_eq!(raise_priorities(0x7f81_a000, u32::MAX), 0x8081_a080);
        assert_eq!(raise_priorities(0x0000_0000, 0x0000_ff00), 0x0000_8000, "only the lanes");
        let f = filter();
        // Linux's own value passes untouched, and is not counted.
        assert_eq!(f.write(off::IPRIORITYR + 4, 4, 0xa0a0_a0a0), None);
        assert_eq!(writes(&f), [(off::IPRIORITYR + 4, 0xa0a0_a0a0)]);
        // Priority 0 (the hypervisor's) for PPI 27 (byte 3 of word 6): 0x80.
        assert_eq!(f.write(off::IPRIORITYR + 27, 1, 0x00), Some(Shaped::Priority));
        assert_eq!(writes(&f), [(off::IPRIORITYR + 24, 0x80a0_a0a0)]);
        assert_eq!(f.read(off::IPRIORITYR + 27, 1), 0x80);
        assert_eq!(f.read(off::IPRIORITYR + 26, 1), 0xa0, "its neighbours as they were");
        // A whole word of pseudo-NMI priorities (0x20): each byte raised.
        assert_eq!(f.write(off::IPRIORITYR, 4, 0x2020_20a0), Some(Shaped::Priority));
        assert_eq!(writes(&f), [(off::IPRIORITYR, 0x8080_80a0)]);
        // The last priority word and byte are still priorities; one past them is not.
        assert_eq!(f.write(off::IPRIORITYR + 31, 1, 0x10), Some(Shaped::Priority));
        assert_eq!(writes(&f), [(off::IPRIORITYR + 28, 0x80a0_a0a0)]);
        assert_eq!(f.write(off::IPRIORITYR_END, 1, 0x10), Some(Shaped::Other));
        assert_eq!(f.write(off::IPRIORITYR_END, 4, 0x10), Some(Shaped::Other));
        assert!(writes(&f).is_empty());
        assert_eq!(f.shaped(Shaped::Priority), 3);
        // A byte above the floor lands as written in its own lane (here the third).
        assert_eq!(f.write(off::IPRIORITYR + 10, 1, 0xc8), None);
        assert_eq!(writes(&f), [(off::IPRIORITYR + 8, 0xa0c8_a0a0)]);
    }

    #[test]
    fn byte_reads_exist_for_priorities_only() {
        let f = filter();
        // IGROUPR0 holds ones: a byte of it still reads as zero.
        assert_eq!(f.read(off::IGROUPR0, 4), 0xffff_ffff);
        for o in [off::IGROUPR0, off::IGROUPR0 + 1, off::ICFGR0] {
            assert_eq!(f.read(o, 1), 0, "{o:#x}");
        }
        assert_eq!(f.read(off::IPRIORITYR + 5, 1), 0xa0);
    }

    #[test]
    fn its_interrupts_stay_group_1() {
        let f = filter();
        assert_eq!(f.write(off::IGROUPR0, 4, u32::MAX as u64), None, "what Linux writes");
        assert_eq!(f.write(off::IGROUPR0, 4, 0xffff_fffe), Some(Shaped::Group));
        assert_eq!(f.write(off::IGRPMODR0, 4, 0), None);
        assert_eq!(f.write(off::IGRPMODR0, 4, 1 << 27), Some(Shaped::Group));
        assert_eq!(
            writes(&f),
            [
                (off::IGROUPR0, u32::MAX),
                (off::IGROUPR0, u32::MAX),
                (off::IGRPMODR0, 0),
                (off::IGRPMODR0, 0)
            ]
        );
        assert_eq!(f.shaped(Shaped::Group), 2);
        // NSACR: nothing reaches it, it reads as zero.
        assert_eq!(f.write(off::NSACR, 4, 0xffff_ffff), Some(Shaped::Other));
        assert_eq!(f.read(off::NSACR, 4), 0);
        assert!(writes(&f).is_empty());
    }

    #[test]
    fn enables_pending_active_and_configuration_pass_as_written() {
        let f = filter();
        for (o, v) in [
            (off::ISENABLER0, 1 << 27),
            (off::ICENABLER0, 1 << 30),
            (off::ISPENDR0, 1 << 3),
            (off::ICPENDR0, 1 << 3),
            (off::ISACTIVER0, 1 << 5),
            (off::ICACTIVER0, 1 << 5),
            (off::ICFGR0, 0xaaaa_aaaa),
            (off::ICFGR1, 0x0000_0002),
        ] {
            assert_eq!(f.write(o, 4, v), None, "{o:#x}");
            assert_eq!(writes(&f), [(o, v as u32)], "{o:#x}");
            assert_eq!(f.read(o, 4), v, "{o:#x} reads back");
        }
    }

    #[test]
    fn other_offsets_and_sizes_touch_nothing() {
        let f = filter();
        for (o, size) in [
            (0x0, 4),
            (0x84, 4),
            (0x104, 4),
            (off::ISENABLER0, 8),
            (off::ISENABLER0, 2),
            (off::ISENABLER0 + 1, 1),
            (off::IPRIORITYR + 2, 4),
            (off::IPRIORITYR, 2),
            (0xc08, 4),
            (0xd04, 4),
            (0xffc, 4),
        ] {
            assert_eq!(f.read(o, size), 0, "{o:#x}/{size}");
            assert_eq!(f.write(o, size, u64::MAX), Some(Shaped::Other), "{o:#x}/{size}");
        }
        assert!(writes(&f).is_empty());
        assert_eq!(f.shaped(Shaped::Other), 11);
    }

    #[test]
    fn works_as_an_mmio_device() {
        let f = filter();
        let dev: &dyn Device = &f;
        assert_eq!(dev.name(), "GIC redistributor (SGI frame registers)");
        dev.write(off::IPRIORITYR + 30, 1, 0);
        assert_eq!(dev.read(off::IPRIORITYR + 30, 1), 0x80);
        assert_eq!(dev.read(off::IGROUPR0, 4), 0xffff_ffff);
    }
}
