//! The hypervisor's policy, as a host-testable `no_std` library.
//!
//! Everything here is pure logic: it never touches a system register or a device. The EL2
//! binary (`src/main.rs` and `src/el2/`) owns the hardware and calls into these modules with
//! the values it read, so every decision (hypercall dispatch, fault injection, PSCI, VM
//! lifecycle, device-tree cross-check, console line handling) runs under `cargo test` too.
#![no_std]

extern crate alloc;

#[cfg(test)]
extern crate std;

pub mod console;
pub mod cpufeat;
pub mod dt;
pub mod esr;
#[cfg(test)]
mod fuzz;
pub mod gicd;
pub mod gicr;
pub mod guest;
pub mod hosttree;
pub mod hypercall;
pub mod inject;
pub mod irq;
pub mod mmio;
pub mod pagepool;
pub mod pci;
pub mod pm;
pub mod psci;
pub mod regs;
pub mod service;
pub mod smmu;
pub mod softsmmu;
pub mod stage2;
pub mod validate;
pub mod vmstate;
pub mod vsmmu;
