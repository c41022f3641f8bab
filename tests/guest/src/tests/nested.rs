//! Nested DMA: our own stage 1 (CD table and page tables in our memory) under the hypervisor's
//! stage 2, TLB invalidation through the batch call, and our CDs checked and shadowed.

use super::{
    bytes_eq, dma_must_fault, dma_to, fill, load_edu_buffer, load_edu_buffer_via, me, my_edu,
    others, pattern, read_faults, scratch, write_faults,
};
use guest_tests::msg::Msg;
use guest_tests::{check, check_eq, hv, iommu, msg};
use host_abi::{HypCall, HypError};
use platform::qemu_virt::BOARD;

/// IOVA of the nested tests: deliberately unlike any IPA of ours.
pub const IOVA: u64 = 0x1234_0000;

pub fn nested_dma_translates_and_tlbi_unmaps() -> Result<(), Msg> {
    use host_abi::smmu::Command;
    let (edu, sid) = my_edu()?;
    load_edu_buffer(&edu, scratch(0))?; // still identity: loads the buffer
    let pool = iommu::TablePool::take().ok_or_else(|| msg!("table pool already used"))?;
    let mut space = iommu::DeviceSpace::new(pool);
    let target = scratch(0x4_0000);
    space.map(IOVA, target, 4096).map_err(|_| msg!("stage-1 map failed"))?;
    check_eq!(
        iommu::set_ste(sid, &iommu::vste_s1(space.cd_table)),
        Ok(2),
        "SET_STE stage 1 -> nested (2)"
    );
    fill(target, 4096, |_| 0xee);
    dma_to(&edu, IOVA + 0x100, 256)?;
    bytes_eq(target + 0x100, 256, pattern, "nested DMA at the mapped IPA")?;
    bytes_eq(target, 0x100, |_| 0xee, "below the DMA")?;
    bytes_eq(target + 0x200, 0xe00, |_| 0xee, "above the DMA")?;
    // The IPA itself is not an IOVA of this space.
    dma_must_fault(&edu, target, false, target)?;
    // Unmap, invalidate through the batch call, and the same DMA faults.
    space.unmap(IOVA, 4096).map_err(|_| msg!("stage-1 unmap failed"))?;
    check_eq!(
        iommu::invalidate(&[Command::tlbi_nh_va(0, iommu::ASID, IOVA), Command::sync()]),
        Ok(1),
        "INVALIDATE"
    );
    fill(target, 4096, |_| 0xee);
    dma_must_fault(&edu, IOVA + 0x100, false, IOVA + 0x100)?;
    bytes_eq(target, 4096, |_| 0xee, "memory after DMA to an unmapped IOVA")?;
    // Our stage 1 may point anywhere; our stage 2 still confines the device: mappings to
    // another VM's memory (its boot-info block, checked by its owner) and to the hypervisor
    // fault at stage 2, and the event names the IOVA.
    for (i, o) in others().enumerate() {
        let iova = IOVA + 0x10_0000 * (i as u64 + 1);
        space.map(iova, o.boot_info_ipa(), 4096).map_err(|_| msg!("stage-1 map failed"))?;
        dma_must_fault(&edu, iova, true, iova)?;
    }
    let hyp_iova = IOVA + 0x80_0000;
    space
        .map(hyp_iova, BOARD.hyp.base + 0x20_0000, 4096)
        .map_err(|_| msg!("stage-1 map failed"))?;
    dma_must_fault(&edu, hyp_iova, true, hyp_iova)
}

/// Our CDs reach the SMMU only as the hypervisor's checked copies. Refused at SET_STE: IPS
/// 0b110 (52 bits, beyond the SMMU's OAS: QEMU 10.0.2 would abort the machine on it) and 0b111
/// (reserved), an input size out of range, a reserved granule, tables outside our RAM or in
/// the hypervisor's shadow pages, a field only the hypervisor may set. Accepted, then changed in
/// our memory without CFGI: the device keeps translating with the CD it had; CFGI_CD of a
/// refused CD blocks the stream; a good one is picked up. The shadow pages are not ours: our
/// CPU cannot touch them, our buffers may not be in them, our device may only read them.
pub fn nested_cds_are_checked_and_shadowed() -> Result<(), Msg> {
    use host_abi::smmu::{cd, Cd, Command};
    let (edu, sid) = my_edu()?;
    let shadow = me().shadow_cds();
    let pool = iommu::TablePool::take().ok_or_else(|| msg!("no table pool chunk left"))?;
    let mut space = iommu::DeviceSpace::new(pool);
    let target = scratch(0x5_0000);
    space.map(IOVA, target, 4096).map_err(|_| msg!("stage-1 map failed"))?;
    let cd_ptr = space.cd_table as *mut Cd;
    // SAFETY: our own CD page (DeviceSpace's), no stream is attached to it yet.
    let good = unsafe { cd_ptr.read_volatile() };
    // SAFETY: as above; the device only reads the hypervisor's copy.
    let put = |c: Cd| unsafe { cd_ptr.write_volatile(c) };
    let vste = iommu::vste_s1(space.cd_table);
    let mut amair = good;
    cd::AMAIR.set(&mut amair.0, 1);
    let bad = [
        (good.with_ips(0b110), HypError::BadConfig, "IPS 0b110 (52-bit)"),
        (good.with_ips(0b111), HypError::ReservedField, "IPS 0b111"),
        (good.with_t0sz(40), HypError::BadConfig, "T0SZ 40"),
        (good.with_t0sz(12), HypError::BadConfig, "T0SZ 12"),
        (good.with_tg0(3), HypError::ReservedField, "TG0 0b11"),
        (good.with_aa64(0), HypError::BadConfig, "AArch32 tables"),
        (good.with_ttb0(BOARD.hyp.base + 0x20_0000), HypError::BadConfig, "TTB0 in the hypervisor"),
        (good.with_ttb0(others().next().unwrap().mem.base), HypError::BadConfig, "TTB0 elsewhere"),
        (good.with_ttb0(shadow.base), HypError::BadConfig, "TTB0 in the shadow CDs"),
        (amair, HypError::ForbiddenField, "AMAIR"),
    ];
    for (c, err, what) in bad {
        put(c);
        check_eq!(iommu::set_ste(sid, &vste).err(), Some(err), what);
    }
    // QEMU is still here; a CD table or a hypercall buffer in the shadow pages is refused.
    put(good);
    check_eq!(
        iommu::set_ste(sid, &iommu::vste_s1(shadow.base)).err(),
        Some(HypError::BadConfig),
        "CD table in the shadow CDs"
    );
    let (st, _) = hv::call(HypCall::SetSte { sid, ipa: shadow.base });
    check_eq!(st, Err(HypError::InvalidAddress), "virtual STE in the shadow CDs");
    let (st, _) = hv::call(HypCall::Invalidate { ipa: shadow.base, count: 1 });
    check_eq!(st, Err(HypError::InvalidAddress), "batch in the shadow CDs");
    let (st, _) = hv::call(HypCall::VmInfo { ipa: shadow.base - 32, len: 64 });
    check_eq!(st, Err(HypError::InvalidAddress), "VM_INFO across the shadow CDs");
    read_faults(shadow.base)?;
    write_faults(shadow.base + 8)?;
    // Accepted: nested DMA lands where our page tables say.
    check_eq!(iommu::set_ste(sid, &vste), Ok(2), "SET_STE with a good CD");
    load_edu_buffer_via(&edu, IOVA, target)?;
    fill(target, 4096, |_| 0xee);
    dma_to(&edu, IOVA, 256)?;
    bytes_eq(target, 256, pattern, "nested DMA through the shadow CD")?;
    // Rewritten in our memory, no CFGI: the SMMU still walks the copy it was given.
    put(good.with_ips(0b110));
    fill(target, 4096, |_| 0xee);
    dma_to(&edu, IOVA, 256)?;
    bytes_eq(target, 256, pattern, "DMA after our CD changed without CFGI_CD")?;
    // Our device may read the shadow pages but never write them.
    let sh_iova = IOVA + 0x20_0000;
    space.map(sh_iova, shadow.base, 4096).map_err(|_| msg!("stage-1 map failed"))?;
    let _ = iommu::saw_event(|_| false);
    dma_to(&edu, sh_iova, 64)?;
    let perm =
        iommu::saw_event(|e| e.event_type() == 0x13 && e.stage2() && e.input_addr() == sh_iova)
            .map_err(|e| msg!("EVENT_READ: {e}"))?;
    check!(perm, "no stage-2 permission fault for DMA into the shadow CDs");
    // CFGI_CD now: the refused CD blocks the stream (nothing lands), with the reason.
    check_eq!(
        iommu::invalidate(&[Command::tlbi_nh_all(0), Command::cfgi_cd(sid, 0)]).err(),
        Some((HypError::BadConfig, 1)),
        "CFGI_CD of a 52-bit IPS CD"
    );
    fill(target, 4096, |_| 0xee);
    dma_to(&edu, IOVA, 256)?;
    bytes_eq(target, 4096, |_| 0xee, "DMA of a stream whose CD was refused")?;
    // Back: a good CD and SET_STE; a valid change (walks disabled) is picked up at CFGI_CD,
    // and so is the way back.
    put(good);
    check_eq!(iommu::set_ste(sid, &vste), Ok(2), "SET_STE again");
    put(good.with_epd0(1));
    check_eq!(iommu::invalidate(&[Command::cfgi_cd(sid, 0)]), Ok(1), "CFGI_CD (EPD0)");
    fill(target, 4096, |_| 0xee);
    dma_to(&edu, IOVA, 256)?;
    bytes_eq(target, 4096, |_| 0xee, "DMA with TTB0 walks disabled")?;
    put(good);
    check_eq!(iommu::invalidate(&[Command::cfgi_cd_all(sid)]), Ok(1), "CFGI_CD_ALL");
    fill(target, 4096, |_| 0xee);
    dma_to(&edu, IOVA, 256)?;
    bytes_eq(target, 256, pattern, "nested DMA after CFGI_CD_ALL")
}
