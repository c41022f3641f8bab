//! Integration tests run inside every VM (host, guest1, guest2) under the hypervisor in QEMU.
//! Each test must be able to fail: it checks what the hypervisor and the hardware really did.
//!
//! This file is the entry point and the ordered list of tests; the tests themselves are in
//! [`tests`], one module a theme.
#![no_std]
#![no_main]

mod tests;

use core::sync::atomic::Ordering;
use guest_tests::harness::{self, Test};
use guest_tests::hv;
use host_abi::types::{BOOT_FLAG_GUESTS_OFF, BOOT_FLAG_HOST_IS_LINUX};
use tests::{abi, attack, dma, isolation, linux_host, nested, power};
use tests::{page_sum, BOOT_IPA, FIRST_PAGE_SUM, VM_ID};

#[no_mangle]
extern "C" fn guest_main(boot_ipa: u64) -> ! {
    BOOT_IPA.store(boot_ipa, Ordering::SeqCst);
    // SAFETY: x0 at entry.
    let bi = unsafe { hv::boot_info(boot_ipa) };
    VM_ID.store(bi.vm_id as u64, Ordering::SeqCst);
    FIRST_PAGE_SUM.store(page_sum(bi.mem_base), Ordering::SeqCst);
    if bi.flags & BOOT_FLAG_GUESTS_OFF != 0 {
        harness::run(TESTS, GUESTS_OFF_SKIPS)
    } else if bi.flags & BOOT_FLAG_HOST_IS_LINUX != 0 {
        harness::run(TESTS, BARE_HOST_ONLY)
    } else {
        harness::run(TESTS, LINUX_HOST_ONLY)
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    guest_tests::println!("panic: {info}");
    harness::unexpected_exception(99, 0, 0, 0)
}

/// Every test, in the order they run. With a bare-metal host the Linux-host ones are skipped
/// ([`LINUX_HOST_ONLY`]); with a Linux host the ones that need a cooperating bare-metal host
/// ([`BARE_HOST_ONLY`]: the SMMU power cycle needs its votes, the event flood its device).
///
/// The order is part of the tests: some start from the state earlier ones left (the identity STE
/// `identity_dma_lands_at_the_ipa` and `random_hypercalls_change_nothing_they_must_not` set; the
/// votes of `pm_votes_gate_power`, which `pm_cycle` starts from; no vote while the event flood
/// runs), the canary is written before the Linux host attacks, and `owner_memory_unchanged`
/// comes last: it waits for the VMs that attacked ours to stop.
static TESTS: &[Test] = &[
    ("canary_for_the_hosts_dma", linux_host::canary_for_the_hosts_dma),
    ("boot_info", abi::boot_info),
    ("abi_version", abi::abi_version),
    ("features", abi::features),
    ("vm_info", abi::vm_info),
    ("device_info", abi::device_info),
    ("other_devices_unreachable", isolation::other_devices_unreachable),
    ("error_codes", abi::error_codes),
    ("psci", abi::psci_calls),
    ("hyp_memory_isolated", isolation::hyp_memory_isolated),
    ("vm_memory_isolated", isolation::vm_memory_isolated),
    ("concurrent", isolation::concurrent),
    ("sgi_writes_are_undefined", isolation::sgi_writes_are_undefined),
    ("dma_before_attach_is_aborted", dma::dma_before_attach_is_aborted),
    ("identity_dma_lands_at_the_ipa", dma::identity_dma_lands_at_the_ipa),
    ("identity_dma_cannot_leave_the_vm", dma::identity_dma_cannot_leave_the_vm),
    ("identity_dma_reaches_exactly_our_ram", dma::identity_dma_reaches_exactly_our_ram),
    ("declared_lengths_are_checked_whole", abi::declared_lengths_are_checked_whole),
    ("events_are_isolated_under_a_flood", attack::events_are_isolated_under_a_flood),
    (
        "random_hypercalls_change_nothing_they_must_not",
        attack::random_hypercalls_change_nothing_they_must_not,
    ),
    ("bad_smmu_requests_are_refused", attack::bad_smmu_requests_are_refused),
    ("nested_dma_translates_and_tlbi_unmaps", nested::nested_dma_translates_and_tlbi_unmaps),
    ("nested_cds_are_checked_and_shadowed", nested::nested_cds_are_checked_and_shadowed),
    ("clear_ste_blocks_again", dma::clear_ste_blocks_again),
    ("pm_votes_gate_power", power::pm_votes_gate_power),
    ("pm_cycle", power::pm_cycle),
    ("linux_host_stop_leaves_us_running", linux_host::linux_host_stop_leaves_us_running),
    ("hosts_dma_left_our_canary", linux_host::hosts_dma_left_our_canary),
    ("owner_memory_unchanged", isolation::owner_memory_unchanged),
];

/// Tests that only make sense with a Linux host.
static LINUX_HOST_ONLY: &[&str] =
    &["canary_for_the_hosts_dma", "linux_host_stop_leaves_us_running", "hosts_dma_left_our_canary"];

/// With `BOOT_FLAG_GUESTS_OFF` (a Linux host's run that needs every guest off while it runs):
/// the tests that wait for the host (and the canary it would attack) or need a bare-metal host
/// are skipped, so the guest powers off as soon as its own tests are done.
static GUESTS_OFF_SKIPS: &[&str] = &[
    "canary_for_the_hosts_dma",
    "linux_host_stop_leaves_us_running",
    "hosts_dma_left_our_canary",
    "events_are_isolated_under_a_flood",
    "pm_cycle",
];

/// Tests that need a cooperating bare-metal host.
static BARE_HOST_ONLY: &[&str] = &["events_are_isolated_under_a_flood", "pm_cycle"];
