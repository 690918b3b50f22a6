//! Domain XML → hypervisor type: never a panic; only kvm, qemu-tcg or unknown.
#![no_main]
use libfuzzer_sys::{Corpus, fuzz_target};
use virtsync::derive::caps::hypervisor_type;

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    let t = hypervisor_type(text).as_str();
    assert!(matches!(t, "kvm" | "qemu-tcg" | "unknown"), "{t}");
    Corpus::Keep
});
