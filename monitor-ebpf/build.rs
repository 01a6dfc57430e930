//! Rebuild the BPF objects when the linker changes (aya-template).
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run scripts/setup.sh"),
    }
}
