//! Integration tests run inside every VM (host, guest1, guest2) under the hypervisor in QEMU.
//! Each test must be able to fail: it checks what the hypervisor and the hardware really did.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use guest_tests::arch::{self, try_read64, try_write64, Fault};
use guest_tests::edu::{Edu, EDU_ID};
use guest_tests::harness::{self, Test};
use guest_tests::msg::Msg;
use guest_tests::{check, check_eq, hv, iommu, msg};
use host_abi::types::{decode_name, BOOT_FLAG_HOST_IS_LINUX, BOOT_INFO_MAGIC};
use host_abi::{psci, FunctionId, HypCall, HypError, ABI_VERSION, CALL_UID, CONSOLE_WRITE_MAX};
use platform::qemu_virt::{BOARD, MANIFEST};
use platform::VmSpec;

/// IPA of the BootInfo the hypervisor passed in x0.
static BOOT_IPA: AtomicU64 = AtomicU64::new(0);
/// This VM's id (from BootInfo).
static VM_ID: AtomicU64 = AtomicU64::new(u64::MAX);

/// A checksum of our first page (code: never written once we run), taken at entry: other VMs
/// aim DMA at it, and `owner_memory_unchanged` compares.
static FIRST_PAGE_SUM: AtomicU64 = AtomicU64::new(0);

/// A checksum of the 4 KiB page at `addr` (our own RAM).
fn page_sum(addr: u64) -> u64 {
    (0..512u64).fold(0xcbf2_9ce4_8422_2325, |h, i| {
        // SAFETY: callers pass a page of our own RAM.
        let w = unsafe { ((addr + 8 * i) as *const u64).read_volatile() };
        (h ^ w).wrapping_mul(0x100_0000_01b3).rotate_left(5)
    })
}

/// What an attacker writes over another VM's memory.
const ATTACK: u64 = 0xbad0_bad0_bad0_bad0;

#[no_mangle]
extern "C" fn guest_main(boot_ipa: u64) -> ! {
    BOOT_IPA.store(boot_ipa, Ordering::SeqCst);
    // SAFETY: x0 at entry.
    let bi = unsafe { hv::boot_info(boot_ipa) };
    VM_ID.store(bi.vm_id as u64, Ordering::SeqCst);
    FIRST_PAGE_SUM.store(page_sum(bi.mem_base), Ordering::SeqCst);
    if bi.flags & BOOT_FLAG_HOST_IS_LINUX != 0 {
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

fn boot_info() -> Result<(), Msg> {
    let ipa = BOOT_IPA.load(Ordering::SeqCst);
    let vm = me();
    check_eq!(ipa, vm.boot_info_ipa(), "x0 at entry (last page of RAM)");
    // SAFETY: x0 at entry.
    let bi = unsafe { hv::boot_info(ipa) };
    check_eq!(bi.magic, BOOT_INFO_MAGIC, "magic");
    check_eq!(bi.abi_version, ABI_VERSION, "ABI version");
    check_eq!(bi.mem_base, vm.mem.base, "memory base");
    check_eq!(bi.mem_size, vm.mem.size, "memory size");
    check_eq!(bi.cpu, vm.cpu, "cpu");
    check_eq!(bi.vm_count as usize, MANIFEST.vms.len(), "VM count");
    check_eq!(decode_name(&bi.name), vm.name, "name");
    check_eq!(bi.flags & !BOOT_FLAG_HOST_IS_LINUX, 0, "undefined boot-info flags");
    Ok(())
}

fn abi_version() -> Result<(), Msg> {
    check_eq!(hv::version(), Ok(ABI_VERSION as u64), "VERSION");
    let (st, r) = hv::call(HypCall::CallUid);
    check!(st.is_ok(), "CALL_UID failed: {st:?}");
    check_eq!([r[0] as u32, r[1] as u32, r[2] as u32, r[3] as u32], CALL_UID, "CALL_UID");
    let (_, r) = hv::call(HypCall::Revision);
    check_eq!(
        (r[0], r[1]),
        (host_abi::ABI_VERSION_MAJOR as u64, host_abi::ABI_VERSION_MINOR as u64),
        "REVISION"
    );
    Ok(())
}

fn features() -> Result<(), Msg> {
    for f in FunctionId::ALL {
        if f == FunctionId::PmInjectLoss {
            continue;
        }
        check_eq!(hv::call(HypCall::Features { function: f as u32 }).0, Ok(0), f.name());
    }
    // PM_INJECT_LOSS: a test facility of the host alone (and only where the run enables it).
    // FEATURES must answer exactly as the call does: compare with a call whose loss would
    // only strike after 2^64 - 1 more SMMU register writes. Where the call is implemented for
    // us but refused in the current state (REFUSED: a bypass-reset platform with DMA-capable
    // streams), FEATURES says implemented.
    let feat = hv::call(HypCall::Features { function: FunctionId::PmInjectLoss as u32 }).0;
    let call = hv::call(HypCall::PmInjectLoss { after_writes: u64::MAX }).0;
    if call == Err(HypError::Refused) {
        check_eq!(pm_status()?.gbpa_reset, 1, "PM_INJECT_LOSS refused on an abort-reset platform");
        check_eq!(feat, Ok(0), "FEATURES(PM_INJECT_LOSS) where the call is refused now");
    } else {
        check_eq!(feat, call, "FEATURES(PM_INJECT_LOSS) against the call itself");
    }
    if me().id != 0 {
        check_eq!(call, Err(HypError::NotSupported), "PM_INJECT_LOSS from a guest");
        check_eq!(
            hv::call(HypCall::PmInjectLoss { after_writes: 0 }).0,
            Err(HypError::NotSupported),
            "PM_INJECT_LOSS(now) from a guest"
        );
        check_eq!(pm_status()?.losses, 0, "losses after a guest's attempt");
    }
    for unknown in [0xC600_00FF, psci::VERSION, 0x8600_0000, 0] {
        check_eq!(
            hv::call(HypCall::Features { function: unknown }).0,
            Err(HypError::NotSupported),
            "FEATURES of an unimplemented ID"
        );
    }
    Ok(())
}

fn vm_info() -> Result<(), Msg> {
    let vm = me();
    let info = hv::vm_info().map_err(|e| msg!("VM_INFO: {e}"))?;
    check_eq!(info.vm_id, vm.id, "vm_id");
    check_eq!(info.vm_count as usize, MANIFEST.vms.len(), "vm_count");
    check_eq!(info.mem_base, vm.mem.base, "mem_base");
    check_eq!(info.mem_size, vm.mem.size, "mem_size");
    check_eq!(info.cpu, vm.cpu, "cpu");
    check_eq!(decode_name(&info.name), vm.name, "name");
    check_eq!(info.stopped_mask & (1 << vm.id), 0, "stopped_mask (we are running)");
    check!(
        info.running_mask & (1 << vm.id) != 0,
        "running_mask {:#x} lacks this VM",
        info.running_mask
    );
    Ok(())
}

fn device_info() -> Result<(), Msg> {
    let vm = me();
    let (d, count) = hv::device_info(0).map_err(|e| msg!("DEVICE_INFO(0): {e}"))?;
    check_eq!(count as usize, vm.devices.len(), "device count");
    check_eq!(d.stream_id, vm.devices[0].rid(), "stream ID");
    check_eq!((d.vendor, d.device), (0x1234, 0x11e8), "edu vendor/device");
    check_eq!(d.bars[0].size, 1 << 20, "BAR0 size");
    check!(
        BOARD.pcie_mmio32.contains_range(d.bars[0].ipa, d.bars[0].size),
        "BAR0 outside the window"
    );
    // SAFETY: the hypervisor mapped BAR0 of our edu device at this IPA.
    let edu = unsafe { Edu::new(d.bars[0].ipa) };
    check_eq!(edu.id(), EDU_ID, "edu ID register through our stage-2");
    check_eq!(edu.liveness(0x1234_5678), !0x1234_5678u32, "edu liveness register");
    check_eq!(
        hv::device_info(count).map(|_| ()),
        Err(HypError::InvalidParameter),
        "DEVICE_INFO past the end"
    );
    Ok(())
}

fn other_devices_unreachable() -> Result<(), Msg> {
    // Every BAR of every one of our functions (the host has several).
    let mut mine = [(0u64, 0u64); 16];
    let mut n = 0;
    let (_, count) = hv::device_info(0).map_err(|e| msg!("DEVICE_INFO: {e}"))?;
    for i in 0..count {
        let (d, _) = hv::device_info(i).map_err(|e| msg!("DEVICE_INFO({i}): {e}"))?;
        for b in d.bars.iter().filter(|b| b.size != 0) {
            check!(n < mine.len(), "more BARs than this test expects");
            mine[n] = (b.ipa, b.size);
            n += 1;
        }
    }
    let ours = |a: u64| mine[..n].iter().any(|&(base, size)| a >= base && a < base + size);
    // Every 1 MiB slot of the start of the window and every page of the I/O window: other VMs'
    // BARs live there.
    let mem = (0..8u64).map(|i| BOARD.pcie_mmio32.base + (i << 20));
    let io = (0..16u64).map(|i| BOARD.pcie_pio.base + (i << 12));
    for addr in mem.chain(io) {
        if ours(addr) {
            check!(try_read64(addr).is_ok(), "our own BAR at {addr:#x} faulted");
            continue;
        }
        read_faults(addr)?;
    }
    Ok(())
}

fn buf_ipa<T>(x: &T) -> u64 {
    x as *const T as u64
}

fn error_codes() -> Result<(), Msg> {
    let vm = me();
    let hyp_mem = BOARD.hyp.base + 0x20_0000;
    let other = others().next().unwrap().mem.base;
    let scratch = [0u8; 512];
    let ipa = buf_ipa(&scratch);
    let ns = Err(HypError::NotSupported);
    let ip = Err(HypError::InvalidParameter);
    let ia = Err(HypError::InvalidAddress);
    // NOT_SUPPORTED: unknown function, unknown conduit immediate.
    let mut r = [0u64; 8];
    r[0] = 0xC600_00FF;
    check_eq!(hv::raw(r), ns, "unknown function");
    check_eq!(HypError::from_x0(arch::hvc_imm1(HypCall::Version.to_regs())[0]), ns, "HVC #1");
    // INVALID_PARAMETER: reserved argument bits, lengths out of range, small buffers.
    let mut r = HypCall::Features { function: FunctionId::Version as u32 }.to_regs();
    r[1] |= 1 << 40;
    check_eq!(hv::raw(r), ip, "FEATURES with x1[63:32] set");
    check_eq!(hv::call(HypCall::ConsoleWrite { ipa, len: 0 }).0, ip, "CONSOLE_WRITE of 0 bytes");
    check_eq!(
        hv::call(HypCall::ConsoleWrite { ipa, len: CONSOLE_WRITE_MAX + 1 }).0,
        ip,
        "CONSOLE_WRITE too long"
    );
    check_eq!(hv::call(HypCall::VmInfo { ipa, len: 63 }).0, ip, "VM_INFO into 63 bytes");
    check_eq!(
        hv::call(HypCall::DeviceInfo { index: 0, ipa, len: 111 }).0,
        ip,
        "DEVICE_INFO into 111 bytes"
    );
    check_eq!(hv::call(HypCall::EventRead { ipa, len: 33 }).0, ip, "EVENT_READ of 33 bytes");
    for len in [8, 64, 79] {
        // The whole SmmuStats (80 bytes), not ABI 1.0's 64.
        let st = hv::call(HypCall::SmmuStats { ipa, len }).0;
        check!(st == ip, "SMMU_STATS into {len} bytes: got {st:?}, expected INVALID_PARAMETER");
    }
    // INVALID_ADDRESS: buffers outside this VM's RAM, straddling its end, wrapping.
    for bad in [hyp_mem, other, vm.mem.end() - 8, u64::MAX - 3, vm.mem.base - 64] {
        check_eq!(
            hv::call(HypCall::ConsoleWrite { ipa: bad, len: 16 }).0,
            ia,
            "CONSOLE_WRITE outside"
        );
        check_eq!(hv::call(HypCall::VmInfo { ipa: bad, len: 64 }).0, ia, "VM_INFO outside");
        check_eq!(
            hv::call(HypCall::DeviceInfo { index: 0, ipa: bad, len: 112 }).0,
            ia,
            "DEVICE_INFO outside"
        );
        check_eq!(hv::call(HypCall::SmmuStats { ipa: bad, len: 80 }).0, ia, "SMMU_STATS outside");
    }
    // A refused call leaves the caller's buffer untouched.
    let probe = [0x5au8; 64];
    check_eq!(
        hv::call(HypCall::VmInfo { ipa: buf_ipa(&probe), len: 63 }).0,
        ip,
        "VM_INFO into 63 bytes"
    );
    check!(probe.iter().all(|&b| b == 0x5a), "a refused VM_INFO wrote to the buffer");
    Ok(())
}

fn psci_calls() -> Result<(), Msg> {
    use psci::*;
    let smc = |f: u32, a1: u64, a2: u64| arch::smc(f as u64, a1, a2, 0);
    let code = |v: i32| v as i64 as u64;
    let ns = code(NOT_SUPPORTED);
    check_eq!(smc(VERSION, 0, 0), VERSION_1_1 as u64, "PSCI_VERSION");
    // PSCI_FEATURES (mandatory since PSCI 1.0) knows every function that is offered.
    for f in [
        VERSION,
        CPU_SUSPEND,
        CPU_OFF,
        CPU_ON,
        AFFINITY_INFO,
        MIGRATE_INFO_TYPE,
        SYSTEM_OFF,
        SYSTEM_RESET,
        FEATURES,
        SMCCC_VERSION,
    ] {
        check_eq!(smc(FEATURES, f as u64, 0), 0, "PSCI_FEATURES({f:#x})");
    }
    for f in [SYSTEM_RESET2, SYSTEM_SUSPEND, 0x8400_0005, 0xC600_0000] {
        check_eq!(smc(FEATURES, f as u64, 0), ns, "PSCI_FEATURES({f:#x}) of an absent function");
    }
    check_eq!(smc(MIGRATE_INFO_TYPE, 0, 0), MIGRATE_INFO_NONE as u64, "MIGRATE_INFO_TYPE");
    // Our own CPU is on; the others' CPUs are not ours to start.
    let mine = arch::mpidr();
    check_eq!(smc(CPU_ON, mine, 0), code(ALREADY_ON), "CPU_ON of our own CPU");
    check_eq!(smc(AFFINITY_INFO, mine, 0), code(AFFINITY_ON), "AFFINITY_INFO of our CPU");
    for o in others() {
        check_eq!(
            smc(CPU_ON, o.cpu as u64, 0),
            code(INVALID_PARAMETERS),
            "CPU_ON of another VM's CPU"
        );
        check_eq!(
            smc(AFFINITY_INFO, o.cpu as u64, 0),
            code(INVALID_PARAMETERS),
            "AFFINITY_INFO of another VM's CPU"
        );
    }
    check_eq!(smc(CPU_SUSPEND, 0, 0), 0, "CPU_SUSPEND (standby)");
    check_eq!(smc(CPU_SUSPEND, 1 << 16, 0), code(INVALID_PARAMETERS), "CPU_SUSPEND (powerdown)");
    // SMCCC 1.1 and honest Spectre answers: "not affected" only where the ID registers say so.
    check_eq!(smc(SMCCC_VERSION, 0, 0), SMCCC_VERSION_1_1 as u64, "SMCCC_VERSION");
    check_eq!(smc(SMCCC_ARCH_FEATURES, SMCCC_ARCH_FEATURES as u64, 0), 0, "ARCH_FEATURES");
    let (pfr0, mmfr1) = arch::spectre_id_regs();
    let csv2 = (pfr0 >> 56) & 0xf;
    let ecbhb = (mmfr1 >> 60) & 0xf != 0;
    let unaffected = code(SMCCC_WORKAROUND_UNAFFECTED);
    let wa1 = if csv2 >= 1 { unaffected } else { ns };
    let wa3 = if csv2 >= 3 || ecbhb { unaffected } else { ns };
    check_eq!(smc(SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_1 as u64, 0), wa1, "WORKAROUND_1");
    check_eq!(smc(SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_2 as u64, 0), ns, "WORKAROUND_2");
    check_eq!(smc(SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_3 as u64, 0), wa3, "WORKAROUND_3");
    // Not SMCCC: SMC with a non-zero immediate, a hypercall ID through SMC.
    check_eq!(arch::smc_imm1(VERSION as u64), ns, "SMC #1 with PSCI_VERSION");
    check_eq!(smc(0xC600_0000, 0, 0), ns, "a hypercall through SMC");
    Ok(())
}

fn hyp_memory_isolated() -> Result<(), Msg> {
    for addr in [BOARD.hyp.base, BOARD.hyp.base + 0x20_0000, BOARD.hyp.end() - 8] {
        read_faults(addr)?;
        write_faults(addr)?;
    }
    Ok(())
}

fn vm_memory_isolated() -> Result<(), Msg> {
    for o in others() {
        read_faults(o.mem.base)?;
        write_faults(o.mem.base + 0x1000)?;
        // Their boot-info block: the owner checks it is intact in owner_memory_unchanged.
        write_faults(o.boot_info_ipa())?;
    }
    // Nothing else is mapped either: RAM no VM owns, the UART, the SMMU, the GIC, PCIe ECAM.
    let unowned_ram = MANIFEST.vms.iter().map(|v| v.mem.end()).max().unwrap_or(0);
    for addr in
        [unowned_ram, BOARD.uart.base, BOARD.smmu.base, BOARD.gicd.base, BOARD.pcie_ecam.base]
    {
        read_faults(addr)?;
    }
    write_faults(BOARD.smmu.base + 0x20)?;
    Ok(())
}

fn concurrent() -> Result<(), Msg> {
    let vm = me();
    wait_until("all VMs to run at once", || {
        hv::vm_info().is_ok_and(|i| i.peak_running as usize == MANIFEST.vms.len())
    })?;
    check_eq!(arch::mpidr() & 0xff, vm.cpu as u64, "MPIDR_EL1.Aff0 (our physical CPU)");
    for o in others() {
        check!(o.cpu != vm.cpu, "VM {} shares CPU {}", o.name, o.cpu);
    }
    Ok(())
}

fn dma_before_attach_is_aborted() -> Result<(), Msg> {
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

fn identity_dma_lands_at_the_ipa() -> Result<(), Msg> {
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

fn identity_dma_cannot_leave_the_vm() -> Result<(), Msg> {
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
fn identity_dma_reaches_exactly_our_ram() -> Result<(), Msg> {
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

/// Every buffer-taking call refuses a declared range that ends 1 to 63 bytes past our RAM (or
/// far past it), whatever it would write, and writes nothing.
fn declared_lengths_are_checked_whole() -> Result<(), Msg> {
    let end = me().mem.end();
    let ia = Err(HypError::InvalidAddress);
    // The last 64 bytes of our RAM hold the boot-info block's tail: they must stay as they are.
    // SAFETY: our own RAM (the boot-info page).
    let tail = unsafe { core::ptr::read_volatile((end - 64) as *const [u8; 64]) };
    for past in 1..64u64 {
        let (ipa, len) = (end - 64, 64 + past);
        check_eq!(hv::call(HypCall::VmInfo { ipa, len }).0, ia, "VM_INFO ending {past} B past RAM");
        check_eq!(
            hv::call(HypCall::PmStatus { ipa, len }).0,
            ia,
            "PM_STATUS ending {past} B past RAM"
        );
        // SMMU_STATS needs 80 bytes: the same overrun from 16 bytes lower.
        check_eq!(
            hv::call(HypCall::SmmuStats { ipa: ipa - 16, len: len + 16 }).0,
            ia,
            "SMMU_STATS ending {past} B past RAM"
        );
        check_eq!(
            hv::call(HypCall::ConsoleWrite { ipa: end - 8, len: 8 + past }).0,
            ia,
            "CONSOLE_WRITE ending {past} B past RAM"
        );
        let (ipa, len) = (end - 112, 112 + past);
        check_eq!(
            hv::call(HypCall::DeviceInfo { index: 0, ipa, len }).0,
            ia,
            "DEVICE_INFO ending {past} B past RAM"
        );
        if past % 32 == 0 {
            check_eq!(
                hv::call(HypCall::EventRead { ipa: end - 32, len: 32 + past }).0,
                ia,
                "EVENT_READ ending past RAM"
            );
        }
        if past % 16 == 0 {
            check_eq!(
                hv::call(HypCall::Invalidate { ipa: end - 16, count: 1 + past / 16 }).0,
                ia,
                "INVALIDATE ending past RAM"
            );
        }
        let sid = me().devices[0].rid();
        check_eq!(
            hv::call(HypCall::SetSte { sid, ipa: end - 64 + past }).0,
            ia,
            "SET_STE's STE ending {past} B past RAM"
        );
    }
    // The declared length counts even where only the struct would be written.
    check_eq!(
        hv::call(HypCall::VmInfo { ipa: end - 4096, len: 8192 }).0,
        ia,
        "VM_INFO(end - 4 KiB, 8 KiB)"
    );
    check_eq!(
        hv::call(HypCall::PmStatus { ipa: end - 64, len: u64::MAX }).0,
        ia,
        "PM_STATUS(end - 64, 2^64 - 1)"
    );
    // SAFETY: as above.
    let after = unsafe { core::ptr::read_volatile((end - 64) as *const [u8; 64]) };
    check!(after == tail, "a refused call wrote into our last 64 bytes");
    Ok(())
}

/// The host floods the SMMU with fault events from its device and never reads them while the
/// guests fault a few times each and read theirs: every guest receives all of its own events
/// (the flooder's ring overflows, counted against it alone). The VMs pace each other with
/// their PM votes (no other test votes while this runs): a guest votes allow-off when ready
/// and need-on when done; the host floods while any guest's vote is up. (QEMU records one
/// event per 4-byte access of a faulting DMA: a 64-byte flood DMA makes 16, a 4-byte one 1.)
fn events_are_isolated_under_a_flood() -> Result<(), Msg> {
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
fn random_hypercalls_change_nothing_they_must_not() -> Result<(), Msg> {
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

fn bad_smmu_requests_are_refused() -> Result<(), Msg> {
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

/// IOVA of the nested tests: deliberately unlike any IPA of ours.
const IOVA: u64 = 0x1234_0000;

fn nested_dma_translates_and_tlbi_unmaps() -> Result<(), Msg> {
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
fn nested_cds_are_checked_and_shadowed() -> Result<(), Msg> {
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

fn clear_ste_blocks_again() -> Result<(), Msg> {
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

fn pm_status() -> Result<host_abi::PmStatus, Msg> {
    hv::pm_status().map_err(|e| msg!("PM_STATUS: {e}"))
}

fn all_vms_mask() -> u64 {
    (1u64 << MANIFEST.vms.len()) - 1
}

/// Every VM votes allow-off here; until the last vote, power must stay on.
fn pm_votes_gate_power() -> Result<(), Msg> {
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
fn pm_cycle() -> Result<(), Msg> {
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

fn owner_memory_unchanged() -> Result<(), Msg> {
    let vm = me();
    // VMs with a higher id attacked us (vm_memory_isolated); wait until they have stopped.
    let later: u64 = MANIFEST.vms.iter().filter(|v| v.id > vm.id).map(|v| 1u64 << v.id).sum();
    wait_until("later VMs to stop", || hv::vm_info().is_ok_and(|i| i.running_mask & later == 0))?;
    // SAFETY: our boot-info block.
    let bi = unsafe { hv::boot_info(vm.boot_info_ipa()) };
    check_eq!(bi.magic, BOOT_INFO_MAGIC, "our boot-info magic after the attacks");
    check_eq!(bi.mem_base, vm.mem.base, "our boot-info after the attacks");
    // Our first page (identity_dma_reaches_exactly_our_ram aims at it from the other VMs).
    check_eq!(
        page_sum(vm.mem.base),
        FIRST_PAGE_SUM.load(Ordering::SeqCst),
        "checksum of our first page after the attacks"
    );
    Ok(())
}

/// With a Linux host: wait until it has stopped (its `poweroff`, or a reset after a panic; its
/// tests route an interrupt to guest1's CPU, so the guests stay up until it is done), then check
/// that it stopped alone: we still run and the hypervisor still serves us.
fn linux_host_stop_leaves_us_running() -> Result<(), Msg> {
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
fn canary_for_the_hosts_dma() -> Result<(), Msg> {
    let id = me().id;
    fill(canary(), 4096, |i| platform::linux::canary_byte(id, i));
    bytes_eq(canary(), 4096, |i| platform::linux::canary_byte(id, i), "canary page just written")
}

/// After the Linux host stopped: its edu device aimed DMA at our canary page (through the
/// STEs its driver asked for and the ones it wrote itself); not a byte changed.
fn hosts_dma_left_our_canary() -> Result<(), Msg> {
    let id = me().id;
    bytes_eq(
        canary(),
        4096,
        |i| platform::linux::canary_byte(id, i),
        "our canary page after the Linux host's DMA attacks",
    )
}

/// Every test, in the order they run. With a bare-metal host the Linux-host ones are skipped
/// ([`LINUX_HOST_ONLY`]); with a Linux host the ones that need a cooperating bare-metal host
/// ([`BARE_HOST_ONLY`]: the SMMU power cycle needs its votes, the event flood its device).
static TESTS: &[Test] = &[
    ("canary_for_the_hosts_dma", canary_for_the_hosts_dma),
    ("boot_info", boot_info),
    ("abi_version", abi_version),
    ("features", features),
    ("vm_info", vm_info),
    ("device_info", device_info),
    ("other_devices_unreachable", other_devices_unreachable),
    ("error_codes", error_codes),
    ("psci", psci_calls),
    ("hyp_memory_isolated", hyp_memory_isolated),
    ("vm_memory_isolated", vm_memory_isolated),
    ("concurrent", concurrent),
    ("dma_before_attach_is_aborted", dma_before_attach_is_aborted),
    ("identity_dma_lands_at_the_ipa", identity_dma_lands_at_the_ipa),
    ("identity_dma_cannot_leave_the_vm", identity_dma_cannot_leave_the_vm),
    ("identity_dma_reaches_exactly_our_ram", identity_dma_reaches_exactly_our_ram),
    ("declared_lengths_are_checked_whole", declared_lengths_are_checked_whole),
    ("events_are_isolated_under_a_flood", events_are_isolated_under_a_flood),
    (
        "random_hypercalls_change_nothing_they_must_not",
        random_hypercalls_change_nothing_they_must_not,
    ),
    ("bad_smmu_requests_are_refused", bad_smmu_requests_are_refused),
    ("nested_dma_translates_and_tlbi_unmaps", nested_dma_translates_and_tlbi_unmaps),
    ("nested_cds_are_checked_and_shadowed", nested_cds_are_checked_and_shadowed),
    ("clear_ste_blocks_again", clear_ste_blocks_again),
    ("pm_votes_gate_power", pm_votes_gate_power),
    ("pm_cycle", pm_cycle),
    ("linux_host_stop_leaves_us_running", linux_host_stop_leaves_us_running),
    ("hosts_dma_left_our_canary", hosts_dma_left_our_canary),
    ("owner_memory_unchanged", owner_memory_unchanged),
];

/// Tests that only make sense with a Linux host.
static LINUX_HOST_ONLY: &[&str] =
    &["canary_for_the_hosts_dma", "linux_host_stop_leaves_us_running", "hosts_dma_left_our_canary"];

/// Tests that need a cooperating bare-metal host.
static BARE_HOST_ONLY: &[&str] = &["events_are_isolated_under_a_flood", "pm_cycle"];
