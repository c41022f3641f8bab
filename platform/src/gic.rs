//! GICv3 register offsets (Arm IHI 0069H, 12.8 "The GIC Distributor register map" and 12.10
//! "The GIC Redistributor register map"): one source for the hypervisor's GIC filters and
//! for xtask, whose Linux-host tests poke these registers with `devmem`.
//!
//! Offsets are from the start of the distributor ([`gicd`]) or of a redistributor's frame
//! ([`gicr`]); the per-INTID helpers give the offset of the register, or the byte, that holds
//! INTID `intid`'s field (INTIDs up to 1019; the extended ranges are not described).

/// The distributor (`GICD_*`), 64 KiB.
pub mod gicd {
    /// GICD_CTLR.
    pub const CTLR: u64 = 0x0000;
    /// GICD_TYPER.
    pub const TYPER: u64 = 0x0004;
    /// GICD_IIDR.
    pub const IIDR: u64 = 0x0008;
    /// GICD_TYPER2.
    pub const TYPER2: u64 = 0x000c;
    /// GICD_STATUSR.
    pub const STATUSR: u64 = 0x0010;
    /// GICD_SETSPI_NSR (write an INTID: it becomes pending).
    pub const SETSPI_NSR: u64 = 0x0040;
    /// GICD_CLRSPI_NSR.
    pub const CLRSPI_NSR: u64 = 0x0048;
    /// GICD_SETSPI_SR.
    pub const SETSPI_SR: u64 = 0x0050;
    /// GICD_CLRSPI_SR.
    pub const CLRSPI_SR: u64 = 0x0058;
    /// GICD_IGROUPR<n> (1 bit per INTID).
    pub const IGROUPR: u64 = 0x0080;
    /// GICD_ISENABLER<n> (1 bit per INTID, write one to set).
    pub const ISENABLER: u64 = 0x0100;
    /// GICD_ICENABLER<n> (1 bit per INTID, write one to clear).
    pub const ICENABLER: u64 = 0x0180;
    /// GICD_ISPENDR<n>.
    pub const ISPENDR: u64 = 0x0200;
    /// GICD_ICPENDR<n>.
    pub const ICPENDR: u64 = 0x0280;
    /// GICD_ISACTIVER<n>.
    pub const ISACTIVER: u64 = 0x0300;
    /// GICD_ICACTIVER<n>.
    pub const ICACTIVER: u64 = 0x0380;
    /// GICD_IPRIORITYR<n> (a byte per INTID).
    pub const IPRIORITYR: u64 = 0x0400;
    /// GICD_ITARGETSR<n> (legacy: RAZ/WI with affinity routing).
    pub const ITARGETSR: u64 = 0x0800;
    /// GICD_ICFGR<n> (2 bits per INTID).
    pub const ICFGR: u64 = 0x0c00;
    /// GICD_IGRPMODR<n> (1 bit per INTID).
    pub const IGRPMODR: u64 = 0x0d00;
    /// GICD_NSACR<n>.
    pub const NSACR: u64 = 0x0e00;
    /// GICD_SGIR (legacy).
    pub const SGIR: u64 = 0x0f00;
    /// GICD_INMIR<n>.
    pub const INMIR: u64 = 0x0f80;
    /// GICD_IROUTER<n> (64-bit per INTID).
    pub const IROUTER: u64 = 0x6000;
    /// First identification register (GICD_PIDR4); they run to 0xfffc (GICD_CIDR3).
    pub const ID_START: u64 = 0xffd0;

    /// GICD_CTLR.EnableGrp1 (bit 1) with a single security state (`GICD_CTLR.DS` = 1, as on
    /// QEMU `virt` without `secure=on`).
    pub const CTLR_ENABLE_GRP1: u32 = 1 << 1;
    /// GICD_CTLR.ARE (bit 4), affinity routing, with a single security state.
    pub const CTLR_ARE: u32 = 1 << 4;

    /// The offset of the word of the 1-bit-per-INTID register `base` (`IGROUPR`,
    /// `ISENABLER`, ..., `IGRPMODR`) that holds INTID `intid`.
    pub const fn bit_word(base: u64, intid: u32) -> u64 {
        base + 4 * (intid as u64 / 32)
    }

    /// INTID `intid`'s bit in its word of a 1-bit-per-INTID register.
    pub const fn bit(intid: u32) -> u32 {
        1 << (intid % 32)
    }

    /// The offset of the `GICD_ICFGR<n>` word that holds INTID `intid`'s 2 bits.
    pub const fn icfgr(intid: u32) -> u64 {
        ICFGR + 4 * (intid as u64 / 16)
    }

    /// The offset of INTID `intid`'s `GICD_IPRIORITYR` byte.
    pub const fn ipriorityr(intid: u32) -> u64 {
        IPRIORITYR + intid as u64
    }

    /// The offset of INTID `intid`'s `GICD_IROUTER<n>` (64-bit).
    pub const fn irouter(intid: u32) -> u64 {
        IROUTER + 8 * intid as u64
    }
}

/// The most urgent priority (numerically the lowest) a VM that drives its own interrupts may
/// give one: the hypervisor's are at 0x00, and 0x80 keeps every VM's below them whatever binary
/// point the VM sets for group 1 (the running priority is the group priority, bit 7 alone at
/// the coarsest). Linux uses 0xa0 (0x20 for pseudo-NMIs, off by default).
pub const VM_PRIORITY_FLOOR: u8 = 0x80;

/// A redistributor (`GICR_*`): per CPU, an RD (control) frame and an SGI/PPI frame.
pub mod gicr {
    /// One frame, 64 KiB.
    pub const FRAME: u64 = 0x1_0000;
    /// A CPU's redistributor: its RD frame, then its SGI frame.
    pub const FRAMES_SIZE: u64 = 2 * FRAME;
    /// Where the SGI frame starts in a CPU's redistributor.
    pub const SGI_FRAME: u64 = FRAME;

    /// GICR_CTLR (RD frame).
    pub const CTLR: u64 = 0x0000;
    /// GICR_IIDR (RD frame).
    pub const IIDR: u64 = 0x0004;
    /// GICR_TYPER (RD frame, 64-bit).
    pub const TYPER: u64 = 0x0008;
    /// GICR_STATUSR (RD frame).
    pub const STATUSR: u64 = 0x0010;
    /// GICR_WAKER (RD frame).
    pub const WAKER: u64 = 0x0014;
    /// GICR_WAKER.ProcessorSleep: the redistributor stops forwarding interrupts to the CPU.
    pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
    /// GICR_SETLPIR (RD frame, 64-bit).
    pub const SETLPIR: u64 = 0x0040;
    /// GICR_CLRLPIR (RD frame, 64-bit).
    pub const CLRLPIR: u64 = 0x0048;
    /// GICR_PROPBASER (RD frame, 64-bit).
    pub const PROPBASER: u64 = 0x0070;
    /// GICR_PENDBASER (RD frame, 64-bit).
    pub const PENDBASER: u64 = 0x0078;
    /// GICR_INVLPIR (RD frame, 64-bit).
    pub const INVLPIR: u64 = 0x00a0;
    /// GICR_INVALLR (RD frame, 64-bit).
    pub const INVALLR: u64 = 0x00b0;
    /// GICR_SYNCR (RD frame).
    pub const SYNCR: u64 = 0x00c0;
    /// First identification register (GICR_PIDR4); they run to 0xfffc (GICR_CIDR3).
    pub const ID_START: u64 = 0xffd0;

    /// GICR_TYPER.PLPIS (bit 0): physical LPIs supported.
    pub const TYPER_PLPIS: u64 = 1 << 0;
    /// GICR_TYPER.VLPIS (bit 1): virtual LPIs supported.
    pub const TYPER_VLPIS: u64 = 1 << 1;
    /// GICR_TYPER.DirectLPI (bit 3): direct LPI injection supported.
    pub const TYPER_DIRECT_LPI: u64 = 1 << 3;
    /// GICR_TYPER.Last (bit 4): the last redistributor of the series.
    pub const TYPER_LAST: u64 = 1 << 4;
    /// GICR_CTLR.EnableLPIs (bit 0).
    pub const CTLR_ENABLE_LPIS: u32 = 1;

    /// GICR_IGROUPR0 (SGI frame, from the start of the CPU's redistributor).
    pub const SGI_IGROUPR0: u64 = SGI_FRAME + 0x0080;
    /// GICR_ISENABLER0 (SGI frame).
    pub const SGI_ISENABLER0: u64 = SGI_FRAME + 0x0100;
    /// GICR_ICENABLER0 (SGI frame).
    pub const SGI_ICENABLER0: u64 = SGI_FRAME + 0x0180;
    /// GICR_ISPENDR0 (SGI frame).
    pub const SGI_ISPENDR0: u64 = SGI_FRAME + 0x0200;
    /// GICR_ICPENDR0 (SGI frame).
    pub const SGI_ICPENDR0: u64 = SGI_FRAME + 0x0280;
    /// GICR_IPRIORITYR<n> (SGI frame, a byte per SGI/PPI).
    pub const SGI_IPRIORITYR: u64 = SGI_FRAME + 0x0400;
    /// GICR_ISACTIVER0 (SGI frame).
    pub const SGI_ISACTIVER0: u64 = SGI_FRAME + 0x0300;
    /// GICR_ICACTIVER0 (SGI frame).
    pub const SGI_ICACTIVER0: u64 = SGI_FRAME + 0x0380;
    /// GICR_ICFGR0 (SGI frame, SGIs) and GICR_ICFGR1 (PPIs) after it.
    pub const SGI_ICFGR0: u64 = SGI_FRAME + 0x0c00;
    /// GICR_ICFGR1 (SGI frame, PPIs).
    pub const SGI_ICFGR1: u64 = SGI_FRAME + 0x0c04;
    /// GICR_IGRPMODR0 (SGI frame).
    pub const SGI_IGRPMODR0: u64 = SGI_FRAME + 0x0d00;
    /// GICR_NSACR (SGI frame).
    pub const SGI_NSACR: u64 = SGI_FRAME + 0x0e00;
    /// The first 4 KiB page of the SGI frame holds every register above (the rest of the frame
    /// is reserved or implementation defined).
    pub const SGI_REGISTERS_PAGE: u64 = 0x1000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_intid_offsets() {
        // INTID 100: IROUTER<100> at 0x6320, its enable and pending words the fourth ones.
        assert_eq!(gicd::irouter(100), 0x6320);
        assert_eq!(gicd::bit_word(gicd::ISENABLER, 100), 0x10c);
        assert_eq!(gicd::bit_word(gicd::ISPENDR, 100), 0x20c);
        assert_eq!(gicd::bit(100), 1 << 4);
        // INTID 106: its ICFGR word is the seventh, its priority byte at 0x46a.
        assert_eq!(gicd::icfgr(106), 0xc18);
        assert_eq!(gicd::ipriorityr(106), 0x46a);
        assert_eq!(gicd::bit_word(gicd::IGROUPR, 31), gicd::IGROUPR);
        assert_eq!(gicd::bit_word(gicd::IGROUPR, 32), gicd::IGROUPR + 4);
        // The last INTID's route is inside the IROUTER range (0x6000..0x7fdc).
        assert_eq!(gicd::irouter(1019), 0x7fd8);
        assert_eq!(gicr::SGI_ICENABLER0, 0x1_0180);
        assert_eq!(gicr::FRAMES_SIZE, 0x2_0000);
        // What the hypervisor's RD-frame filter hides from a host (hyp/src/gicr.rs).
        assert_eq!(gicr::TYPER_PLPIS | gicr::TYPER_VLPIS | gicr::TYPER_DIRECT_LPI, 0b1011);
    }
}
