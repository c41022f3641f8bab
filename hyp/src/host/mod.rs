//! The Linux host's filters: the devices the host kernel drives itself but only through the
//! hypervisor, each access trapped and judged ([`mmio`] dispatches them): the GIC distributor
//! ([`gicd`]) and its redistributor ([`gicr`]), PCI configuration space ([`pci_filter`]), and
//! the check of the host's device tree before it boots ([`tree`]).

pub mod gicd;
pub mod gicr;
pub mod mmio;
pub mod pci_filter;
pub mod tree;
