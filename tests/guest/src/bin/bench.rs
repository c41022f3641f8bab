//! The benchmark image. VM 0 measures; the other VMs power off at once so that the counter
//! (which counts every instruction the machine executes under `-icount`) only sees the
//! operation under test. Prints `bench NAME MEDIAN MIN MAX UNIT` lines for `cargo xtask bench`.
#![no_std]
#![no_main]

use guest_tests::arch::{self, counter};
use guest_tests::bench::{net, stats, Stats, REPS};
use guest_tests::{hv, println};
use host_abi::HypCall;

fn measure(mut f: impl FnMut()) -> Stats {
    let mut samples = [0u64; REPS];
    for s in samples.iter_mut() {
        let t0 = counter();
        f();
        *s = counter() - t0;
    }
    stats(&mut samples)
}

fn report(name: &str, s: Stats) {
    println!("bench {name} {} {} {} instructions", s.median, s.min, s.max);
}

#[no_mangle]
extern "C" fn guest_main(boot_ipa: u64) -> ! {
    // SAFETY: x0 at entry.
    let bi = unsafe { hv::boot_info(boot_ipa) };
    if bi.vm_id != 0 {
        arch::system_off();
    }
    // Wait until the other VMs are off: they would add their instructions to our counter.
    while hv::vm_info().map_or(true, |i| i.running_mask != 1) {}
    let overhead = measure(|| {}).median;
    println!("bench counter_overhead {overhead} {overhead} {overhead} instructions");

    report(
        "null_hypercall",
        net(
            measure(|| {
                let _ = hv::version();
            }),
            overhead,
        ),
    );

    let mut buf = [[0u64; 4]; 16];
    let ipa = buf.as_mut_ptr() as u64;
    report(
        "event_read_0",
        net(
            measure(|| {
                let _ = hv::call(HypCall::EventRead { ipa, len: 32 });
            }),
            overhead,
        ),
    );
    report(
        "smmu_stats",
        net(
            measure(|| {
                let _ = hv::smmu_stats();
            }),
            overhead,
        ),
    );
    println!("bench done");
    arch::system_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("bench panic: {info}");
    arch::system_off()
}
