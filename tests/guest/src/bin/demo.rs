//! The demo image: each VM says who it is, shows its device, shows that touching another VM's
//! memory is refused, and makes its device DMA in each domain type: blocked (aborted),
//! identity (lands at the IPA) and nested (lands where its own stage-1 maps the IOVA).
#![no_std]
#![no_main]

use guest_tests::arch::{self, try_write64};
use guest_tests::edu::Edu;
use guest_tests::{hv, iommu, println};
use host_abi::types::decode_name;
use platform::qemu_virt::MANIFEST;

/// Reads the first 8 bytes at `addr`.
fn peek(addr: u64) -> u64 {
    // SAFETY: callers pass this VM's own scratch memory.
    unsafe { (addr as *const u64).read_volatile() }
}

fn poke(addr: u64, v: u64) {
    // SAFETY: as for `peek`.
    unsafe { (addr as *mut u64).write_volatile(v) }
}

fn kind(d: Result<u64, host_abi::HypError>) -> &'static str {
    match d {
        Ok(0) => "blocked",
        Ok(1) => "identity",
        Ok(2) => "nested",
        Ok(_) => "?",
        Err(_) => "refused",
    }
}

fn dma_demo(edu: &Edu, sid: u32, base: u64) {
    let src = base + 0x20_0000;
    let dst = base + 0x21_0000;
    poke(src, 0x1122_3344_5566_7788);
    poke(dst, 0);
    let _ = edu.to_ram(0, dst, 8);
    println!("  DMA while blocked: {:#018x} at {dst:#x} (0 = aborted by the SMMU)", peek(dst));
    let d = iommu::set_ste(sid, &iommu::vste_bypass());
    println!(
        "  SET_STE(bypass) -> {} (the hypervisor gives identity: our stage 2, never real bypass)",
        kind(d)
    );
    let _ = edu.from_ram(src, 0, 8);
    let _ = edu.to_ram(0, dst, 8);
    println!("  DMA in identity: {:#018x} landed at IPA {dst:#x}", peek(dst));
    let Some(pool) = iommu::TablePool::take() else { return };
    let mut space = iommu::DeviceSpace::new(pool);
    let iova = 0x1234_0000;
    let target = base + 0x22_0000;
    poke(target, 0);
    if space.map(iova, target, 4096).is_err() {
        return;
    }
    let d = iommu::set_ste(sid, &iommu::vste_s1(space.cd_table));
    println!("  SET_STE(stage 1, CD table at {:#x}) -> {}", space.cd_table, kind(d));
    let _ = edu.to_ram(0, iova, 8);
    println!("  DMA to IOVA {iova:#x} in nested: {:#018x} landed at IPA {target:#x}", peek(target));
    let _ = iommu::clear_ste(sid);
}

/// VM 0 shows a power cycle once every VM has voted: off, DMA aborted, on, DMA translated.
fn pm_demo(edu: &Edu, sid: u32, base: u64, vm_id: u32, vm_count: u32) {
    let _ = iommu::set_ste(sid, &iommu::vste_bypass());
    let (power, refusal, _) = hv::pm_vote(true).unwrap_or((9, 9, 9));
    if vm_id != 0 {
        println!(
            "  PM_VOTE(allow-off) -> power {} (refusal {refusal})",
            if power == 1 { "off" } else { "on" }
        );
        // Wait for VM 0's cycle (its vote comes and goes), then take ours back.
        while hv::pm_status().is_ok_and(|s| s.votes_allow_off & 1 == 0 && s.suspends == 0) {}
        while hv::pm_status().is_ok_and(|s| s.votes_allow_off & 1 != 0) {}
        let _ = hv::pm_vote(false);
        return;
    }
    let all = (1u64 << vm_count) - 1;
    // Our vote is the last one needed: wait for the others first.
    while hv::pm_status().is_ok_and(|s| s.votes_allow_off != all) {}
    let s = hv::pm_status().unwrap_or_default();
    println!(
        "  every VM voted allow-off: SMMU power {} ({} suspend so far, GBPA resets to {})",
        if s.power == 1 { "OFF" } else { "on" },
        s.suspends,
        if s.gbpa_reset == 1 {
            "bypass: power-off refused while devices are assigned"
        } else {
            "abort"
        }
    );
    let dst = base + 0x23_0000;
    poke(dst, 0);
    let _ = edu.to_ram(0, dst, 8);
    println!(
        "  DMA while the SMMU is {}: {:#018x} at {dst:#x}",
        if s.power == 1 { "off" } else { "on" },
        peek(dst)
    );
    let (power, _, _) = hv::pm_vote(false).unwrap_or((9, 9, 9));
    poke(dst, 0);
    let _ = edu.to_ram(0, dst, 8);
    println!(
        "  PM_VOTE(need-on) -> power {}: DMA {:#018x} landed at {dst:#x}",
        if power == 0 { "on" } else { "off" },
        peek(dst)
    );
    let _ = iommu::clear_ste(sid);
}

#[no_mangle]
extern "C" fn guest_main(boot_ipa: u64) -> ! {
    // SAFETY: x0 at entry.
    let bi = unsafe { hv::boot_info(boot_ipa) };
    let v = hv::version().unwrap_or(0);
    println!(
        "hello from {} (VM {}): {} MiB of RAM at {:#x}, on physical CPU {}, ABI {}.{}",
        decode_name(&bi.name),
        bi.vm_id,
        bi.mem_size >> 20,
        bi.mem_base,
        bi.cpu,
        v >> 16,
        v & 0xffff
    );
    let next = &MANIFEST.vms[(bi.vm_id as usize + 1) % MANIFEST.vms.len()];
    match try_write64(next.mem.base + 0x1000, 0xbad) {
        Ok(()) => println!("  writing {}'s memory SUCCEEDED: isolation is broken", next.name),
        Err(f) => println!(
            "  writing {}'s memory at {:#x} was refused: synchronous external abort (ESR {:#x})",
            next.name,
            next.mem.base + 0x1000,
            f.esr
        ),
    }
    if let Ok((d, n)) = hv::device_info(0) {
        // SAFETY: our device's BAR0, mapped in our stage-2 by the hypervisor.
        let edu = unsafe { Edu::new(d.bars[0].ipa) };
        println!(
            "  {n} PCI device: {:04x}:{:04x}, stream {:#x}, BAR0 at {:#x} (edu ID register reads {:#x})",
            d.vendor,
            d.device,
            d.stream_id,
            d.bars[0].ipa,
            edu.id()
        );
        dma_demo(&edu, d.stream_id, bi.mem_base);
        pm_demo(&edu, d.stream_id, bi.mem_base, bi.vm_id, bi.vm_count);
    }
    println!("  done: PSCI SYSTEM_OFF");
    arch::system_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("panic: {info}");
    arch::system_off()
}
