//! The EL2 hypervisor binary for QEMU `virt`.
//!
//! Boot CPU: SMMU to abort → console → EL2 MMU → heap → device tree check → GIC → VM stage-2s
//! and boot-info blocks → secondary CPUs (PSCI CPU_ON) → enter VM 0. Each secondary: MMU → GIC
//! CPU interface → enter its VM. From then on a CPU runs only its VM and the trap handlers.
#![no_std]
#![no_main]

extern crate alloc;

mod el2;

use buddy_system_allocator::LockedHeap;
use core::panic::PanicInfo;
use el2::{firmware, gic, mmu, sysreg, uart, vm, PLATFORM};
use hyp::iommu::driver;
use log::{error, info};
use platform::{MemRange, Platform};

/// Heap size (for tables and state that outlive boot).
const HEAP_SIZE: usize = 1 << 20;

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

struct HeapMemory(core::cell::UnsafeCell<[u8; HEAP_SIZE]>);
// SAFETY: handed to the allocator once, by the boot CPU, and never touched directly again.
unsafe impl Sync for HeapMemory {}
static HEAP_MEMORY: HeapMemory = HeapMemory(core::cell::UnsafeCell::new([0; HEAP_SIZE]));

/// Entered from entry.S on every CPU with the MMU off, on the CPU's own stack.
#[no_mangle]
extern "C" fn rust_cpu_entry(cpu: u64) -> ! {
    if cpu == 0 {
        boot_cpu()
    } else {
        secondary_cpu(cpu as u32)
    }
}

fn boot_cpu() -> ! {
    let board = PLATFORM.board();
    // The very first device access: make the (still disabled) SMMU abort all DMA. QEMU resets
    // GBPA to bypass, so until this write any PCI device could reach any memory.
    // SAFETY: the board's SMMU register space with the MMU off (device memory); this handle is
    // dropped at once and the driver makes its own later.
    let gbpa = driver::set_global_abort(&mut unsafe {
        el2::smmu_regs::MmioRegs::new(board.smmu.base as usize)
    });

    // SAFETY: the board's PL011, accessed with the MMU off (device memory) and later mapped as
    // device memory at the same address.
    unsafe { uart::init(board.uart.base as usize) };
    info!("booting on {} at EL2", board.name);
    match gbpa {
        Ok(before) => info!(
            "SMMU: GBPA was {:#010x} ({}), now ABORT: no device can DMA until the SMMU is programmed",
            before.0,
            if before.abort() { "abort" } else { "bypass" }
        ),
        Err(e) => fatal(format_args!("SMMU: cannot set GBPA.ABORT: {e}")),
    }

    // SAFETY: called once, here.
    let mut pools = unsafe { mmu::take_pools() };
    // Map all the RAM QEMU can give us; the device tree check below makes sure the board has
    // what the manifest needs.
    let ram = MemRange::new(board.ram_base, platform::qemu_virt::QEMU_RAM_SIZE);
    let el2_pool = core::mem::replace(&mut pools.el2, hyp::pagepool::PagePool::new(&mut []));
    let el2_map = mmu::build_el2(el2_pool, board, ram);
    let table_pages = el2_map.translation().in_use;
    // SAFETY: the map identity-maps RAM (image, stacks, pools) and every device we use.
    unsafe { mmu::enable_boot(&el2_map) };
    // The EL2 tables are live for the rest of the run.
    core::mem::forget(el2_map);
    info!("EL2 MMU on: RAM and devices identity-mapped with {table_pages} table pages");

    // SAFETY: the heap memory is handed to the allocator exactly once.
    unsafe { HEAP.lock().init(HEAP_MEMORY.0.get() as usize, HEAP_SIZE) };
    info!("heap: {} KiB", HEAP_SIZE / 1024);

    let dt = read_device_tree(board.ram_base);
    if let Err(e) = board.check_against(&dt) {
        fatal(format_args!("device tree does not match the {} board: {e}", board.name));
    }
    let dt_ram = dt.memory.expect("checked");
    if let Err(e) = PLATFORM.manifest().validate(board, dt_ram) {
        fatal(format_args!("VM manifest unusable: {e}"));
    }
    info!(
        "device tree: {} MiB RAM at {:#x}, {} CPUs, PCIe ECAM {:#x}, MMIO32 window {:#x}+{:#x}: matches {}",
        dt_ram.size >> 20,
        dt_ram.base,
        dt.cpu_count,
        dt.pcie_ecam.map_or(0, |r| r.base),
        dt.pcie_mmio32.map_or(0, |r| r.base),
        dt.pcie_mmio32.map_or(0, |r| r.size),
        board.name
    );

    if let Err(e) = gic::init(board) {
        fatal(format_args!("GICv3 init failed: {e}"));
    }
    info!("GICv3: distributor {:#x}, redistributors {:#x}", board.gicd.base, board.gicr.base);

    print_memory_map(board, dt_ram);
    let devices = el2::pcie::bring_up(board, PLATFORM.manifest());
    let options = hyp::dt::BootOptions::parse_for(
        hyp::dt::bootargs(dtb(board.ram_base)).unwrap_or(""),
        board.smmu_gbpa_reset,
        board.smmu_coherent,
        &mut |w| log::warn!("unknown boot option `{w}` ignored"),
    );
    info!(
        "boot options: SMMU power domain resets GBPA to {:?}, power-loss injection {}, SMMU driven as {}",
        options.gbpa_reset,
        if options.pm_inject { "allowed" } else { "off" },
        if options.smmu_coherent { "coherent" } else { "non-coherent (cache maintenance, non-cacheable walks)" }
    );
    el2::front_door::init(board, options);
    el2::pcie::enable_dma(board, &devices);
    info!("PCI: bus mastering on for assigned devices (their streams abort until attached)");
    vm::prepare_all(&mut pools, &devices, options);
    // Each VM's first CPU is started here (the boot CPU is VM 0's); a VM starts its others
    // itself with PSCI CPU_ON.
    for spec in PLATFORM.manifest().vms {
        if vm::CPUS.try_start(spec.first_cpu()).is_err() {
            fatal(format_args!("cpu {} is the first of two VMs", spec.first_cpu()));
        }
    }
    match vm::el2_irq_cpus(None).next() {
        Some(cpu) => el2::front_door::take_irqs(board, cpu),
        None => log::warn!(
            "SMMU: no CPU runs a VM to take its interrupts: its queues are serviced on entries into the SMMU service only"
        ),
    }

    let entry = vm::secondary_entry_address();
    for cpu in PLATFORM.manifest().vms.iter().map(|v| v.first_cpu()).filter(|&c| c != 0) {
        let r = firmware::cpu_on(sysreg::affinity(cpu), entry, cpu as u64);
        if r != 0 {
            fatal(format_args!("PSCI CPU_ON of cpu {cpu} failed: {r}"));
        }
    }
    let heap = HEAP.lock();
    info!(
        "heap after boot: {} bytes in use ({} bytes requested)",
        heap.stats_alloc_actual(),
        heap.stats_alloc_user()
    );
    drop(heap);
    vm::run_on_this_cpu(0)
}

fn secondary_cpu(cpu: u32) -> ! {
    // SAFETY: the boot CPU enabled its MMU with the shared table before starting us.
    unsafe { mmu::enable_secondary() };
    gic::init_cpu(cpu);
    info!("cpu {cpu} up (MPIDR {:#x})", sysreg::mpidr_el1::read());
    vm::run_on_this_cpu(cpu)
}

fn dtb(ram_base: u64) -> &'static [u8] {
    // SAFETY: QEMU places the DTB at the start of RAM, which is mapped and belongs to the
    // hypervisor; we read its 8-byte header first.
    let header = unsafe { (ram_base as *const [u8; 8]).read() };
    let Some(size) = hyp::dt::blob_size(&header) else {
        fatal(format_args!("no device tree at {ram_base:#x}"));
    };
    if size > 2 << 20 {
        fatal(format_args!("device tree at {ram_base:#x} claims {size} bytes"));
    }
    // SAFETY: the blob lies inside the hypervisor's own 64 MiB at the start of RAM (checked
    // size) and nothing writes it.
    unsafe { core::slice::from_raw_parts(ram_base as *const u8, size) }
}

fn read_device_tree(ram_base: u64) -> platform::DtFacts {
    let blob = dtb(ram_base);
    match hyp::dt::parse(blob) {
        Ok(f) => f,
        Err(e) => fatal(format_args!("{e} at {ram_base:#x}")),
    }
}

fn print_memory_map(board: &platform::Board, ram: MemRange) {
    unsafe extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }
    let (start, end) =
        (core::ptr::addr_of!(__image_start) as u64, core::ptr::addr_of!(__image_end) as u64);
    info!("memory map:");
    info!("  {:#012x}-{:#012x} RAM", ram.base, ram.end());
    info!("  {:#012x}-{:#012x} hypervisor (mapped in no VM)", board.hyp.base, board.hyp.end());
    info!("    {:#012x}-{:#012x} image, stacks, heap, table pools", start, end);
    for v in PLATFORM.manifest().vms {
        info!("  {:#012x}-{:#012x} vm {}", v.mem.base, v.mem.end(), v.name);
    }
    info!("  {:#012x}-{:#012x} SMMUv3 (hypervisor only)", board.smmu.base, board.smmu.end());
    info!("  {:#012x}-{:#012x} PL011 UART (hypervisor only)", board.uart.base, board.uart.end());
    info!("VMs:");
    info!("  id name     cpus VMID memory                      boot info");
    for v in PLATFORM.manifest().vms {
        info!(
            "  {:<2} {:<8} {:<4} {:<4} {:#x}-{:#x} ({} MiB) {:#x}",
            v.id,
            v.name,
            alloc::format!("{}-{}", v.cpus.first, v.cpus.end() - 1),
            v.vmid(),
            v.mem.base,
            v.mem.end(),
            v.mem.size >> 20,
            v.boot_info_ipa()
        );
    }
}

/// Bytes of heap in use.
pub fn heap_in_use() -> usize {
    HEAP.lock().stats_alloc_actual()
}

/// Reports a fatal boot error and powers off.
fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    error!("{args}");
    uart::emergency(format_args!("hyp: PANIC {args}\n"), el2::UART_BASE);
    firmware::system_off()
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    uart::emergency(
        format_args!("\r\nhyp: PANIC on CPU {}: {info}\r\n", sysreg::cpu_index()),
        el2::UART_BASE,
    );
    firmware::system_off()
}
