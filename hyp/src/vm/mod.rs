//! The VM side: what a VM is made of and what the hypervisor does to it on its behalf.
//!
//! Its memory ([`memory`]) and stage 2 ([`stage2`]), its lifecycle ([`lifecycle`]), the PSCI
//! calls it makes ([`psci`]), the exceptions injected into it
//! ([`inject`], decoded with [`esr`]), its console ([`console`]; a Linux guest's through an emulated PL011, [`pl011`]) and its CPU features
//! ([`cpufeat`]).

pub mod console;
pub mod cpufeat;
pub mod esr;
pub mod inject;
pub mod lifecycle;
pub mod memory;
pub mod pl011;
pub mod psci;
pub mod stage2;
