//! VM JSON → record: never a panic; deterministic; cpu_count never 0.
#![no_main]
use libfuzzer_sys::{Corpus, fuzz_target};
use virtsync::derive::{VmInput, VmiInput, decode_vm_slice, derive_vm, observe};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(vm) = decode_vm_slice(data) else {
        return Corpus::Reject;
    };
    let Ok(part) = derive_vm(&vm) else {
        return Corpus::Reject;
    };
    assert_eq!(derive_vm(&vm).ok().as_ref(), Some(&part), "derive is not deterministic");
    let a = observe(&part.key, VmInput::Present(&part), VmiInput::Unknown, None);
    assert_ne!(a.record.cpu_count, Some(0), "cpu_count 0");
    let b = observe(&part.key, VmInput::Present(&part), VmiInput::Unknown, Some(&a));
    assert_eq!(a.record, b.record);
    Corpus::Keep
});
