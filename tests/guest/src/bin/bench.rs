//! The benchmark image. VM 0 measures; the other VMs power off at once so that the counter
//! (which counts every instruction the machine executes under `-icount`) only sees the
//! operation under test. Prints `bench NAME MEDIAN MIN MAX UNIT` lines for `cargo xtask bench`.
#![no_std]
#![no_main]

use guest_tests::arch::{self, counter};
use guest_tests::bench::{net, stats, Stats, REPS};
use guest_tests::{hv, iommu, println};
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

/// Like `measure`, with `setup` run (unmeasured) before each repetition.
fn measure_with(mut setup: impl FnMut(), mut f: impl FnMut()) -> Stats {
    let mut samples = [0u64; REPS];
    for s in samples.iter_mut() {
        setup();
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
    // (They may not even have started yet: wait for them to have stopped.)
    while hv::vm_info().map_or(true, |i| i.stopped_mask | 1 != (1u64 << i.vm_count) - 1) {}
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
    smmu_figures(overhead);
    vsmmu_figures(overhead);
    event_figures(overhead);
    pm_figures(overhead);
    println!("bench done");
    arch::system_off()
}

/// First stream ID of the device-less benchmark streams (`bench_streams=N` boot option).
const BENCH_STREAM_BASE: u32 = 0x1000;

fn pm_figures(overhead: u64) {
    let Ok(s) = hv::pm_status() else { return };
    if s.refusal == 3 {
        // PM disabled on this run: only the fast-path comparison is measured here.
        return;
    }
    let stats = || hv::smmu_stats().map(|s| s.heap_in_use).unwrap_or(0);
    let Ok((d, _)) = hv::device_info(0) else { return };
    let bypass = iommu::vste_bypass();
    let _ = iommu::set_ste(d.stream_id, &bypass);
    let need_on = || {
        let _ = hv::pm_vote(false);
    };
    let allow_off = || {
        let _ = hv::pm_vote(true);
    };
    report("pm_vote_no_change", net(measure(need_on), overhead));
    report("suspend", net(measure_with(need_on, allow_off), overhead));
    report("resume_1", net(measure_with(allow_off, need_on), overhead));
    // Sanity: each measured suspend and resume really happened.
    allow_off();
    if let Ok(s) = hv::pm_status() {
        println!(
            "bench note: votes {:#x} power {} refusal {}",
            s.votes_allow_off, s.power, s.refusal
        );
    }
    need_on();
    if let Ok(s) = hv::pm_status() {
        println!("bench pm_suspends {} {} {} count", s.suspends, s.suspends, s.suspends);
        println!("bench pm_resumes {} {} {} count", s.resumes, s.resumes, s.resumes);
    }
    // More attached streams: resume must not grow with them.
    let heap0 = stats();
    let mut attached = 1u32;
    for (n, name) in [(100u32, "resume_100"), (1000, "resume_1000")] {
        while attached < n {
            if let Err(e) = iommu::set_ste(BENCH_STREAM_BASE + attached - 1, &bypass) {
                println!(
                    "bench note: stream {:#x} could not be attached: {e}",
                    BENCH_STREAM_BASE + attached - 1
                );
                return;
            }
            attached += 1;
        }
        report(name, net(measure_with(allow_off, need_on), overhead));
    }
    let heap1 = stats();
    println!("bench heap_after_1000_streams {heap1} {heap1} {heap1} bytes");
    let per = (heap1 - heap0) / 999;
    println!("bench heap_bytes_per_stream_total {per} {per} {per} bytes");
    // Beyond its 64-byte STE.
    let beyond = per.saturating_sub(64);
    println!("bench heap_bytes_per_stream {beyond} {beyond} {beyond} bytes");
}

/// EVENT_READ with 16 pending events. Each event needs a real DMA fault (edu takes 100 ms of
/// virtual time, i.e. 10^8 instructions under -icount, per transfer), so this figure is a
/// single sample, not a median of 33 (under -icount a sample is exact and repeatable).
fn event_figures(overhead: u64) {
    use guest_tests::edu::Edu;
    let Ok((d, _)) = hv::device_info(0) else { return };
    // SAFETY: our edu device's BAR0, mapped by the hypervisor.
    let edu = unsafe { Edu::new(d.bars[0].ipa) };
    let _ = iommu::set_ste(d.stream_id, &iommu::vste_bypass());
    let mut buf = [host_abi::smmu::EventRecord::default(); 16];
    let mut samples = [0u64; 1];
    for s in samples.iter_mut() {
        let _ = iommu::saw_event(|_| false);
        for i in 0..16u64 {
            // Outside our stage 2: a stage-2 fault, one event each.
            let _ = edu.to_ram(0, 0x4020_0000 + i * 0x1000, 8);
        }
        let t0 = counter();
        let _ = iommu::read_events(&mut buf);
        *s = counter() - t0;
    }
    let st = net(stats(&mut samples), overhead);
    report("event_read_16", st);
    let _ = iommu::clear_ste(d.stream_id);
}

fn smmu_figures(overhead: u64) {
    use host_abi::smmu::Command;
    let Ok((d, _)) = hv::device_info(0) else { return };
    let sid = d.stream_id;
    let bypass = iommu::vste_bypass();
    let Some(pool) = iommu::TablePool::take() else { return };
    let space = iommu::DeviceSpace::new(pool);
    let s1 = iommu::vste_s1(space.cd_table);
    let clear = || {
        let _ = iommu::clear_ste(sid);
    };
    let identity = || {
        let _ = iommu::set_ste(sid, &bypass);
    };
    let nested = || {
        let _ = iommu::set_ste(sid, &s1);
    };
    report("set_ste_identity", net(measure_with(clear, identity), overhead));
    report("set_ste_nested", net(measure_with(clear, nested), overhead));
    report("clear_ste", net(measure_with(identity, clear), overhead));
    let mut cmds = [Command::sync(); 256];
    for (i, c) in cmds.iter_mut().enumerate() {
        *c = Command::tlbi_nh_va(0, iommu::ASID, 0x1000_0000 + ((i as u64) << 12));
    }
    for (n, name) in [(1usize, "inval_batch_1"), (16, "inval_batch_16"), (256, "inval_batch_256")] {
        let s = net(
            measure(|| {
                let _ = iommu::invalidate(&cmds[..n]);
            }),
            overhead,
        );
        report(name, s);
    }
    // The same one command in registers (INVALIDATE_INLINE): no array in memory.
    let s = net(
        measure(|| {
            let _ = iommu::invalidate_inline(&cmds[..1]);
        }),
        overhead,
    );
    report("inval_inline_1", s);
    let s = net(
        measure(|| {
            for c in cmds.chunks(1) {
                let _ = iommu::invalidate(c);
            }
        }),
        overhead,
    );
    report("inval_256_single_calls", s);
}

/// One 4 KiB page (a stream table, a queue).
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u64; 512]);

/// The pages of the emulated SMMU's configuration: stream table, command queue, event queue.
struct VsmmuPages(core::cell::UnsafeCell<[Page; 3]>);
// SAFETY: only the bench's one CPU uses them.
unsafe impl Sync for VsmmuPages {}
static VSMMU_PAGES: VsmmuPages = VsmmuPages(core::cell::UnsafeCell::new([Page([0; 512]); 3]));

/// The emulated SMMU's command path as a Linux host's driver uses it (`host_vsmmu=1` gives this
/// bare-metal host the emulated SMMU): commands written into the host's own queue, then one
/// CMDQ_PROD write (trapped): copied, translated, validated and sent with one SYNC.
fn vsmmu_figures(overhead: u64) {
    use host_abi::smmu::regs::off;
    use host_abi::smmu::Command;
    let base = platform::qemu_virt::BOARD.smmu.base as usize;
    // SAFETY: the emulated SMMU's register page (trapped by the hypervisor, `host_vsmmu=1`).
    let w32 = |o: usize, v: u32| unsafe { ((base + o) as *mut u32).write_volatile(v) };
    // SAFETY: as for w32.
    let r32 = |o: usize| unsafe { ((base + o) as *const u32).read_volatile() };
    // SAFETY: as for w32.
    let w64 = |o: usize, v: u64| unsafe { ((base + o) as *mut u64).write_volatile(v) };
    let pages = VSMMU_PAGES.0.get() as *mut Page;
    let (strtab, cmdq, evtq) = (pages as u64, pages as u64 + 4096, pages as u64 + 8192);
    // Linear stream table of 64 STEs (all invalid), 256-entry command queue, 128-entry events.
    w64(off::STRTAB_BASE, strtab);
    w32(off::STRTAB_BASE_CFG, 6);
    w64(off::CMDQ_BASE, cmdq | 8);
    w64(off::EVTQ_BASE, evtq | 7);
    w32(off::CR0, 0b1101);
    if r32(off::CR0ACK) != 0b1101 {
        println!("bench note: the emulated SMMU did not enable (CR0ACK {:#x})", r32(off::CR0ACK));
        return;
    }
    let mut prod = 0u32;
    let q = cmdq as *mut [u64; 2];
    let mut push = |n: u32| {
        for i in 0..n {
            let c = Command::tlbi_nh_va(0, iommu::ASID, 0x1000_0000 + ((i as u64) << 12));
            // SAFETY: slot `prod % 256` of our command queue page.
            unsafe { q.add((prod & 0xff) as usize).write_volatile(c.0) };
            prod = (prod + 1) & 0x1ff;
        }
        prod
    };
    for (n, name) in [(1u32, "vsmmu_prod_1"), (64, "vsmmu_prod_64")] {
        let next = core::cell::Cell::new(0);
        let s =
            net(measure_with(|| next.set(push(n)), || w32(off::CMDQ_PROD, next.get())), overhead);
        report(name, s);
    }
    // As Linux's strict unmap sends it with MSI polling: one TLBI_NH_VA and a CMD_SYNC whose
    // completion is the MSI write of its data into our own memory.
    let msi = MSI_WORD.0.get();
    let mut seq = 0u32;
    let mut push_sync = || {
        seq += 1;
        let cs =
            [Command::tlbi_nh_va(0, iommu::ASID, 0x1000_0000), Command::sync_msi(msi as u64, seq)];
        for c in cs {
            // SAFETY: slot `prod % 256` of our command queue page.
            unsafe { q.add((prod & 0xff) as usize).write_volatile(c.0) };
            prod = (prod + 1) & 0x1ff;
        }
        prod
    };
    let next = core::cell::Cell::new(0);
    let s =
        net(measure_with(|| next.set(push_sync()), || w32(off::CMDQ_PROD, next.get())), overhead);
    report("vsmmu_prod_tlbi_sync_msi", s);
    // SAFETY: our own word, which the emulated SMMU wrote (or not) during the last PROD write.
    let got = unsafe { msi.read_volatile() };
    if got != seq {
        println!("bench note: the last CMD_SYNC's MSI wrote {got:#x}, expected {seq:#x}");
    }
    let cons = r32(off::CMDQ_CONS);
    if cons != prod {
        println!("bench note: emulated CMDQ_CONS {cons:#x}, PROD {prod:#x}: commands refused");
    }
    vsmmu_flood(overhead, cmdq);
}

/// The word CMD_SYNCs with an MSI write.
struct MsiWord(core::cell::UnsafeCell<u32>);
// SAFETY: only the bench's one CPU (and the emulated SMMU on its behalf) uses it.
unsafe impl Sync for MsiWord {}
static MSI_WORD: MsiWord = MsiWord(core::cell::UnsafeCell::new(0));

/// The flood queue: 2^FLOOD_LOG2 commands.
const FLOOD_LOG2: u32 = 12;
#[repr(C, align(65536))]
struct FloodQueue(core::cell::UnsafeCell<[[u64; 2]; 1 << FLOOD_LOG2]>);
// SAFETY: only the bench's one CPU uses it.
unsafe impl Sync for FloodQueue {}
static FLOOD: FloodQueue = FloodQueue(core::cell::UnsafeCell::new([[0; 2]; 1 << FLOOD_LOG2]));

/// The host fills a whole queue with CFGI_ALL and writes PROD once, then polls CONS: each trapped
/// access holds the SMMU service's lock for a bounded amount of work, and the longest of them
/// is what a guest's SMMU call may wait behind the host. Reports the longest single access
/// (the PROD write or a CONS read), in instructions.
fn vsmmu_flood(overhead: u64, own_cmdq: u64) {
    use host_abi::smmu::regs::off;
    use host_abi::smmu::Command;
    let base = platform::qemu_virt::BOARD.smmu.base as usize;
    // SAFETY: the emulated SMMU's register page (trapped by the hypervisor, `host_vsmmu=1`).
    let w32 = |o: usize, v: u32| unsafe { ((base + o) as *mut u32).write_volatile(v) };
    // SAFETY: as for w32.
    let r32 = |o: usize| unsafe { ((base + o) as *const u32).read_volatile() };
    // SAFETY: as for w32.
    let w64 = |o: usize, v: u64| unsafe { ((base + o) as *mut u64).write_volatile(v) };
    let q = FLOOD.0.get() as *mut [u64; 2];
    for i in 0..1usize << FLOOD_LOG2 {
        // SAFETY: entry `i` of the flood queue.
        unsafe { q.add(i).write_volatile(Command::cfgi_all().0) };
    }
    w32(off::CR0, 0b0101);
    w64(off::CMDQ_BASE, q as u64 | FLOOD_LOG2 as u64);
    w32(off::CMDQ_PROD, 0);
    w32(off::CMDQ_CONS, 0);
    w32(off::CR0, 0b1101);
    let full = 1u32 << FLOOD_LOG2;
    let t0 = counter();
    w32(off::CMDQ_PROD, full);
    let mut longest = counter() - t0;
    let mut accesses = 1u64;
    loop {
        let t0 = counter();
        let cons = r32(off::CMDQ_CONS);
        longest = longest.max(counter() - t0);
        accesses += 1;
        if cons == full || cons >> 24 != 0 || accesses > 1 << FLOOD_LOG2 {
            if cons != full {
                println!("bench note: the flood stopped at CONS {cons:#x}");
            }
            break;
        }
    }
    let longest = longest.saturating_sub(overhead);
    println!("bench vsmmu_flood_longest_access {longest} {longest} {longest} instructions");
    println!("bench note: {} CFGI_ALL consumed over {accesses} trapped accesses", full);
    // Back to the one-page queue.
    w32(off::CR0, 0b0101);
    w64(off::CMDQ_BASE, own_cmdq | 8);
    w32(off::CMDQ_PROD, 0);
    w32(off::CMDQ_CONS, 0);
    w32(off::CR0, 0b1101);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("bench panic: {info}");
    arch::system_off()
}
