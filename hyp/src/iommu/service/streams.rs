//! Which VM owns which stream, and the translation domain each stream is attached to.

use crate::iommu::driver::ste::Domain;
use alloc::vec::Vec;
use platform::Manifest;

/// One assigned stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    /// Stream ID (the PCI requester ID on `virt`).
    pub sid: u32,
    /// The owning VM.
    pub vm: u32,
    /// What it is attached to.
    pub domain: Domain,
    /// Its place among its owner's streams (in the order they were assigned): which shadow CD
    /// table of the owner's is its.
    pub slot: u32,
}

/// Every assigned stream, sorted by stream ID, and how many are attached to something other
/// than `Blocked` (kept as a count: power paths read it and must not scan).
#[derive(Clone, Debug, Default)]
pub struct Streams {
    list: Vec<Stream>,
    attached: usize,
}

impl Streams {
    /// The streams of every PCI function the manifest assigns, all blocked.
    pub fn from_manifest(manifest: &Manifest) -> Self {
        let mut s = Streams::default();
        for vm in manifest.vms {
            for d in vm.devices {
                s.add(vm.id, d.rid());
            }
        }
        s
    }

    /// Assigns stream `sid` (blocked) to `vm`. A stream already assigned keeps its owner.
    pub fn add(&mut self, vm: u32, sid: u32) {
        if let Err(i) = self.index(sid) {
            let slot = self.list.iter().filter(|s| s.vm == vm).count() as u32;
            self.list.insert(i, Stream { sid, vm, domain: Domain::Blocked, slot });
        }
    }

    fn index(&self, sid: u32) -> Result<usize, usize> {
        self.list.binary_search_by_key(&sid, |s| s.sid)
    }

    /// The stream `sid`, if assigned.
    pub fn get(&self, sid: u32) -> Option<&Stream> {
        self.index(sid).ok().map(|i| &self.list[i])
    }

    /// The index of stream `sid` if `vm` owns it.
    pub fn owned(&self, vm: u32, sid: u32) -> Option<usize> {
        self.index(sid).ok().filter(|&i| self.list[i].vm == vm)
    }

    /// Whether `vm` owns stream `sid`.
    pub fn owns(&self, vm: u32, sid: u32) -> bool {
        self.owned(vm, sid).is_some()
    }

    /// The stream at `index` (from [`Streams::owned`]).
    pub fn at(&self, index: usize) -> &Stream {
        &self.list[index]
    }

    /// Records the domain of the stream at `index`.
    pub fn set_domain(&mut self, index: usize, d: Domain) {
        let s = &mut self.list[index];
        let was = s.domain != Domain::Blocked;
        let is = d != Domain::Blocked;
        self.attached = self.attached + is as usize - was as usize;
        s.domain = d;
    }

    /// The stream IDs `vm` owns.
    pub fn of_vm(&self, vm: u32) -> impl Iterator<Item = u32> + '_ {
        self.list.iter().filter(move |s| s.vm == vm).map(|s| s.sid)
    }

    /// Streams attached to something other than `Blocked`.
    pub fn attached(&self) -> usize {
        self.attached
    }

    /// Streams assigned (each can issue DMA once its device masters the bus).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether no stream is assigned.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Bit `vm` set for every VM with at least one stream not blocked (those whose devices can
    /// make the SMMU record events).
    pub fn vms_with_attached(&self) -> u64 {
        if self.attached == 0 {
            return 0;
        }
        self.list
            .iter()
            .filter(|s| s.domain != Domain::Blocked)
            .fold(0, |m, s| m | 1 << (s.vm % 64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::qemu_virt::MANIFEST;

    #[test]
    fn ownership_lookup_and_attached_count() {
        let mut s = Streams::from_manifest(&MANIFEST);
        let [h, g1, g2] = [0, 1, 2].map(|i| MANIFEST.vms[i].devices[0].rid());
        assert_eq!(s.len(), MANIFEST.vms.iter().map(|v| v.devices.len()).sum::<usize>());
        assert!(s.owns(0, h) && s.owns(1, g1) && s.owns(2, g2));
        assert!(!s.owns(1, h) && !s.owns(0, g1) && !s.owns(0, 0x7777));
        assert_eq!(s.get(g2).map(|x| x.vm), Some(2));
        s.add(0, 0x1005);
        s.add(0, 0x1001);
        s.add(2, 0x1001);
        assert_eq!(s.get(0x1001).unwrap().vm, 0, "the first owner stays");
        // Shadow CD slots: the order of assignment within each VM.
        let n = MANIFEST.vms[0].devices.len() as u32;
        assert_eq!(s.get(h).unwrap().slot, 0);
        assert_eq!((s.get(0x1005).unwrap().slot, s.get(0x1001).unwrap().slot), (n, n + 1));
        assert_eq!((s.get(g1).unwrap().slot, s.get(g2).unwrap().slot), (0, 0));
        let mut host: std::vec::Vec<u32> =
            MANIFEST.vms[0].devices.iter().map(|d| d.rid()).collect();
        host.extend([0x1001, 0x1005]);
        assert_eq!(s.of_vm(0).collect::<std::vec::Vec<_>>(), host);
        let i = s.owned(1, g1).unwrap();
        s.set_domain(i, Domain::Identity);
        s.set_domain(i, Domain::Identity);
        assert_eq!(s.attached(), 1);
        assert_eq!(s.vms_with_attached(), 0b10);
        // Two attached streams of one VM: still that VM's one bit.
        let j = s.owned(0, 0x1001).unwrap();
        let k = s.owned(0, 0x1005).unwrap();
        s.set_domain(j, Domain::Identity);
        s.set_domain(k, Domain::Identity);
        assert_eq!(s.vms_with_attached(), 0b11);
        s.set_domain(j, Domain::Blocked);
        s.set_domain(k, Domain::Blocked);
        s.set_domain(i, Domain::Blocked);
        assert_eq!((s.attached(), s.vms_with_attached()), (0, 0));
        assert_eq!(s.at(i).domain, Domain::Blocked);
        assert!(!s.is_empty() && Streams::default().is_empty());
    }
}
