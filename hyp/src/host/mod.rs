//! The Linux host's filters: the devices the host kernel drives itself but only through the
//! hypervisor, each access trapped and judged ([`mmio`] dispatches them): the GIC distributor
//! ([`gicd`]) and its redistributor ([`gicr`]: the RD frame; [`gicr_sgi`]: the register page of
//! the SGI frame, which keeps its interrupts below the hypervisor's), PCI configuration space ([`pci_filter`]), and
//! the check of the host's device tree before it boots ([`tree`]), and its SGIs ([`sgi`]:
//! trapped since FMO is set on its CPUs).

pub mod gicd;
pub mod gicr;
pub mod gicr_sgi;
pub mod mmio;
pub mod pci_filter;
pub mod sgi;
pub mod tree;
