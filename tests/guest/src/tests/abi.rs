//! The hypercall and PSCI interface as each VM sees it: the boot-info block, the ABI version,
//! FEATURES, VM_INFO and DEVICE_INFO, the error codes, PSCI and SMCCC, and the whole declared
//! length of every buffer a call takes.

use super::{me, others, pm_status, BOOT_IPA};
use core::sync::atomic::Ordering;
use guest_tests::arch;
use guest_tests::edu::{Edu, EDU_ID};
use guest_tests::msg::Msg;
use guest_tests::{check, check_eq, hv, msg};
use host_abi::types::{
    decode_name, BOOT_FLAG_GUESTS_OFF, BOOT_FLAG_HOST_IS_LINUX, BOOT_INFO_MAGIC,
};
use host_abi::{psci, FunctionId, HypCall, HypError, ABI_VERSION, CALL_UID, CONSOLE_WRITE_MAX};
use platform::qemu_virt::{BOARD, MANIFEST};

pub fn boot_info() -> Result<(), Msg> {
    let ipa = BOOT_IPA.load(Ordering::SeqCst);
    let vm = me();
    check_eq!(ipa, vm.boot_info_ipa(), "x0 at entry (last page of RAM)");
    // SAFETY: x0 at entry.
    let bi = unsafe { hv::boot_info(ipa) };
    check_eq!(bi.magic, BOOT_INFO_MAGIC, "magic");
    check_eq!(bi.abi_version, ABI_VERSION, "ABI version");
    check_eq!(bi.mem_base, vm.mem.base, "memory base");
    check_eq!(bi.mem_size, vm.mem.size, "memory size");
    check_eq!(bi.cpu, vm.first_cpu(), "cpu");
    check_eq!(bi.vm_count as usize, MANIFEST.vms.len(), "VM count");
    check_eq!(decode_name(&bi.name), vm.name, "name");
    let defined = BOOT_FLAG_HOST_IS_LINUX | BOOT_FLAG_GUESTS_OFF;
    check_eq!(bi.flags & !defined, 0, "undefined boot-info flags");
    // Only a run with a Linux host asks its guests to power off without waiting for it.
    if bi.flags & BOOT_FLAG_GUESTS_OFF != 0 {
        check_eq!(
            bi.flags & BOOT_FLAG_HOST_IS_LINUX,
            BOOT_FLAG_HOST_IS_LINUX,
            "guests-off flag without a Linux host"
        );
    }
    Ok(())
}

pub fn abi_version() -> Result<(), Msg> {
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

pub fn features() -> Result<(), Msg> {
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

pub fn vm_info() -> Result<(), Msg> {
    let vm = me();
    let info = hv::vm_info().map_err(|e| msg!("VM_INFO: {e}"))?;
    check_eq!(info.vm_id, vm.id, "vm_id");
    check_eq!(info.vm_count as usize, MANIFEST.vms.len(), "vm_count");
    check_eq!(info.mem_base, vm.mem.base, "mem_base");
    check_eq!(info.mem_size, vm.mem.size, "mem_size");
    check_eq!(info.cpu, vm.first_cpu(), "cpu");
    check_eq!(decode_name(&info.name), vm.name, "name");
    check_eq!(info.stopped_mask & (1 << vm.id), 0, "stopped_mask (we are running)");
    check!(
        info.running_mask & (1 << vm.id) != 0,
        "running_mask {:#x} lacks this VM",
        info.running_mask
    );
    Ok(())
}

pub fn device_info() -> Result<(), Msg> {
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

fn buf_ipa<T>(x: &T) -> u64 {
    x as *const T as u64
}

pub fn error_codes() -> Result<(), Msg> {
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

pub fn psci_calls() -> Result<(), Msg> {
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
    let vm = me();
    let mine = arch::mpidr();
    check_eq!(smc(CPU_ON, mine, 0), code(ALREADY_ON), "CPU_ON of our own CPU");
    check_eq!(smc(AFFINITY_INFO, mine, 0), code(AFFINITY_ON), "AFFINITY_INFO of our CPU");
    for o in others() {
        for cpu in o.cpus.iter() {
            check_eq!(
                smc(CPU_ON, cpu as u64, vm.mem.base),
                code(INVALID_PARAMETERS),
                "CPU_ON of another VM's CPU {cpu}"
            );
            check_eq!(
                smc(AFFINITY_INFO, cpu as u64, 0),
                code(INVALID_PARAMETERS),
                "AFFINITY_INFO of another VM's CPU {cpu}"
            );
        }
    }
    // Our other CPUs (the host's second, which the bare-metal host never starts): off, and
    // not started at an entry point outside our RAM.
    for cpu in vm.cpus.iter().filter(|&c| c != vm.first_cpu()) {
        check_eq!(smc(AFFINITY_INFO, cpu as u64, 0), code(AFFINITY_OFF), "AFFINITY_INFO({cpu})");
        check_eq!(
            smc(CPU_ON, cpu as u64, vm.mem.end()),
            code(INVALID_ADDRESS),
            "CPU_ON({cpu}) at the end of our RAM"
        );
        check_eq!(smc(AFFINITY_INFO, cpu as u64, 0), code(AFFINITY_OFF), "still off");
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

/// Every buffer-taking call refuses a declared range that ends 1 to 63 bytes past our RAM (or
/// far past it), whatever it would write, and writes nothing.
pub fn declared_lengths_are_checked_whole() -> Result<(), Msg> {
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
