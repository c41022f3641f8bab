//! The demo image: each VM says who it is, shows its device, and shows that touching another
//! VM's memory is refused.
#![no_std]
#![no_main]

use guest_tests::arch::{self, try_write64};
use guest_tests::edu::Edu;
use guest_tests::{hv, println};
use host_abi::types::decode_name;
use platform::qemu_virt::MANIFEST;

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
    }
    let next = &MANIFEST.vms[(bi.vm_id as usize + 1) % MANIFEST.vms.len()];
    match try_write64(next.mem.base + 0x1000, 0xbad) {
        Ok(()) => println!(
            "  writing {}'s memory at {:#x} SUCCEEDED: isolation is broken",
            next.name, next.mem.base
        ),
        Err(f) => println!(
            "  writing {}'s memory at {:#x} was refused: synchronous external abort (ESR {:#x})",
            next.name,
            next.mem.base + 0x1000,
            f.esr
        ),
    }
    println!("  done: PSCI SYSTEM_OFF");
    arch::system_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("panic: {info}");
    arch::system_off()
}
