//! VMI JSON → record: never a panic; deriving twice gives the same record; a derived
//! cpu_count is never 0.
#![no_main]
use libfuzzer_sys::{Corpus, fuzz_target};
use virtsync::derive::{VmInput, VmiInput, decode_vmi_slice, derive_vmi, observe};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(vmi) = decode_vmi_slice(data) else {
        return Corpus::Reject;
    };
    let Ok(part) = derive_vmi(&vmi) else {
        return Corpus::Reject;
    };
    assert_eq!(derive_vmi(&vmi).ok().as_ref(), Some(&part), "derive is not deterministic");
    assert_ne!(part.cpu_count, Some(0), "cpu_count 0");
    let a = observe(&part.key, VmInput::Unknown, VmiInput::Present(&part), None);
    let b = observe(&part.key, VmInput::Unknown, VmiInput::Present(&part), Some(&a));
    assert_eq!(a.record, b.record, "observing the same VMI again changed the record");
    Corpus::Keep
});
