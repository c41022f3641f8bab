//! The IOMMU stack: everything between a VM's request and the real SMMUv3.
//!
//! - [`driver`]: the driver of the real SMMU (queues, stream table, STE encoding) behind the
//!   [`driver::SmmuRegs`] register trait.
//! - [`service`]: the SMMU service, every operation a VM may ask of the SMMU, checked for
//!   ownership and validated ([`validate`]) before the driver is called; power votes ([`pm`]).
//! - [`emulated`]: the emulated SMMU the Linux host's own arm-smmu-v3 driver programs; it
//!   shadows the host's stream table and command queue and goes through the service.
//! - [`soft`]: one software SMMUv3 (register file and memory structures) behind the emulated
//!   SMMU and the host tests' fake and model.

pub mod driver;
pub mod emulated;
pub mod pm;
pub mod service;
pub mod soft;
pub mod validate;
