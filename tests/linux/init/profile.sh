# shellcheck shell=sh
# The shell's /etc/profile (`cargo xtask run --host linux --shell`): a prompt and what busybox
# lacks.
PS1='host:\w# '
export PS1
# busybox-static has no lspci: the same facts from sysfs (slot, class, vendor:device, driver,
# IOMMU group).
lspci() {
    for d in /sys/bus/pci/devices/*; do
        drv=$(readlink "$d/driver")
        grp=$(readlink "$d/iommu_group")
        echo "${d##*/0000:} class $(cat "$d/class") $(cat "$d/vendor"):$(cat "$d/device") driver ${drv##*/} iommu_group ${grp##*/}"
    done
}
