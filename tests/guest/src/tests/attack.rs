//! A VM that misbehaves: a flood of fault events from the host's device, thousands of random
//! hypercalls, STEs and commands the hypervisor must refuse. None of it reaches what it must not.

use super::{
    all_vms_mask, bytes_eq, dma_must_fault, dma_to, fill, load_edu_buffer, me, my_edu, others,
    pattern, pm_status, scratch, wait_until,
};
use guest_tests::arch;
use guest_tests::msg::Msg;
use guest_tests::{check, check_eq, hv, iommu, msg};
use host_abi::{psci, FunctionId, HypCall, HypError};
use platform::qemu_virt::BOARD;

/// The host floods the SMMU with fault events from its device and never reads them while the
/// guests fault a few times each and read theirs: every guest receives all of its own events
/// (the flooder's ring overflows, counted against it alone). The VMs pace each other with
/// their PM votes (no other test votes while this runs): a guest votes allow-off when ready
/// and need-on when done; the host floods while any guest's vote is up. (QEMU records one
/// event per 4-byte access of a faulting DMA: a 64-byte flood DMA makes 16, a 4-byte one 1.)
pub fn events_are_isolated_under_a_flood() -> Result<(), Msg> {
    const VICTIM_FAULTS: u64 = 24;
    let (edu, sid) = my_edu()?;
    check_eq!(iommu::set_ste(sid, &iommu::vste_bypass()), Ok(1), "SET_STE identity");
    let target = BOARD.hyp.base + 0x20_0000;
    let guests = all_vms_mask() & !1;
    let mut buf = [host_abi::smmu::EventRecord::default(); 16];
    if me().id == 0 {
        // Start from an empty ring, then wait for the guests to be ready.
        let _ = iommu::saw_event(|_| false);
        let before = iommu::read_events_counted(&mut buf).map_err(|e| msg!("EVENT_READ: {e}"))?;
        wait_until("the guests' ready votes", || {
            pm_status().is_ok_and(|s| s.votes_allow_off & guests == guests)
        })?;
        let mut sent = 0u64;
        let deadline = arch::counter() + 120 * arch::counter_freq();
        while pm_status()?.votes_allow_off & guests != 0 {
            check!(arch::counter() < deadline, "the guests never finished");
            dma_to(&edu, target, 64)?;
            sent += 1;
        }
        let after = iommu::read_events_counted(&mut buf).map_err(|e| msg!("EVENT_READ: {e}"))?;
        check_eq!(after.written as u64 + after.pending, 64, "records kept (one full ring)");
        check!(
            after.dropped > before.dropped,
            "{sent} flood DMAs and no record dropped: the ring never overflowed"
        );
        check!(
            buf[..after.written].iter().all(|e| e.sid() == sid),
            "a record of another stream in our ring"
        );
        let _ = iommu::saw_event(|_| false);
        return Ok(());
    }
    let _ = iommu::saw_event(|_| false);
    let before = iommu::read_events_counted(&mut buf).map_err(|e| msg!("EVENT_READ: {e}"))?;
    hv::pm_vote(true).map_err(|e| msg!("PM_VOTE: {e}"))?;
    // Fault only once the flooder's ring is overflowing (SMMU-wide drops go up).
    let dropped0 = hv::smmu_stats().map_err(|e| msg!("SMMU_STATS: {e}"))?.events_dropped;
    let r = wait_until("the host's flood", || {
        hv::smmu_stats().is_ok_and(|s| s.events_dropped > dropped0)
    });
    let mut got = 0u64;
    let mut counts = before;
    let mut mine = true;
    if r.is_ok() {
        // All our faults first, reading nothing meanwhile: our records wait in the SMMU's
        // queue beside the flood (hundreds of records) until something drains it.
        for _ in 0..VICTIM_FAULTS {
            dma_to(&edu, target, 4)?;
        }
        loop {
            counts = iommu::read_events_counted(&mut buf).map_err(|e| msg!("EVENT_READ: {e}"))?;
            got += counts.written as u64;
            mine &=
                buf[..counts.written].iter().all(|e| e.sid() == sid && e.input_addr() == target);
            if counts.pending == 0 {
                break;
            }
        }
    }
    hv::pm_vote(false).map_err(|e| msg!("PM_VOTE: {e}"))?;
    r?;
    check!(mine, "a record that is not of our faulting DMA");
    check_eq!(got, VICTIM_FAULTS, "our own events under the flood");
    check_eq!(counts.pending, 0, "records left");
    check_eq!(counts.dropped, before.dropped, "records of ours dropped");
    check_eq!(counts.lost_notices, before.lost_notices, "loss notices");
    Ok(())
}

/// A small deterministic generator (xorshift64*), seeded per VM.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// Thousands of random hypercalls (every function but the console, votes and power-loss
/// injection; addresses in our scratch area, in other VMs, in the hypervisor, wrapping; random
/// streams, STEs and commands), then isolation re-checked with real DMA: our device still
/// lands only where our domain says, and cannot reach the hypervisor or another VM.
pub fn random_hypercalls_change_nothing_they_must_not() -> Result<(), Msg> {
    use host_abi::smmu::{Command, Ste};
    let (edu, sid) = my_edu()?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (me().id as u64 + 1) * 0x1234_5678_9abc);
    let scratch_area = scratch(0x8_0000);
    let other = others().next().unwrap();
    let addrs = [
        scratch_area,
        scratch_area + 0x800,
        me().mem.end() - 8,
        other.mem.base + 0x1000,
        BOARD.hyp.base + 0x20_0000,
        u64::MAX - 15,
        0,
    ];
    let sids = [sid, other.devices[0].rid(), 0, 0xffff, 0x1_0000];
    let functions: [u32; 11] = [
        FunctionId::VmInfo as u32,
        FunctionId::DeviceInfo as u32,
        FunctionId::EventRead as u32,
        FunctionId::SmmuStats as u32,
        FunctionId::SetSte as u32,
        FunctionId::ClearSte as u32,
        FunctionId::Invalidate as u32,
        FunctionId::PmStatus as u32,
        FunctionId::Features as u32,
        0xC600_00FF,
        psci::VERSION,
    ];
    for i in 0..3000u64 {
        // Random STEs and commands in the scratch area, from single bits to all-random words.
        for w in 0..16u64 {
            let v = match rng.next() % 4 {
                0 => 1u64 << (rng.next() % 64),
                1 => rng.next() & 0x0000_ffff_ffff_ffff,
                2 => 0,
                _ => rng.next(),
            };
            // SAFETY: our scratch area.
            unsafe { ((scratch_area + w * 8) as *mut u64).write_volatile(v) };
        }
        if i % 7 == 0 {
            // A valid-looking command here and there.
            let c = rng.pick(&[
                Command::tlbi_nh_all(0),
                Command::cfgi_ste(sid),
                Command::cfgi_cd_all(sid),
                Command::sync(),
                Command::atc_inv_all(sid),
            ]);
            // SAFETY: our scratch area.
            unsafe { (scratch_area as *mut Command).write_volatile(c) };
        }
        let mut r = [0u64; 8];
        r[0] = rng.pick(&functions) as u64 | if rng.next() % 8 == 0 { rng.next() << 32 } else { 0 };
        for a in r[1..].iter_mut() {
            *a = match rng.next() % 4 {
                0 => rng.pick(&addrs),
                1 => rng.pick(&sids) as u64,
                2 => rng.next() % 520,
                _ => rng.next(),
            };
        }
        let _ = hv::raw(r);
    }
    // Whatever those calls did to our stream, attach it to identity again and check that DMA
    // lands exactly at the IPA, and that the hypervisor and the other VMs stay out of reach.
    check_eq!(
        iommu::set_ste(sid, &iommu::vste_bypass()),
        Ok(1),
        "SET_STE identity after the random calls"
    );
    load_edu_buffer(&edu, scratch(0))?;
    let dst = scratch(0x1_0000);
    fill(dst, 4096, |_| 0);
    dma_to(&edu, dst, 4096)?;
    bytes_eq(dst, 4096, pattern, "identity DMA after random calls")?;
    dma_must_fault(&edu, BOARD.hyp.base + 0x20_0000, true, BOARD.hyp.base + 0x20_0000)?;
    for o in others() {
        dma_must_fault(&edu, o.boot_info_ipa(), true, o.boot_info_ipa())?;
    }
    let _ = Ste::default();
    Ok(())
}

pub fn bad_smmu_requests_are_refused() -> Result<(), Msg> {
    use host_abi::smmu::{Command, Ste, SteConfig};
    let (edu, sid) = my_edu()?;
    let other_sid = others().next().unwrap().devices[0].rid();
    let cd = scratch(0x3_0000);
    let e = |r: Result<u64, HypError>| r.err();
    check_eq!(
        e(iommu::set_ste(other_sid, &iommu::vste_bypass())),
        Some(HypError::NotOwned),
        "another VM's stream"
    );
    check_eq!(
        e(iommu::clear_ste(other_sid)),
        Some(HypError::NotOwned),
        "CLEAR_STE of another VM's stream"
    );
    let bad = [
        (iommu::vste_bypass().with_s2vmid(1), HypError::ForbiddenField, "S2VMID"),
        (iommu::vste_s1(cd).with_s2ttb(me().mem.base), HypError::ForbiddenField, "S2TTB"),
        (
            Ste::default().with_v(1).with_config(SteConfig::S2),
            HypError::ForbiddenField,
            "Config = stage 2",
        ),
        (Ste([0x9, 1 << 28, 0, 0, 0, 0, 0, 0]), HypError::ForbiddenField, "EATS"),
        (Ste([0x9, 0, 0, 0, 0, 1, 0, 0]), HypError::ReservedField, "reserved word 5"),
        (
            Ste::default().with_v(1).with_config_bits(0b001),
            HypError::ReservedField,
            "reserved Config",
        ),
        (
            iommu::vste_s1(BOARD.hyp.base + 0x20_0000),
            HypError::BadConfig,
            "CD table in hypervisor memory",
        ),
        (
            iommu::vste_s1(others().next().unwrap().mem.base),
            HypError::BadConfig,
            "CD table in another VM",
        ),
        (iommu::vste_s1(cd).with_s1cdmax(6), HypError::BadConfig, "S1CDMax too large"),
        (iommu::vste_s1(cd).with_s1fmt(1), HypError::BadConfig, "two-level CD table"),
    ];
    for (v, err, what) in bad {
        check_eq!(e(iommu::set_ste(sid, &v)), Some(err), what);
    }
    let (st, _) = hv::call(HypCall::SetSte { sid, ipa: BOARD.hyp.base + 0x20_0000 });
    check_eq!(st, Err(HypError::InvalidAddress), "virtual STE outside our RAM");
    let inval = |c: &[Command]| iommu::invalidate(c).err();
    check_eq!(
        inval(&[Command::tlbi_nh_all(0), Command::cfgi_all()]),
        Some((HypError::BadCommand, 1)),
        "CFGI_ALL"
    );
    check_eq!(
        inval(&[Command::tlbi_nh_va(7, 1, 0x1000)]),
        Some((HypError::ForbiddenField, 0)),
        "foreign VMID"
    );
    check_eq!(
        inval(&[Command::sync(), Command::cfgi_ste(other_sid)]),
        Some((HypError::NotOwned, 1)),
        "CFGI_STE of another VM's stream"
    );
    check_eq!(
        inval(&[Command([0x10 | 1 << 9, 0])]),
        Some((HypError::ReservedField, 0)),
        "reserved bit"
    );
    let secure = 1u64 << 10;
    for c in [Command::cfgi_ste(sid), Command::cfgi_cd(sid, 0), Command::cfgi_cd_all(sid)] {
        check_eq!(
            inval(&[Command::sync(), Command([c.0[0] | secure, c.0[1]])]),
            Some((HypError::ForbiddenField, 1)),
            "a CFGI command's secure bit"
        );
    }
    let many = [Command::sync(); 1];
    let (st, _) = hv::call(HypCall::Invalidate {
        ipa: many.as_ptr() as u64,
        count: host_abi::INVALIDATE_MAX + 1,
    });
    check_eq!(st, Err(HypError::InvalidParameter), "oversized batch");
    let (st, _) = hv::call(HypCall::Invalidate { ipa: me().mem.end() - 16, count: 2 });
    check_eq!(st, Err(HypError::InvalidAddress), "batch outside our RAM");
    // Nothing changed: identity DMA behaves exactly as before.
    load_edu_buffer(&edu, scratch(0))?;
    let dst = scratch(0x1_0000);
    fill(dst, 4096, |_| 0);
    dma_to(&edu, dst, 4096)?;
    bytes_eq(dst, 4096, pattern, "identity DMA after refused requests")
}
