/*
 * Guest entry, self-relocation, EL1 exception vectors and the fault probes.
 * Entered at EL1h, MMU off, x0 = IPA of the hypervisor's BootInfo, PC = image base.
 */
.section .text.entry, "ax"
.global _start
_start:
    mov     x19, x0
    adr     x20, _start                 /* runtime base; the image is linked at 0 */
    adrp    x9, __stack_top
    add     x9, x9, :lo12:__stack_top
    mov     sp, x9
    /* Zero .bss. */
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
1:  cmp     x9, x10
    b.hs    2f
    stp     xzr, xzr, [x9], #16
    b       1b
    /* Apply R_AARCH64_RELATIVE (1027): *(base + offset) = base + addend. */
2:  adrp    x9, __rela_start
    add     x9, x9, :lo12:__rela_start
    adrp    x10, __rela_end
    add     x10, x10, :lo12:__rela_end
3:  cmp     x9, x10
    b.hs    5f
    ldp     x11, x12, [x9], #16
    ldr     x13, [x9], #8
    and     x12, x12, #0xffffffff
    cmp     x12, #1027
    b.ne    4f
    add     x13, x13, x20
    str     x13, [x20, x11]
    b       3b
4:  /* Any other relocation type cannot be handled: stop here (a build problem). */
    wfe
    b       4b
5:  adrp    x9, guest_vectors
    add     x9, x9, :lo12:guest_vectors
    msr     vbar_el1, x9
    isb
    mov     x0, x19
    bl      guest_main
6:  wfe
    b       6b

/*
 * Exception vectors. Every slot saves the full frame and calls
 * guest_exception(kind, frame); the Rust side may change the saved ELR to resume elsewhere.
 * Frame: x0..x30 at [0, 248), ELR_EL1 at 248, SPSR_EL1 at 256, 272 bytes.
 */
.macro VECTOR kind
    .balign 0x80
    sub     sp, sp, #272
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       vector_common
.endm

.section .text.vectors, "ax"
.balign 0x800
.global guest_vectors
guest_vectors:
    VECTOR 0
    VECTOR 1
    VECTOR 2
    VECTOR 3
    VECTOR 4
    VECTOR 5
    VECTOR 6
    VECTOR 7
    VECTOR 8
    VECTOR 9
    VECTOR 10
    VECTOR 11
    VECTOR 12
    VECTOR 13
    VECTOR 14
    VECTOR 15

vector_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    str     x30, [sp, #240]
    mrs     x9, elr_el1
    mrs     x10, spsr_el1
    stp     x9, x10, [sp, #248]
    mov     x1, sp
    bl      guest_exception
    ldp     x9, x10, [sp, #248]
    msr     elr_el1, x9
    msr     spsr_el1, x10
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    add     sp, sp, #272
    eret

/*
 * Probes: one load or store at a known address. If it faults, the exception handler records
 * the fault and resumes at the instruction after it (the `ret`).
 */
.section .text.probe, "ax"
.global probe_read64
.global probe_read64_insn
probe_read64:
probe_read64_insn:
    ldr     x0, [x0]
    ret

.global probe_write64
.global probe_write64_insn
probe_write64:
probe_write64_insn:
    str     x1, [x0]
    ret

/* An SGI write (ICC_SGI1R_EL1 = x0), which traps to the hypervisor (IMO/FMO are set). */
.global probe_sgi1r
.global probe_sgi1r_insn
probe_sgi1r:
probe_sgi1r_insn:
    msr     s3_0_c12_c11_5, x0
    ret
