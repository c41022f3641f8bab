//! Links the EL2 binary with its linker script. The image is linked at a fixed address and
//! loaded there by QEMU, so dynamic relocations (the common RUSTFLAGS build position-independent
//! code, see xtask) are applied at link time.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rerun-if-changed={dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=--apply-dynamic-relocs");
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
