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

pub mod dt;
pub mod el2_controls;
pub mod host;
pub mod hypercall;
#[cfg(test)]
pub(crate) mod hypercall_fuzz;
pub mod iommu;
pub mod irq;
pub mod pagepool;
pub mod pci;
pub mod vm;
