//! With a Linux host: our canary page for its DMA attacks (written first, checked once it has
//! stopped), our SMMU calls served while it runs, and its stop leaving us running.

use super::{bytes_eq, fill, me, wait_for};
use guest_tests::arch;
use guest_tests::msg::Msg;
use guest_tests::{check, check_eq, hv, msg};
use host_abi::ABI_VERSION;

/// With a Linux host: wait until it has stopped (its `poweroff`, or a reset after a panic; its
/// tests route an interrupt to guest1's CPU, so the guests stay up until it is done), then check
/// that it stopped alone: we still run and the hypervisor still serves us.
pub fn linux_host_stop_leaves_us_running() -> Result<(), Msg> {
    let vm = me();
    // While the host runs (its tests flood its emulated SMMU's command queue), our own SMMU
    // calls must still be served: the hypervisor does a bounded amount of the host's work under
    // the SMMU lock per trapped access. Each SMMU_STATS is timed; the longest is reported and
    // must stay far below what one unbounded host access took (16 s for a 2^19-entry queue).
    let freq = arch::counter_freq();
    let (mut calls, mut longest, mut failed) = (0u64, 0u64, 0u64);
    wait_for("the Linux host to stop", 170, || {
        let t0 = arch::counter();
        failed += hv::smmu_stats().is_err() as u64;
        longest = longest.max(arch::counter() - t0);
        calls += 1;
        // One call a millisecond: a probe, not a load on the host's SMMU path.
        let t1 = arch::counter();
        while arch::counter() - t1 < freq / 1000 {}
        hv::vm_info().is_ok_and(|i| i.stopped_mask & 1 != 0)
    })?;
    guest_tests::println!(
        "SMMU_STATS while the Linux host ran: {calls} calls, the longest took {} us",
        longest * 1_000_000 / freq
    );
    check_eq!(failed, 0, "SMMU_STATS calls that failed while the host ran");
    // Wall-clock time (no -icount here): the bound leaves room for QEMU's vCPU threads being
    // descheduled on a loaded two-core machine (a lock holder's thread preempted), and is still
    // eight times below the 16 s one unbounded access took.
    check!(
        longest < 2 * freq,
        "an SMMU call waited {} ms while the Linux host ran",
        longest * 1000 / freq
    );
    let i = hv::vm_info().map_err(|e| msg!("VM_INFO after the host stopped: {e}"))?;
    check_eq!(i.running_mask & 1, 0, "host still running");
    check!(i.running_mask & (1 << vm.id) != 0, "we no longer run: {:#x}", i.running_mask);
    check_eq!(i.stopped_mask & (1 << vm.id), 0, "our stopped bit");
    check_eq!(hv::version(), Ok(ABI_VERSION as u64), "VERSION after the host stopped");
    Ok(())
}

/// Our canary page: the Linux host's DMA attacks aim at it, and must not land.
fn canary() -> u64 {
    me().mem.base + platform::linux::GUEST_CANARY_OFFSET
}

/// With a Linux host: fills our canary page, before the host reaches its attacks (it boots for
/// seconds; we get here in milliseconds).
pub fn canary_for_the_hosts_dma() -> Result<(), Msg> {
    let id = me().id;
    fill(canary(), 4096, |i| platform::linux::canary_byte(id, i));
    bytes_eq(canary(), 4096, |i| platform::linux::canary_byte(id, i), "canary page just written")
}

/// After the Linux host stopped: its edu device aimed DMA at our canary page (through the
/// STEs its driver asked for and the ones it wrote itself); not a byte changed.
pub fn hosts_dma_left_our_canary() -> Result<(), Msg> {
    let id = me().id;
    bytes_eq(
        canary(),
        4096,
        |i| platform::linux::canary_byte(id, i),
        "our canary page after the Linux host's DMA attacks",
    )
}
