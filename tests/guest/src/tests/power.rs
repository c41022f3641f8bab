//! SMMU power management: every VM's vote gates power-off, the host's power cycle (STEs and
//! invalidations while off, injected power losses) and what the guests see after it.

use super::nested::IOVA;
use super::{
    all_vms_mask, bytes_eq, dma_to, fill, load_edu_buffer, load_edu_buffer_via, me, my_edu, others,
    pattern, pm_status, scratch, wait_until,
};
use guest_tests::edu::Edu;
use guest_tests::msg::Msg;
use guest_tests::{check, check_eq, hv, iommu, msg};
use host_abi::{HypCall, HypError};
use platform::qemu_virt::{BOARD, MANIFEST};

/// Every VM votes allow-off here; until the last vote, power must stay on.
pub fn pm_votes_gate_power() -> Result<(), Msg> {
    let vm = me();
    if vm.id != 0 {
        let (power, refusal, dma) = hv::pm_vote(true).map_err(|e| msg!("PM_VOTE: {e}"))?;
        let s = pm_status()?;
        check!(
            s.votes_allow_off & (1 << vm.id) != 0,
            "our vote is not recorded: {:#x}",
            s.votes_allow_off
        );
        if s.votes_allow_off & 1 == 0 {
            // The host has not voted: N-1 votes at most, the SMMU must stay on.
            check_eq!(power, 0, "power after our vote (not every VM allows)");
            check_eq!(refusal, 1, "refusal (waiting for votes)");
        }
        check_eq!(
            dma as usize,
            MANIFEST.vms.iter().map(|v| v.devices.len()).sum::<usize>(),
            "DMA streams"
        );
        return Ok(());
    }
    // The host votes last: wait for every guest's vote first.
    let guests = all_vms_mask() & !1;
    wait_until("the guests' votes", || {
        pm_status().is_ok_and(|s| s.votes_allow_off & guests == guests)
    })?;
    let s = pm_status()?;
    check_eq!(s.power, 0, "power with N-1 allow-off votes");
    check_eq!(s.refusal, 1, "refusal with N-1 votes");
    let (power, refusal, _) = hv::pm_vote(true).map_err(|e| msg!("PM_VOTE: {e}"))?;
    if s.gbpa_reset == 1 {
        // GBPA resets to bypass here: power-off must be refused while devices are assigned.
        check_eq!(
            (power, refusal),
            (0, 2),
            "last vote on a bypass-reset platform (power, refusal)"
        );
        check_eq!(pm_status()?.suspends, 0, "suspends on a bypass-reset platform");
    } else {
        check_eq!((power, refusal), (1, 0), "last vote (power, refusal)");
        let s = pm_status()?;
        check_eq!((s.power, s.suspends), (1, 1), "status after the last vote (power, suspends)");
    }
    Ok(())
}

/// The host exercises the powered-off SMMU; the guests wait for it and check their devices
/// translate again afterwards.
pub fn pm_cycle() -> Result<(), Msg> {
    use host_abi::smmu::Command;
    let (edu, sid) = my_edu()?;
    if me().id != 0 {
        // Wait for the host's allow-off vote to come and go (its whole cycle is in between).
        wait_until("the host's allow-off vote", || {
            pm_status().is_ok_and(|s| s.votes_allow_off & 1 != 0)
        })?;
        // Done when its vote is gone for good: after the ATC wake-up (its last step), or at
        // once on a bypass-reset platform where power never goes off.
        wait_until("the host's power cycle", || {
            pm_status()
                .is_ok_and(|s| s.votes_allow_off & 1 == 0 && (s.gbpa_reset == 1 || s.wakeups >= 1))
        })?;
        hv::pm_vote(false).map_err(|e| msg!("PM_VOTE: {e}"))?;
        check_eq!(pm_status()?.power, 0, "power after our need-on vote");
        check_eq!(
            iommu::set_ste(sid, &iommu::vste_bypass()),
            Ok(1),
            "SET_STE identity after the cycle"
        );
        load_edu_buffer(&edu, scratch(0))?;
        let dst = scratch(0x6_0000);
        fill(dst, 4096, |_| 0);
        dma_to(&edu, dst, 4096)?;
        return bytes_eq(dst, 4096, pattern, "identity DMA after the power cycle");
    }
    let s0 = pm_status()?;
    if s0.gbpa_reset == 1 {
        // Power stayed on: DMA still translates exactly as before.
        check_eq!(s0.power, 0, "power on a bypass-reset platform");
        check_eq!(iommu::set_ste(sid, &iommu::vste_bypass()), Ok(1), "SET_STE identity");
        load_edu_buffer(&edu, scratch(0))?;
        let dst = scratch(0x6_0000);
        fill(dst, 4096, |_| 0);
        dma_to(&edu, dst, 4096)?;
        bytes_eq(dst, 4096, pattern, "identity DMA with power kept on")?;
        injected_losses_are_refused(&edu, dst)?;
        hv::pm_vote(false).map_err(|e| msg!("PM_VOTE: {e}"))?;
        return Ok(());
    }
    check_eq!(s0.power, 1, "power (off after every vote)");
    let st0 = hv::smmu_stats().map_err(|e| msg!("SMMU_STATS: {e}"))?;
    // While off: STE changes are made in memory only (nested, then identity; the nested one is
    // checked after resume below, with its own address space).
    let pool = iommu::TablePool::take().ok_or_else(|| msg!("no table pool chunk left"))?;
    let mut space = iommu::DeviceSpace::new(pool);
    let nested_target = scratch(0x7_0000);
    space.map(IOVA, nested_target, 4096).map_err(|_| msg!("stage-1 map failed"))?;
    check_eq!(
        iommu::set_ste(sid, &iommu::vste_s1(space.cd_table)),
        Ok(2),
        "SET_STE nested while off"
    );
    check_eq!(pm_status()?.power, 1, "power after SET_STE while off");
    // DMA while off is aborted and memory is unchanged.
    let dst = scratch(0x6_0000);
    fill(dst, 4096, |_| 0x77);
    dma_to(&edu, dst, 4096)?;
    bytes_eq(dst, 4096, |_| 0x77, "memory after DMA while the SMMU is off")?;
    // A refused ATC invalidation (another VM's stream) changes nothing: no wake-up.
    let other_sid = others().next().unwrap().devices[0].rid();
    check_eq!(
        iommu::invalidate(&[Command::atc_inv_all(other_sid)]),
        Err((HypError::NotOwned, 0)),
        "ATC_INV of another VM's stream while off"
    );
    let s_refused = pm_status()?;
    check_eq!(
        (s_refused.power, s_refused.wakeups, s_refused.resumes),
        (1, s0.wakeups, s0.resumes),
        "a refused ATC_INV woke the SMMU (power, wakeups, resumes)"
    );
    // Invalidations while off reach no hardware.
    check_eq!(
        iommu::invalidate(&[Command::tlbi_nh_all(0), Command::cfgi_ste(sid)]),
        Ok(0),
        "INVALIDATE while off (sent)"
    );
    let st1 = hv::smmu_stats().map_err(|e| msg!("SMMU_STATS: {e}"))?;
    check_eq!(st1.commands, st0.commands, "commands written while off");
    check!(st1.ste_writes > st0.ste_writes, "the STE was not written while off");
    let s1 = pm_status()?;
    check!(s1.elided >= s0.elided + 2, "elided counter {} -> {}", s0.elided, s1.elided);
    // The first need-on brings it back, with the STE change made while off: nested translates.
    let (power, _, _) = hv::pm_vote(false).map_err(|e| msg!("PM_VOTE: {e}"))?;
    check_eq!(power, 0, "power after need-on");
    check_eq!(pm_status()?.resumes, s0.resumes + 1, "resumes");
    load_edu_buffer_via(&edu, IOVA, nested_target)?;
    fill(nested_target + 0x800, 0x100, |_| 0);
    dma_to(&edu, IOVA + 0x800, 0x100)?;
    bytes_eq(nested_target + 0x800, 0x100, pattern, "nested DMA after resume (STE set while off)")?;
    // Then identity (set while on): translates too.
    check_eq!(iommu::set_ste(sid, &iommu::vste_bypass()), Ok(1), "SET_STE identity after resume");
    load_edu_buffer(&edu, scratch(0))?;
    fill(dst, 4096, |_| 0);
    dma_to(&edu, dst, 4096)?;
    bytes_eq(dst, 4096, pattern, "identity DMA after resume")?;
    // A power loss in the middle of the suspend sequence (before its third register write),
    // then in the middle of resume (before its eighth): DMA is never untranslated, and
    // translation comes back exactly.
    let inject = |after: u64| {
        hv::call(HypCall::PmInjectLoss { after_writes: after })
            .0
            .map_err(|e| msg!("PM_INJECT_LOSS({after}): {e}"))
    };
    inject(3)?;
    check_eq!(hv::pm_vote(true).map(|r| r.0), Ok(1), "power after a suspend hit by a power loss");
    fill(dst, 4096, |_| 0x44);
    dma_to(&edu, dst, 4096)?;
    bytes_eq(dst, 4096, |_| 0x44, "memory after DMA (loss mid-suspend, then off)")?;
    check_eq!(hv::pm_vote(false).map(|r| r.0), Ok(0), "power after need-on");
    fill(dst, 4096, |_| 0);
    dma_to(&edu, dst, 4096)?;
    bytes_eq(dst, 4096, pattern, "identity DMA after a loss mid-suspend")?;
    check_eq!(hv::pm_vote(true).map(|r| r.0), Ok(1), "power after allow-off");
    inject(8)?;
    check_eq!(hv::pm_vote(false).map(|r| r.0), Ok(0), "power after a resume hit by a power loss");
    fill(dst, 4096, |_| 0);
    dma_to(&edu, dst, 4096)?;
    bytes_eq(dst, 4096, pattern, "identity DMA after a loss mid-resume")?;
    // Off again (every VM allows), then an ATC invalidation must wake it.
    check_eq!(hv::pm_vote(true).map(|r| r.0), Ok(1), "power after allow-off again");
    check_eq!(
        iommu::invalidate(&[Command::atc_inv_all(sid)]),
        Ok(0),
        "ATC_INV (no ATS: nothing sent)"
    );
    let s2 = pm_status()?;
    check_eq!(
        (s2.power, s2.wakeups),
        (0, s0.wakeups + 1),
        "ATC_INV woke the SMMU (power, wakeups)"
    );
    // An unexpected power loss: DMA aborts (GBPA reset value), the next SMMU access recovers.
    // (xtask boots this run with `pm_inject=1`.)
    inject(0)?;
    fill(dst, 4096, |_| 0x33);
    dma_to(&edu, dst, 4096)?;
    bytes_eq(dst, 4096, |_| 0x33, "memory after DMA with the SMMU at reset")?;
    let losses = pm_status()?.losses;
    let _ = hv::smmu_stats(); // reaches the hardware: detection and recovery
    check_eq!(pm_status()?.losses, losses + 1, "losses recovered");
    fill(dst, 4096, |_| 0);
    dma_to(&edu, dst, 4096)?;
    bytes_eq(dst, 4096, pattern, "identity DMA after recovering from the loss")?;
    check_eq!(hv::pm_vote(false).map(|r| r.0), Ok(0), "power after the final need-on");
    Ok(())
}

/// A bypass-reset platform (the host, its stream attached as identity): PM_INJECT_LOSS, now and
/// armed for the middle of a suspend and of a resume, is refused with the power-off reason,
/// because registers at reset values would let every device DMA untranslated until the
/// hypervisor's next SMMU access. Right after each attempt our edu reads the hypervisor's
/// memory, which must fault at stage 2 (in an untranslated window it would be read: QEMU's
/// trace, which xtask checks, would show `smmuv3_translate_disable`), then writes into our
/// memory, where it must land translated.
fn injected_losses_are_refused(edu: &Edu, dst: u64) -> Result<(), Msg> {
    let losses = pm_status()?.losses;
    let target = BOARD.hyp.base + 0x20_0000;
    for after in [0u64, 3, 8] {
        let _ = iommu::saw_event(|_| false); // drop older events
        let (st, r) = hv::call(HypCall::PmInjectLoss { after_writes: after });
        // At once, whatever the answer (the trace judges this DMA even if the checks below
        // fail): nothing touches the SMMU in between.
        let read = edu.from_ram(target, 0, 64);
        check!(
            (st, r[1]) == (Err(HypError::Refused), 2),
            "PM_INJECT_LOSS({after}) on a bypass-reset platform: got {:?} reason {}, expected REFUSED, reason 2 (bypass-reset-with-dma)",
            st,
            r[1]
        );
        read.map_err(|_| msg!("edu DMA (read) did not complete"))?;
        let seen = iommu::saw_event(|e| {
            e.event_type() == 0x10 && e.input_addr() == target && e.stage2() && e.is_read()
        })
        .map_err(|e| msg!("EVENT_READ: {e}"))?;
        check!(seen, "no stage-2 fault for a read of hypervisor memory after injection {after}");
        load_edu_buffer(edu, scratch(0))?;
        fill(dst, 4096, |_| 0);
        dma_to(edu, dst, 4096)?;
        bytes_eq(dst, 4096, pattern, "identity DMA right after a refused injection")
            .map_err(|e| msg!("after PM_INJECT_LOSS({after}): {}", e.as_str()))?;
    }
    // Nothing was armed: SMMU register writes from here on lose nothing.
    for _ in 0..10 {
        check_eq!(
            iommu::invalidate(&[host_abi::smmu::Command::tlbi_nh_all(0)]),
            Ok(1),
            "INVALIDATE after the refused injections"
        );
    }
    check_eq!(pm_status()?.losses, losses, "power losses after refused injections");
    Ok(())
}
