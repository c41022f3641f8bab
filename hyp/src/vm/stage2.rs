//! The one stage-2 layout every VM's translation uses, for the CPU (VTCR_EL2) and for the
//! SMMU (the STE's S2T0SZ, S2SL0, S2PS, S2TG): both are derived from [`VM_STAGE2`], so they
//! cannot disagree. Also the stage-2 a VM's devices get ([`build_dma_stage2`]).

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{Constraints, MemoryRegion, Stage2, Translation};
use aarch64_paging::Mapping;
use platform::{MemRange, VmSpec};

/// A stage-2 translation layout with the 4 KiB granule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2Layout {
    /// Input (IPA) size in bits.
    pub ipa_bits: u8,
    /// Level of the root table (0..=2 with 4 KiB pages).
    pub start_level: u8,
    /// Output (physical address) size in bits: 32, 36, 40, 42, 44, 48 or 52.
    pub pa_bits: u8,
}

/// Every VM's stage 2: 39-bit IPA space with its root at level 1 (aarch64-paging's `Stage2`
/// with root level 1), 40-bit physical addresses.
pub const VM_STAGE2: Stage2Layout = Stage2Layout { ipa_bits: 39, start_level: 1, pa_bits: 40 };

impl Stage2Layout {
    /// T0SZ = 64 - input bits (VTCR_EL2.T0SZ, STE.S2T0SZ).
    pub const fn t0sz(self) -> u8 {
        64 - self.ipa_bits
    }

    /// SL0 for the 4 KiB granule: 2 = level 0, 1 = level 1, 0 = level 2 (VTCR_EL2.SL0,
    /// STE.S2SL0).
    pub const fn sl0(self) -> u8 {
        2 - self.start_level
    }

    /// PS encoding of the output size (VTCR_EL2.PS, STE.S2PS).
    pub const fn ps(self) -> u8 {
        match self.pa_bits {
            32 => 0,
            36 => 1,
            40 => 2,
            42 => 3,
            44 => 4,
            48 => 5,
            _ => 6,
        }
    }

    /// Whether the layout is one the 4 KiB granule allows: the root level can resolve the
    /// input size with at most 16 concatenated tables.
    pub const fn is_valid(self) -> bool {
        // A level-L table resolves 9 bits; the root at level L covers 12 + 9 * (4 - L) bits,
        // and up to 16 concatenated root tables add 4 more.
        let covered = 12 + 9 * (4 - self.start_level as u32);
        self.start_level <= 2
            && (self.ipa_bits as u32) <= covered + 4
            && (self.ipa_bits as u32) > covered - 9
            && self.ipa_bits <= self.pa_bits
    }
}

const _: () = assert!(VM_STAGE2.is_valid());

/// A VM's RAM at stage 2: read-write, normal write-back memory, inner shareable.
pub const S2_RAM: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::ACCESS_FLAG)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::SH_INNER)
    .union(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
    .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB);

/// The translation region of a memory range: `[base, end)`.
pub fn region(r: MemRange) -> MemoryRegion {
    MemoryRegion::new(r.base as usize, r.end() as usize)
}

/// A VM's RAM without its shadow CD pages ([`VmSpec::shadow_cds`]): the range below them and
/// the one above (either may be empty).
pub fn ram_around_shadow(vm: &VmSpec) -> [MemRange; 2] {
    let s = vm.shadow_cds();
    [
        MemRange::new(vm.mem.base, s.base - vm.mem.base),
        MemRange::new(s.end(), vm.mem.end() - s.end()),
    ]
}

/// Builds the stage-2 a VM's devices are given through the SMMU: its RAM at IPA == PA, and
/// nothing else; the hypervisor's shadow CDs inside it read-only (the SMMU fetches the CDs of
/// nested streams through this stage 2). No device of a VM can reach a BAR (peer-to-peer), a
/// GIC frame the host drives, or anything but the memory of the VM that owns it, whatever the
/// VM's stage 1 says; with STE.S2PTW set, a stage-1 walk that lands on device memory faults
/// as well.
pub fn build_dma_stage2<T: Translation<Stage2Attributes>>(
    pool: T,
    vm: &VmSpec,
) -> Mapping<T, Stage2> {
    let mut m = Mapping::new(pool, VM_STAGE2.start_level as usize, Stage2);
    let ram = S2_RAM | Stage2Attributes::XN;
    for r in ram_around_shadow(vm).into_iter().filter(|r| r.size > 0) {
        m.map_range(&region(r), PhysicalAddress(r.base as usize), ram, Constraints::empty())
            .expect("DMA stage-2 map_range");
    }
    let shadow = vm.shadow_cds();
    m.map_range(
        &region(shadow),
        PhysicalAddress(shadow.base as usize),
        S2_SHADOW_CDS,
        Constraints::empty(),
    )
    .expect("DMA stage-2 map_range (shadow CDs)");
    m
}

/// The shadow CDs at a VM's devices' stage 2: its RAM's attributes, read-only, never executable.
pub const S2_SHADOW_CDS: Stage2Attributes = S2_RAM
    .difference(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::S2AP_ACCESS_RO)
    .union(Stage2Attributes::XN);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vm_layout_encodes_as_the_architecture_says() {
        assert_eq!((VM_STAGE2.t0sz(), VM_STAGE2.sl0(), VM_STAGE2.ps()), (25, 1, 2));
        let l0 = Stage2Layout { ipa_bits: 48, start_level: 0, pa_bits: 48 };
        assert_eq!((l0.t0sz(), l0.sl0(), l0.ps()), (16, 2, 5));
        assert!(l0.is_valid());
        // 39 bits from level 2 would need 512 concatenated tables.
        assert!(!Stage2Layout { ipa_bits: 39, start_level: 2, pa_bits: 40 }.is_valid());
        // 30 bits from level 1 wastes a level: not how the architecture wants it.
        assert!(!Stage2Layout { ipa_bits: 30, start_level: 1, pa_bits: 40 }.is_valid());
        assert!(Stage2Layout { ipa_bits: 40, start_level: 1, pa_bits: 40 }.is_valid());
    }

    /// Where `ipa` goes through `m`: the output address and attributes, or `None` if it faults.
    fn translate<T: Translation<Stage2Attributes>>(
        m: &Mapping<T, Stage2>,
        ipa: u64,
    ) -> Option<(u64, Stage2Attributes)> {
        let mut out = None;
        let page = MemoryRegion::new(ipa as usize, ipa as usize + 1);
        m.walk_range(&page, &mut |_, d, level| {
            if d.is_valid() {
                // A block or page at `level` covers 2^(12 + 9 * (3 - level)) bytes.
                let span = 1u64 << (12 + 9 * (3 - level));
                // (A page descriptor has TABLE_OR_PAGE set, a block does not: not an attribute.)
                let flags = d.flags() - Stage2Attributes::TABLE_OR_PAGE;
                out = Some((d.output_address().0 as u64 + (ipa & (span - 1)), flags));
            }
            Ok(())
        })
        .unwrap();
        out
    }

    fn pool() -> crate::pagepool::PagePool {
        use crate::pagepool::{Page, PagePool};
        let pages: std::vec::Vec<Page> = (0..8).map(|_| Page([0; 4096])).collect();
        PagePool::new(std::boxed::Box::leak(pages.into_boxed_slice()))
    }

    /// Every VM's devices reach exactly its RAM: its first and last byte (and page), at
    /// IPA == PA, read-write, never executable; not one byte before or after it, so not the
    /// next VM's first page nor the page below (hypervisor memory or the previous VM).
    #[test]
    fn the_dma_stage2_is_exactly_the_vms_ram() {
        use platform::qemu_virt::MANIFEST;
        for vm in MANIFEST.vms {
            let m = build_dma_stage2(pool(), vm);
            let r = vm.mem;
            let shadow = vm.shadow_cds();
            for ipa in [r.base, r.base + 0xfff, r.base + 0x1000, r.end() - 0x1000, r.end() - 1] {
                let (pa, flags) = translate(&m, ipa)
                    .unwrap_or_else(|| panic!("{}: {ipa:#x} in its RAM is not mapped", vm.name));
                assert_eq!(pa, ipa, "{}: IPA == PA", vm.name);
                assert_eq!(flags, S2_RAM | Stage2Attributes::XN, "{}: {ipa:#x}", vm.name);
            }
            // Its shadow CDs: readable (the SMMU fetches CDs through this stage 2), never
            // writable by its devices; the pages around them read-write.
            for ipa in [shadow.base, shadow.end() - 1] {
                let (pa, flags) = translate(&m, ipa).expect("shadow CDs mapped");
                assert_eq!(pa, ipa);
                assert_eq!(flags, S2_SHADOW_CDS, "{}: {ipa:#x} shadow CDs", vm.name);
                assert!(flags.contains(Stage2Attributes::S2AP_ACCESS_RO));
                assert!(!flags.contains(Stage2Attributes::S2AP_ACCESS_WO), "writable");
            }
            for ipa in [shadow.base - 1, shadow.end()] {
                let (_, flags) = translate(&m, ipa).expect("around the shadow CDs");
                assert_eq!(flags, S2_RAM | Stage2Attributes::XN, "{}: {ipa:#x}", vm.name);
            }
            for ipa in [r.end(), r.end() + 0xfff, r.end() + 0x1000, r.base - 1, r.base - 0x1000] {
                assert_eq!(translate(&m, ipa), None, "{}: {ipa:#x} outside its RAM", vm.name);
            }
            for other in MANIFEST.vms.iter().filter(|o| o.id != vm.id) {
                for ipa in [other.mem.base, other.mem.end() - 1] {
                    assert_eq!(translate(&m, ipa), None, "{}: {}'s {ipa:#x}", vm.name, other.name);
                }
            }
        }
        // A VM whose RAM is not 2 MiB aligned at its end: the last page still ends it.
        let odd = MANIFEST.vms[1].with_mem(MemRange::new(0x5400_0000, 0x20_3000));
        let m = build_dma_stage2(pool(), &odd);
        assert_eq!(translate(&m, 0x5420_2fff).map(|t| t.0), Some(0x5420_2fff));
        assert_eq!(translate(&m, 0x5420_3000), None);
        assert_eq!(translate(&m, 0x53ff_ffff), None);
    }

    #[test]
    fn every_output_size_has_its_ps_encoding() {
        let ps = |pa_bits| Stage2Layout { ipa_bits: 32, start_level: 1, pa_bits }.ps();
        assert_eq!([32, 36, 40, 42, 44, 48, 52].map(ps), [0, 1, 2, 3, 4, 5, 6]);
    }
}
