# shellcheck shell=sh
# The start of every /init of the Linux host's test runs (sourced by host.sh and native.sh, from
# /lib/hyp-test/common.sh in the initramfs): busybox's applets, /proc, /sys, /dev, a quiet
# console for the test lines, and the test runner.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# Kernel messages would land in the middle of test lines on the console.
echo 1 > /proc/sys/kernel/printk

# run NAME COMMAND...: runs one test and prints `test NAME ... ok`, or `test NAME ... FAILED: why`
# with the command's output as the reason; $passed and $failed count them for the summary
# (`N passed, M failed`, which xtask/src/report.rs checks against the lines).
passed=0
failed=0
run() {
    name=$1
    shift
    if why=$("$@" 2>&1); then
        echo "test $name ... ok"
        passed=$((passed + 1))
    else
        echo "test $name ... FAILED: $(echo $why)"
        failed=$((failed + 1))
    fi
}
