//! What a VM's CPU can reach: not the hypervisor, not another VM's memory or devices; every VM
//! runs at once on its own CPU; and, once the others are done, the attacks left our memory as
//! it was.

use super::{me, others, page_sum, read_faults, wait_until, write_faults, FIRST_PAGE_SUM};
use core::sync::atomic::Ordering;
use guest_tests::arch::{self, try_read64, try_sgi1r};
use guest_tests::msg::Msg;
use guest_tests::{check, check_eq, hv, msg};
use host_abi::types::BOOT_INFO_MAGIC;
use platform::qemu_virt::{BOARD, MANIFEST};

pub fn other_devices_unreachable() -> Result<(), Msg> {
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

pub fn hyp_memory_isolated() -> Result<(), Msg> {
    for addr in [BOARD.hyp.base, BOARD.hyp.base + 0x20_0000, BOARD.hyp.end() - 8] {
        read_faults(addr)?;
        write_faults(addr)?;
    }
    Ok(())
}

pub fn vm_memory_isolated() -> Result<(), Msg> {
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

pub fn concurrent() -> Result<(), Msg> {
    let vm = me();
    wait_until("all VMs to run at once", || {
        hv::vm_info().is_ok_and(|i| i.peak_running as usize == MANIFEST.vms.len())
    })?;
    check_eq!(arch::mpidr() & 0xff, vm.first_cpu() as u64, "MPIDR_EL1.Aff0 (our first CPU)");
    for o in others() {
        check!(!o.cpus.overlaps(&vm.cpus), "VM {} shares a CPU of {:?}", o.name, o.cpus);
    }
    Ok(())
}

pub fn owner_memory_unchanged() -> Result<(), Msg> {
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

/// A bare-metal VM has no SGI register: its `ICC_SGI1R_EL1` write traps (IMO/FMO are set on its
/// CPU) and comes back as an undefined instruction, whatever CPUs it names: only a Linux VM's
/// SGIs are sent (to its own CPUs). SGI 15, which nobody uses, to every CPU of the board by
/// target list (all 16 of cluster 0), then by broadcast (IRM).
pub fn sgi_writes_are_undefined() -> Result<(), Msg> {
    for value in [15u64 << 24 | 0xffff, 15 << 24 | 1 << 40] {
        match try_sgi1r(value) {
            Ok(()) => return Err(msg!("ICC_SGI1R_EL1 = {value:#x} did not trap")),
            Err(f) => check_eq!(f.ec(), 0, "ESR.EC of ICC_SGI1R_EL1 = {value:#x} (unknown reason)"),
        }
    }
    Ok(())
}
