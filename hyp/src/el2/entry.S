/*
 * EL2 entry points, exception vectors and the VM entry/exit path. Everything else is Rust.
 *
 * Trap frame (struct TrapFrame in trap.rs), 272 bytes on the EL2 stack:
 *   [0, 248)   x0..x30. x0..x18 and x30 are always saved. x19..x29 are callee-saved under
 *              AAPCS64, so the Rust handlers preserve them; they are saved (and restored from the
 *              frame) for aborts (exception classes 0x20 and up), because emulating a VM's MMIO
 *              access may read or write any register, and for system-register traps (0x18: a
 *              Linux VM's SGI write names any register). Hypercalls and SMCs skip them (no
 *              handler of theirs touches them), and a CPU only ever runs its own VM: no context
 *              switch needs them.
 *   248        ELR_EL2
 *   256        SPSR_EL2
 *   264        padding
 */
.equ FRAME_SIZE, 272
.equ STACK_SIZE, 0x10000

.section .text.entry, "ax"
.global _start
_start:
    /* The boot CPU. QEMU starts it at EL2, MMU off; secondaries stay off until CPU_ON. */
    msr     daifset, #0xf
    mrs     x9, CurrentEL
    cmp     x9, #(2 << 2)
    b.ne    wrong_el
    /* Zero .bss (the stacks are not in it and need no zeroing). */
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
1:  cmp     x9, x10
    b.hs    2f
    stp     xzr, xzr, [x9], #16
    b       1b
2:  mov     x0, #0
    b       cpu_common

.global secondary_entry
secondary_entry:
    /* CPU_ON target: x0 = context id = the CPU's linear index. */
    msr     daifset, #0xf
cpu_common:
    /* Stack: top of this CPU's 64 KiB slot. */
    adrp    x9, __stacks_start
    add     x9, x9, :lo12:__stacks_start
    add     x10, x0, #1
    lsl     x10, x10, #16
    add     sp, x9, x10
    /* CPTR_EL2: no FP/SIMD traps (TFP, TTA clear); TZ and TSM (SVE, SME) set until the CPU
       enters its VM, where Rust enables what the ID registers advertise (hyp::cpufeat). */
    mov     x9, #0x33ff
    msr     cptr_el2, x9
    /* No VM on this CPU yet (vm::try_current reads this). */
    msr     tpidr_el2, xzr
    adrp    x9, el2_vectors
    add     x9, x9, :lo12:el2_vectors
    msr     vbar_el2, x9
    isb
    bl      rust_cpu_entry
wrong_el:
    wfe
    b       wrong_el

/* Vector slot: save x0/x1, pass the slot number in x0, join the common path. */
.macro VECTOR kind
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       trap_common
.endm

.section .text.vectors, "ax"
.balign 0x800
.global el2_vectors
el2_vectors:
    VECTOR 0    /* current EL, SP_EL0: synchronous */
    VECTOR 1    /* current EL, SP_EL0: IRQ */
    VECTOR 2    /* current EL, SP_EL0: FIQ */
    VECTOR 3    /* current EL, SP_EL0: SError */
    VECTOR 4    /* current EL, SP_ELx: synchronous */
    VECTOR 5    /* current EL, SP_ELx: IRQ */
    VECTOR 6    /* current EL, SP_ELx: FIQ */
    VECTOR 7    /* current EL, SP_ELx: SError */
    VECTOR 8    /* lower EL, AArch64: synchronous */
    VECTOR 9    /* lower EL, AArch64: IRQ */
    VECTOR 10   /* lower EL, AArch64: FIQ */
    VECTOR 11   /* lower EL, AArch64: SError */
    VECTOR 12   /* lower EL, AArch32: synchronous */
    VECTOR 13   /* lower EL, AArch32: IRQ */
    VECTOR 14   /* lower EL, AArch32: FIQ */
    VECTOR 15   /* lower EL, AArch32: SError */

trap_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    str     x18, [sp, #144]
    str     x30, [sp, #240]
    mrs     x9, elr_el2
    mrs     x10, spsr_el2
    stp     x9, x10, [sp, #248]
    /* An exception class from 0x20 up (ESR bit 31: aborts, where MMIO is emulated), or with
       EC bit 3 set (ESR bit 29: 0x18, MSR/MRS, whose Rt may be any register, e.g. a Linux
       host's ICC_SGI1R_EL1 write; also 0x08..0x0f and 0x19..0x1f, which read none)? Then
       x19..x29 go into the frame too. HVC (0x16) and SMC (0x17) skip them (three instructions
       on the hypercall path); IRQs leave ESR stale, which is fine either way. */
    mrs     x9, esr_el2
    tbnz    x9, #31, 2f
    tbz     x9, #29, 1f
2:  stp     x19, x20, [sp, #152]
    stp     x21, x22, [sp, #168]
    stp     x23, x24, [sp, #184]
    stp     x25, x26, [sp, #200]
    stp     x27, x28, [sp, #216]
    str     x29, [sp, #232]
    mov     x1, sp
    bl      rust_trap
    ldp     x19, x20, [sp, #152]
    ldp     x21, x22, [sp, #168]
    ldp     x23, x24, [sp, #184]
    ldp     x25, x26, [sp, #200]
    ldp     x27, x28, [sp, #216]
    ldr     x29, [sp, #232]
    b       frame_return
1:  mov     x1, sp
    bl      rust_trap
    /* fall through: return to wherever the (possibly updated) frame says */

.global frame_return
frame_return:
    ldp     x9, x10, [sp, #248]
    msr     elr_el2, x9
    msr     spsr_el2, x10
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldr     x18, [sp, #144]
    ldr     x30, [sp, #240]
    add     sp, sp, #FRAME_SIZE
    eret

/*
 * enter_vm(entry: x0, arg: x1, stack_top: x2) -> !
 * First entry into a VM: reset this CPU's EL2 stack to its top (traps from the VM build their
 * frames there), enter EL1h at `entry` with D, A, I, F masked, x0 = `arg`, every other general
 * register zero (nothing of the hypervisor's leaks into the VM).
 */
.global enter_vm
enter_vm:
    mov     sp, x2
    msr     elr_el2, x0
    mov     x9, #0x3c5
    msr     spsr_el2, x9
    mov     x0, x1
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    mov     x4, xzr
    mov     x5, xzr
    mov     x6, xzr
    mov     x7, xzr
    mov     x8, xzr
    mov     x9, xzr
    mov     x10, xzr
    mov     x11, xzr
    mov     x12, xzr
    mov     x13, xzr
    mov     x14, xzr
    mov     x15, xzr
    mov     x16, xzr
    mov     x17, xzr
    mov     x18, xzr
    mov     x19, xzr
    mov     x20, xzr
    mov     x21, xzr
    mov     x22, xzr
    mov     x23, xzr
    mov     x24, xzr
    mov     x25, xzr
    mov     x26, xzr
    mov     x27, xzr
    mov     x28, xzr
    mov     x29, xzr
    mov     x30, xzr
    eret
