# shellcheck shell=sh
# What the bench's two /init scripts share (sourced by bench.sh, the host's, and
# guest-bench.sh, guest1's, from /lib/hyp-test/benchlib.sh in their initramfs): the start of a
# run, the disk, the warm-up, one measured `dd` and the lines printed at the end.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp
/bin/busybox --install -s
# The virtual counter at userspace entry (the boot figure).
boot=$(icount now)
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo 1 > /proc/sys/kernel/printk
echo "linuxbench boot ${boot#cntvct } idle $(cut -d' ' -f2 /proc/uptime)"

done_() {
    echo "linuxbench done"
    icount drain
    poweroff -f
}

# wait_for_disk WHAT: /dev/vda appears within 10 s, or the run says so (with the kernel's last
# lines matching WHAT) and ends.
wait_for_disk() {
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if [ ! -b /dev/vda ]; then
        echo "linuxbench unavailable the disk did not appear (no /dev/vda; $(dmesg | grep -i -e virtio -e "$1" | tail -2 | tr '\n' ' '))"
        done_
    fi
}

# Let what the kernel defers after boot finish, then warm up (the first runs after boot pay for
# it: hundreds of millions of instructions once).
warm_up() {
    sleep 2
    dd if=/dev/vda of=/dev/null bs=4096 count="$N2" iflag=direct status=none
    dd if=/dev/zero of=/dev/vda bs=4096 count="$N2" oflag=direct status=none
}

# measure OP N: `icount run`'s line for N 4 KiB direct reads (`read`) or writes (`write`) by
# one dd, or by two at once on different blocks (`read2`, `write2`: N each).
measure() {
    case $1 in
    read)
        icount run dd if=/dev/vda of=/dev/null bs=4096 count="$2" iflag=direct status=none 2>&1 ;;
    write)
        icount run dd if=/dev/zero of=/dev/vda bs=4096 count="$2" oflag=direct status=none 2>&1 ;;
    read2)
        icount run sh -c "dd if=/dev/vda of=/dev/null bs=4096 count=$2 iflag=direct status=none & dd if=/dev/vda of=/dev/null bs=4096 count=$2 skip=$2 iflag=direct status=none & wait" 2>&1 ;;
    write2)
        icount run sh -c "dd if=/dev/zero of=/dev/vda bs=4096 count=$2 oflag=direct status=none & dd if=/dev/zero of=/dev/vda bs=4096 count=$2 seek=$2 oflag=direct status=none & wait" 2>&1 ;;
    esac
}

# Nothing is printed while measuring (console output adds its interrupts; a Linux guest's
# console traps on every byte): the lines are kept in `out` and printed at the end, one at a
# time, each sent before the next (a long burst came out cut or doubled).
out=""
print_kept() {
    echo "$out" | while read -r line; do
        [ -n "$line" ] && echo "$line" && icount drain
    done
}
