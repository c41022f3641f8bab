//! The host's view of its own GICv3 redistributor "RD" frame (the control frame; its SGI/PPI
//! frame is mapped in the host's stage-2 directly). A host that drives the GIC itself (as under
//! pKVM) gets exactly its CPUs' redistributors (consecutive frames, one region), so two things
//! must change:
//!
//! - `GICR_TYPER.Last` reads as 1 in its last CPU's frame: Linux walks redistributor frames until
//!   it sees Last, ignoring the size the device tree gives; the hardware says "not last" (the
//!   guests' CPUs follow), and the next frame is not in the host's stage-2. Its other CPUs'
//!   frames read `Last` as the hardware has it (0: another frame follows).
//! - LPIs stay off: with `GICR_CTLR.EnableLPIs`, `GICR_PROPBASER`/`GICR_PENDBASER` the
//!   redistributor itself reads and writes memory at addresses the host chooses, which no SMMU
//!   checks (the host has no ITS either). `EnableLPIs` is masked, the table registers and LPI
//!   commands ignore writes, and `TYPER` does not advertise physical/virtual/direct LPIs.
//!
//! - Its CPUs never go to sleep at the redistributor: `GICR_WAKER.ProcessorSleep` = 1 would stop
//!   it forwarding any interrupt to the CPU interface, the hypervisor's group-0 ones (FIQs at
//!   EL2, see `el2_controls::Hcr::LINUX_HOST`) included. The bit is masked in its writes (Linux
//!   writes 0 to wake each CPU and 1 only around a power-down state this board's tree does not
//!   offer).
//!
//! Reads of other registers go to the hardware, 32 bits at a time; offsets that are not an
//! architected register read as zero (an emulator may fault on them), writes other than to
//! `GICR_CTLR`, `GICR_STATUSR` and `GICR_WAKER` are dropped.
#![forbid(unsafe_code)]

use crate::host::mmio::{Device, Frame};

/// Register offsets in the RD frame (the one table, shared with xtask's tests).
pub use platform::gic::gicr as off;

/// GICR_TYPER.PLPIS, VLPIS, DirectLPI: LPI support the host does not get.
const TYPER_LPI_BITS: u64 = off::TYPER_PLPIS | off::TYPER_VLPIS | off::TYPER_DIRECT_LPI;
/// GICR_TYPER.Last.
pub const TYPER_LAST: u64 = off::TYPER_LAST;
/// GICR_CTLR.EnableLPIs.
const CTLR_ENABLE_LPIS: u32 = off::CTLR_ENABLE_LPIS;
/// GICR_WAKER.ProcessorSleep.
const WAKER_PROCESSOR_SLEEP: u32 = off::WAKER_PROCESSOR_SLEEP;

/// The filter over one RD frame.
pub struct RedistFilter<F> {
    frame: F,
    /// `GICR_TYPER.Last` forced on: the last frame of the host's region.
    last: bool,
}

impl<F: Frame> RedistFilter<F> {
    /// The host's view of `frame`, the last of its region if `last`.
    pub fn new(frame: F, last: bool) -> Self {
        Self { frame, last }
    }

    fn readable(offset: u64) -> bool {
        matches!(
            offset,
            off::CTLR
                | off::IIDR
                | off::TYPER
                | 0x000c
                | off::STATUSR
                | off::WAKER
                | off::PROPBASER
                | 0x0074
                | off::PENDBASER
                | 0x007c
                | off::SYNCR
        ) || (off::ID_START..off::FRAME).contains(&offset)
    }

    fn read_word(&self, offset: u64) -> u32 {
        match offset {
            off::TYPER => {
                let lo = self.frame.read32(off::TYPER) as u64;
                let last = if self.last { TYPER_LAST } else { 0 };
                ((lo | last) & !TYPER_LPI_BITS) as u32
            }
            o if Self::readable(o) => self.frame.read32(o),
            _ => 0,
        }
    }

    /// A load of `size` bytes at `offset`.
    pub fn read(&self, offset: u64, size: u8) -> u64 {
        match size {
            4 => self.read_word(offset) as u64,
            8 => self.read_word(offset) as u64 | (self.read_word(offset + 4) as u64) << 32,
            // Narrower accesses to GICR registers are not architected (RAZ here).
            _ => 0,
        }
    }

    /// A store of `size` bytes of `value` at `offset`.
    pub fn write(&self, offset: u64, size: u8, value: u64) {
        if size != 4 {
            return;
        }
        let value = value as u32;
        match offset {
            off::CTLR => self.frame.write32(off::CTLR, value & !CTLR_ENABLE_LPIS),
            off::WAKER => self.frame.write32(offset, value & !WAKER_PROCESSOR_SLEEP),
            off::STATUSR => self.frame.write32(offset, value),
            // LPI tables and commands, read-only registers, reserved space: dropped.
            _ => {}
        }
    }

    /// The frame behind the filter.
    pub fn frame(&self) -> &F {
        &self.frame
    }
}

impl<F: Frame> Device for RedistFilter<F> {
    fn name(&self) -> &'static str {
        "GIC redistributor (RD frame)"
    }
    fn read(&self, offset: u64, size: u8) -> u64 {
        RedistFilter::read(self, offset, size)
    }
    fn write(&self, offset: u64, size: u8, value: u64) {
        RedistFilter::write(self, offset, size, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mmio::FakeFrame;
    use std::collections::BTreeMap;

    fn cpu0_frame() -> RedistFilter<FakeFrame> {
        frame(true)
    }

    fn frame(last: bool) -> RedistFilter<FakeFrame> {
        let mut regs = BTreeMap::new();
        // CPU 0 of three: affinity 0, processor number 0, PLPIS | DirectLPI, not Last.
        regs.insert(off::TYPER, 0x0000_0009);
        regs.insert(0xc, 0);
        regs.insert(off::CTLR, 0);
        regs.insert(off::WAKER, 0b110);
        regs.insert(0xffe8, 0x3b); // PIDR2: GICv3
        for o in [off::IIDR, off::STATUSR, off::PROPBASER, 0x74, off::PENDBASER, 0x7c, off::SYNCR] {
            regs.insert(o, 0);
        }
        for o in (off::ID_START..off::FRAME).step_by(4) {
            regs.entry(o).or_insert(0);
        }
        RedistFilter::new(FakeFrame::with(regs), last)
    }

    #[test]
    fn typer_says_last_and_no_lpis() {
        let f = cpu0_frame();
        let typer = f.read(off::TYPER, 8);
        assert_eq!(typer & TYPER_LAST, TYPER_LAST, "Last");
        assert_eq!(typer & TYPER_LPI_BITS, 0);
        assert_eq!(f.read(off::TYPER, 4) & TYPER_LAST, TYPER_LAST, "32-bit read too");
        assert_eq!(f.read(0xffe8, 4), 0x3b, "PIDR2 from the hardware");
        // The architecture's bits written out: Last is bit 4; PLPIS (0), VLPIS (1) and
        // DirectLPI (3) are cleared; Dirty (2), the rest and the affinity (63:32) are kept.
        assert_eq!(typer, 0x10);
        f.frame().regs.lock().insert(off::TYPER, 0xffff_ffff);
        f.frame().regs.lock().insert(0xc, 0x0102_0304);
        assert_eq!(f.read(off::TYPER, 8), 0x0102_0304_ffff_fff4);
        assert_eq!(f.read(off::TYPER + 4, 4), 0x0102_0304, "the affinity half as it is");
    }

    /// The SMP host's first CPU's frame: another of its frames follows, so `Last` reads as the
    /// hardware has it; LPIs stay hidden.
    #[test]
    fn a_frame_before_the_hosts_last_is_not_last() {
        let f = frame(false);
        assert_eq!(f.read(off::TYPER, 8), 0, "not Last, no PLPIS or DirectLPI");
        f.frame().regs.lock().insert(off::TYPER, 0x0000_0019);
        assert_eq!(f.read(off::TYPER, 4), 0x10, "Last from the hardware");
        f.write(off::CTLR, 4, 1);
        assert_eq!(*f.frame().writes.lock(), [(off::CTLR, 0)]);
    }

    #[test]
    fn lpis_cannot_be_enabled_or_pointed_anywhere() {
        let f = cpu0_frame();
        f.write(off::CTLR, 4, 1);
        f.write(off::PROPBASER, 8, 0x4000_0000);
        f.write(off::PROPBASER, 4, 0x4000_0000);
        f.write(off::PENDBASER, 4, 0x4020_0000);
        f.write(0x40, 8, 8192); // SETLPIR
        assert_eq!(*f.frame().writes.lock(), [(off::CTLR, 0)]);
        // Waking the redistributor goes through, and so does clearing an error in STATUSR.
        f.write(off::WAKER, 4, 0);
        assert_eq!(f.frame().writes.lock().last(), Some(&(off::WAKER, 0)));
        f.write(off::STATUSR, 4, 0xf);
        assert_eq!(f.frame().writes.lock().last(), Some(&(off::STATUSR, 0xf)));
    }

    #[test]
    fn its_cpus_cannot_be_put_to_sleep_at_the_redistributor() {
        let f = cpu0_frame();
        // ProcessorSleep (bit 1) would stop the hypervisor's FIQs reaching the CPU.
        f.write(off::WAKER, 4, 0b010);
        f.write(off::WAKER, 4, 0xffff_ffff);
        assert_eq!(*f.frame().writes.lock(), [(off::WAKER, 0), (off::WAKER, 0xffff_fffd)]);
    }

    #[test]
    fn works_as_an_mmio_device() {
        let f = cpu0_frame();
        let dev: &dyn Device = &f;
        assert_eq!(dev.name(), "GIC redistributor (RD frame)");
        assert_eq!(dev.read(off::TYPER, 8), 0x10);
        assert_eq!(dev.read(off::WAKER, 4), 0b110);
        dev.write(off::WAKER, 4, 0);
        dev.write(off::CTLR, 4, 1);
        assert_eq!(*f.frame().writes.lock(), [(off::WAKER, 0), (off::CTLR, 0)]);
    }

    #[test]
    fn unknown_offsets_read_zero_without_touching_the_hardware() {
        let f = cpu0_frame();
        for o in [0x20, 0x100, 0x1000, 0x8000, 0xffc0] {
            assert_eq!(f.read(o, 4), 0, "{o:#x}");
        }
        assert_eq!(f.read(off::CTLR, 1), 0, "byte access");
        f.write(off::CTLR, 1, 1);
        assert!(f.frame().writes.lock().is_empty());
    }
}
