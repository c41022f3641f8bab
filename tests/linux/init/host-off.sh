#!/bin/sh
# /init of the Linux host in `cargo xtask bench`'s guest run: it powers off at once (PSCI
# SYSTEM_OFF stops the host alone), so that guest1, whose I/O is measured, runs alone (as the
# hypercall bench's other VMs power off first). Its lines are kept out of the bench's: it prints
# nothing.
/bin/busybox poweroff -f
