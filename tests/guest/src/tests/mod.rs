//! The integration tests, one module a theme, and what they share: this VM and the others (from
//! the boot-info block), CPU fault checks, waiting, and our edu device's DMA into scratch memory.

pub mod abi;
pub mod attack;
pub mod dma;
pub mod isolation;
pub mod linux_host;
pub mod nested;
pub mod power;

use core::sync::atomic::{AtomicU64, Ordering};
use guest_tests::arch::{self, try_read64, try_write64, Fault};
use guest_tests::edu::Edu;
use guest_tests::msg::Msg;
use guest_tests::{check, check_eq, hv, iommu, msg};
use platform::qemu_virt::MANIFEST;
use platform::VmSpec;

/// IPA of the BootInfo the hypervisor passed in x0.
pub static BOOT_IPA: AtomicU64 = AtomicU64::new(0);
/// This VM's id (from BootInfo).
pub static VM_ID: AtomicU64 = AtomicU64::new(u64::MAX);

/// A checksum of our first page (code: never written once we run), taken at entry: other VMs
/// aim DMA at it, and `owner_memory_unchanged` compares.
pub static FIRST_PAGE_SUM: AtomicU64 = AtomicU64::new(0);

/// A checksum of the 4 KiB page at `addr` (our own RAM).
pub fn page_sum(addr: u64) -> u64 {
    (0..512u64).fold(0xcbf2_9ce4_8422_2325, |h, i| {
        // SAFETY: callers pass a page of our own RAM.
        let w = unsafe { ((addr + 8 * i) as *const u64).read_volatile() };
        (h ^ w).wrapping_mul(0x100_0000_01b3).rotate_left(5)
    })
}

/// What an attacker writes over another VM's memory.
const ATTACK: u64 = 0xbad0_bad0_bad0_bad0;

fn me() -> &'static VmSpec {
    &MANIFEST.vms[VM_ID.load(Ordering::SeqCst) as usize]
}

fn others() -> impl Iterator<Item = &'static VmSpec> {
    let id = me().id;
    MANIFEST.vms.iter().filter(move |v| v.id != id)
}

/// A fault must be a synchronous external abort delivered by the hypervisor at `addr`.
fn expect_sea(r: Result<(), Fault>, addr: u64, what: &str) -> Result<(), Msg> {
    match r {
        Ok(()) => Err(msg!("{what} at {addr:#x} did not fault")),
        Err(f) => {
            check_eq!(f.ec(), 0x25, "ESR.EC (data abort, same EL)");
            check_eq!(f.fsc(), 0x10, "DFSC (synchronous external abort)");
            check_eq!(f.far, addr, "FAR");
            Ok(())
        }
    }
}

fn read_faults(addr: u64) -> Result<(), Msg> {
    expect_sea(try_read64(addr).map(|_| ()), addr, "read")
}

fn write_faults(addr: u64) -> Result<(), Msg> {
    expect_sea(try_write64(addr, ATTACK), addr, "write")
}

fn wait_until(what: &str, cond: impl FnMut() -> bool) -> Result<(), Msg> {
    wait_for(what, 60, cond)
}

fn wait_for(what: &str, seconds: u64, mut cond: impl FnMut() -> bool) -> Result<(), Msg> {
    let deadline = arch::counter() + seconds * arch::counter_freq();
    while !cond() {
        if arch::counter() > deadline {
            return Err(msg!("timed out waiting for {what}"));
        }
    }
    Ok(())
}

fn my_edu() -> Result<(Edu, u32), Msg> {
    let (d, _) = hv::device_info(0).map_err(|e| msg!("DEVICE_INFO: {e}"))?;
    // SAFETY: our edu device's BAR0, mapped by the hypervisor.
    Ok((unsafe { Edu::new(d.bars[0].ipa) }, d.stream_id))
}

/// An address in our RAM well above the image, its stack and its table pool.
fn scratch(off: u64) -> u64 {
    me().mem.base + 0x20_0000 + off
}

fn fill(addr: u64, len: u64, f: impl Fn(u64) -> u8) {
    for i in 0..len {
        // SAFETY: callers pass scratch memory of this VM.
        unsafe { ((addr + i) as *mut u8).write_volatile(f(i)) };
    }
}

fn bytes_eq(addr: u64, len: u64, f: impl Fn(u64) -> u8, what: &str) -> Result<(), Msg> {
    for i in 0..len {
        // SAFETY: as for `fill`.
        let b = unsafe { ((addr + i) as *const u8).read_volatile() };
        if b != f(i) {
            return Err(msg!(
                "{what}: byte {i:#x} at {:#x} is {b:#x}, expected {:#x}",
                addr + i,
                f(i)
            ));
        }
    }
    Ok(())
}

fn pattern(i: u64) -> u8 {
    (i as u8).wrapping_mul(7).wrapping_add(me().id as u8 + 1)
}

/// Loads edu's buffer with `pattern` from our memory (needs a domain that maps `src`).
fn load_edu_buffer(edu: &Edu, src: u64) -> Result<(), Msg> {
    fill(src, 4096, pattern);
    edu.from_ram(src, 0, 4096).map_err(|_| msg!("edu DMA (read) did not complete"))
}

/// Loads edu's buffer with `pattern` through a nested domain: `iova` maps our page `page`.
fn load_edu_buffer_via(edu: &Edu, iova: u64, page: u64) -> Result<(), Msg> {
    fill(page, 4096, pattern);
    edu.from_ram(iova, 0, 4096).map_err(|_| msg!("edu DMA (read) did not complete"))
}

fn dma_to(edu: &Edu, dst: u64, len: u64) -> Result<(), Msg> {
    edu.to_ram(0, dst, len).map_err(|_| msg!("edu DMA (write) did not complete"))
}

/// DMA from our device to `target` must fault at stage 2 (the event reaches us).
fn dma_must_fault(edu: &Edu, target: u64, stage2: bool, iova: u64) -> Result<(), Msg> {
    let _ = iommu::saw_event(|_| false); // drop older events
    dma_to(edu, target, 64)?;
    let seen = iommu::saw_event(|e| {
        e.event_type() == 0x10 && e.input_addr() == iova && e.stage2() == stage2 && !e.is_read()
    })
    .map_err(|e| msg!("EVENT_READ: {e}"))?;
    check!(
        seen,
        "no F_TRANSLATION (stage {}) event for DMA to {iova:#x}",
        if stage2 { 2 } else { 1 }
    );
    Ok(())
}

fn pm_status() -> Result<host_abi::PmStatus, Msg> {
    hv::pm_status().map_err(|e| msg!("PM_STATUS: {e}"))
}

fn all_vms_mask() -> u64 {
    (1u64 << MANIFEST.vms.len()) - 1
}
