//! Our device's DMA through identity domains: aborted before any STE, landing exactly at the IPA,
//! never outside our RAM, blocked again after CLEAR_STE.

use super::{
    bytes_eq, dma_must_fault, dma_to, fill, load_edu_buffer, me, my_edu, others, pattern, scratch,
};
use guest_tests::edu::{Edu, EDU_ID};
use guest_tests::msg::Msg;
use guest_tests::{check, check_eq, hv, iommu, msg};
use platform::qemu_virt::BOARD;

pub fn dma_before_attach_is_aborted() -> Result<(), Msg> {
    let (d, _) = hv::device_info(0).map_err(|e| msg!("DEVICE_INFO: {e}"))?;
    // SAFETY: our edu device's BAR0, mapped by the hypervisor.
    let edu = unsafe { Edu::new(d.bars[0].ipa) };
    let page = me().mem.base + 0x10_0000;
    // SAFETY: our own RAM, far above the image and its stack.
    let mem = unsafe { core::slice::from_raw_parts_mut(page as *mut u64, 512) };
    mem.iter_mut().for_each(|w| *w = 0x5a5a_5a5a_5a5a_5a5a);
    let before = hv::smmu_stats().map_err(|e| msg!("SMMU_STATS: {e}"))?;
    edu.to_ram(0, page, 4096).map_err(|_| msg!("edu DMA did not complete"))?;
    check!(
        mem.iter().all(|&w| w == 0x5a5a_5a5a_5a5a_5a5a),
        "DMA from an unattached stream reached memory"
    );
    let after = hv::smmu_stats().map_err(|e| msg!("SMMU_STATS: {e}"))?;
    check!(after.commands >= before.commands, "SMMU counters went backwards");
    Ok(())
}

pub fn identity_dma_lands_at_the_ipa() -> Result<(), Msg> {
    let (edu, sid) = my_edu()?;
    check_eq!(iommu::set_ste(sid, &iommu::vste_bypass()), Ok(1), "SET_STE bypass -> identity (1)");
    load_edu_buffer(&edu, scratch(0))?;
    let dst = scratch(0x1_0000);
    fill(dst - 64, 4096 + 128, |_| 0xee);
    dma_to(&edu, dst, 4096)?;
    bytes_eq(dst, 4096, pattern, "DMA destination")?;
    bytes_eq(dst - 64, 64, |_| 0xee, "below the destination")?;
    bytes_eq(dst + 4096, 64, |_| 0xee, "above the destination")
}

pub fn identity_dma_cannot_leave_the_vm() -> Result<(), Msg> {
    let (edu, _) = my_edu()?;
    load_edu_buffer(&edu, scratch(0))?;
    // Not even to our own device's BAR (mapped in our CPU stage-2): devices get a stage-2 of
    // RAM only, so no peer-to-peer and no MMIO through DMA.
    let (d, _) = hv::device_info(0).map_err(|e| msg!("DEVICE_INFO: {e}"))?;
    let bar = d.bars[0].ipa + 0x1000;
    dma_must_fault(&edu, bar, true, bar)?;
    check_eq!(edu.id(), EDU_ID, "our device after a DMA aimed at its own BAR");
    for t in [BOARD.hyp.base + 0x20_0000, BOARD.hyp.base] {
        dma_must_fault(&edu, t, true, t)?;
    }
    for o in others() {
        // Their boot-info block: owner_memory_unchanged checks it is intact.
        dma_must_fault(&edu, o.boot_info_ipa(), true, o.boot_info_ipa())?;
        dma_must_fault(&edu, o.mem.base + 0x20_0000, true, o.mem.base + 0x20_0000)?;
    }
    Ok(())
}

/// Identity DMA reaches the very end of our RAM and not one byte further: the whole last page
/// (and its last byte) take the device's data; a DMA to the first byte past our RAM (the next
/// VM's first page, or RAM nobody owns after the last VM), to the byte below our RAM and to
/// every other VM's first page is aborted at stage 2, and the event reaches us. (Those pages'
/// owners check their first page is intact in `owner_memory_unchanged`.)
pub fn identity_dma_reaches_exactly_our_ram() -> Result<(), Msg> {
    let (edu, sid) = my_edu()?;
    check_eq!(iommu::set_ste(sid, &iommu::vste_bypass()), Ok(1), "SET_STE bypass -> identity (1)");
    load_edu_buffer(&edu, scratch(0))?;
    let end = me().mem.end();
    let last = end - 4096;
    // The last page holds our BootInfo: keep it aside and put it back afterwards.
    let saved = scratch(0x9_0000);
    // SAFETY: both are our own RAM, 4 KiB each, not overlapping.
    unsafe { core::ptr::copy_nonoverlapping(last as *const u8, saved as *mut u8, 4096) };
    fill(last, 4096, |_| 0xee);
    let whole_page = dma_to(&edu, last, 4096)
        .and_then(|()| bytes_eq(last, 4096, pattern, "DMA to the last page of our RAM"));
    // Then only its last byte.
    fill(last, 4096, |_| 0xee);
    let last_byte = whole_page.and_then(|()| {
        edu.to_ram(0xfff, end - 1, 1).map_err(|_| msg!("edu DMA (1 byte) did not complete"))
    });
    let last_byte = last_byte.and_then(|()| {
        bytes_eq(end - 1, 1, |_| pattern(0xfff), "DMA to the last byte of our RAM")?;
        bytes_eq(last, 4095, |_| 0xee, "below the last byte")
    });
    // SAFETY: as above.
    unsafe { core::ptr::copy_nonoverlapping(saved as *const u8, last as *mut u8, 4096) };
    last_byte?;
    // One byte past our RAM, and one below it.
    dma_must_fault(&edu, end, true, end)?;
    let below = me().mem.base - 64;
    dma_must_fault(&edu, below, true, below)?;
    for o in others() {
        dma_must_fault(&edu, o.mem.base, true, o.mem.base)?;
    }
    // The device still works and still reaches our RAM.
    dma_to(&edu, scratch(0x1_0000), 4096)?;
    bytes_eq(scratch(0x1_0000), 4096, pattern, "DMA into our RAM after the aborted ones")
}

pub fn clear_ste_blocks_again() -> Result<(), Msg> {
    let (edu, sid) = my_edu()?;
    let before = hv::smmu_stats().map_err(|e| msg!("SMMU_STATS: {e}"))?;
    check_eq!(iommu::clear_ste(sid), Ok(0), "CLEAR_STE");
    let after = hv::smmu_stats().map_err(|e| msg!("SMMU_STATS: {e}"))?;
    check!(after.ste_writes > before.ste_writes, "CLEAR_STE wrote no STE word");
    check!(after.syncs > before.syncs, "CLEAR_STE issued no SYNC");
    let dst = scratch(0x5_0000);
    fill(dst, 4096, |_| 0x5a);
    dma_to(&edu, dst, 4096)?;
    bytes_eq(dst, 4096, |_| 0x5a, "DMA after CLEAR_STE")?;
    check!(after.events_routed > 0, "no SMMU event was routed");
    Ok(())
}
