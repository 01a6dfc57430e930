static EBPF: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor-ebpf"));
static EBPF_COMPAT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor-ebpf-compat"));
fn main() {
    println!("{} {}", EBPF.len(), EBPF_COMPAT.len());
}
