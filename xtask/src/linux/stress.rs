//! The stress run's and the interactive shell's `/init` (`tests/linux/init/stress.sh`,
//! `tests/linux/init/shell.sh`) with what they expect, from the platform description.

use super::init::ScriptFacts;
use crate::initscript::{pci_dev, InitFiles, Lib, Params, COMMON};
use platform::qemu_virt::{EDU_SLOTS, HOST_DISK_SLOT, MANIFEST};

/// How long the stress run's workloads run, in seconds of the host's uptime (the vote cycle may
/// go on a little longer, until it has powered the SMMU off once).
pub const STRESS_SECONDS: u32 = 30;
/// 64 KiB blocks each disk workload cycles through (the disk has 64).
pub const STRESS_BLOCKS: u32 = 8;
/// The first block of CPU 0's and of CPU 1's region: 512 KiB and 2 MiB into the disk.
pub const STRESS_FIRST_BLOCKS: [u32; 2] = [8, 32];

const STRESS: &str = include_str!("../../../tests/linux/init/stress.sh");
const SHELL: &str = include_str!("../../../tests/linux/init/shell.sh");
/// The shell's `/etc/profile` (a prompt, an `lspci` from sysfs).
pub const PROFILE: Lib =
    Lib { name: "profile.sh", text: include_str!("../../../tests/linux/init/profile.sh") };

/// The stress run's `/init` and its parameters.
pub fn stress_files(f: &ScriptFacts) -> InitFiles {
    let cpus = MANIFEST.vms[0].cpus;
    let mut p = Params::default();
    p.set("MODULES", f.modules.join(" "))
        .set("EDU_MODULE", crate::kmod::EDU_MODULE)
        .set("KMOD", crate::kmod::MODULE)
        .set("DISK_DEV", pci_dev(HOST_DISK_SLOT))
        .set("EDU_DEV", pci_dev(EDU_SLOTS[0]))
        .set("FIRST_CPU", cpus.first)
        .set("SECOND_CPU", cpus.first + 1)
        .set("HOST_CPU_LIST", format!("{}-{}", cpus.first, cpus.end() - 1))
        .set("STRESS_SECONDS", STRESS_SECONDS)
        .set("STRESS_BLOCKS", STRESS_BLOCKS)
        .set("STRESS_FIRST_BLOCK0", STRESS_FIRST_BLOCKS[0])
        .set("STRESS_FIRST_BLOCK1", STRESS_FIRST_BLOCKS[1]);
    InitFiles { init: STRESS, libs: vec![COMMON], params: p }
}

/// The interactive shell's `/init`, its profile and its parameters.
pub fn shell_files(f: &ScriptFacts) -> InitFiles {
    let mut p = Params::default();
    p.set("MODULES", f.modules.join(" "))
        .set("EDU_MODULE", crate::kmod::EDU_MODULE)
        .set("KMOD", crate::kmod::MODULE)
        .set("DISK_DEV", pci_dev(HOST_DISK_SLOT));
    InitFiles { init: SHELL, libs: vec![COMMON, PROFILE], params: p }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stress_regions_are_apart_and_on_the_disk() {
        let [a, b] = STRESS_FIRST_BLOCKS;
        assert!(a + STRESS_BLOCKS <= b, "the two CPUs' regions overlap");
        assert!(b + STRESS_BLOCKS <= 64, "past the 4 MiB disk");
        let f = stress_files(&ScriptFacts::new(vec!["virtio_blk".into()]));
        assert_eq!(f.params.get("SECOND_CPU"), Some("1"));
        assert_eq!(f.params.get("EDU_DEV"), Some("/sys/bus/pci/devices/0000:00:02.0"));
        // Every workload is reported as a test, and the run powers off.
        for w in ["disk0", "disk1", "edu", "votes", "hotplug"] {
            assert!(STRESS.contains(&format!(" result {w}\n")), "{w}");
        }
        assert!(STRESS.ends_with("poweroff -f\n"));
        assert!(SHELL.ends_with("exec /bin/busybox init\n"));
    }
}
