use serde_json::json;

use crate::derive::objects::{Interface, VolumeStatus};
use crate::derive::{decode_vmi, derive_vmi, interfaces_json, primary_ip, usable_ip, volumes_json};

fn iface(ip_address: Option<&str>, ip_addresses: &[&str]) -> Interface {
    Interface {
        ip_address: ip_address.map(str::to_string),
        ip_addresses: ip_addresses.iter().map(|s| s.to_string()).collect(),
        ..Interface::default()
    }
}

#[test]
fn primary_ip_rules() {
    let cases: &[(&[Interface], Option<&str>)] = &[
        (&[], None),
        (&[iface(None, &[])], None),
        // Link-local skipped, both families.
        (
            &[iface(None, &["fe80::1", "169.254.1.1", "10.0.0.1"])],
            Some("10.0.0.1"),
        ),
        (
            &[iface(None, &["febf::1", "2001:db8::1"])],
            Some("2001:db8::1"),
        ),
        // fec0:: is outside fe80::/10.
        (&[iface(None, &["fec0::1"])], Some("fec0::1")),
        // IPv4 before IPv6 within one interface, whatever the order.
        (
            &[iface(None, &["2001:db8::1", "10.0.0.2"])],
            Some("10.0.0.2"),
        ),
        // Only IPv6: the first usable one.
        (
            &[iface(None, &["fe80::9", "2001:db8::2", "2001:db8::3"])],
            Some("2001:db8::2"),
        ),
        // First interface with a usable address wins, even if it has only IPv6.
        (
            &[
                iface(None, &["fe80::1"]),
                iface(None, &["2001:db8::5"]),
                iface(None, &["10.0.0.9"]),
            ],
            Some("2001:db8::5"),
        ),
        (
            &[iface(None, &["10.0.0.1"]), iface(None, &["10.0.0.2"])],
            Some("10.0.0.1"),
        ),
        // ipAddress alone counts.
        (&[iface(Some("192.168.1.5"), &[])], Some("192.168.1.5")),
        // ipAddress also counts next to ipAddresses.
        (
            &[iface(Some("192.168.1.6"), &["2001:db8::7"])],
            Some("192.168.1.6"),
        ),
        // Garbage, loopback and unspecified are skipped; prefixes and zones are ignored.
        (
            &[iface(
                Some("ipAddressValue"),
                &["", "x", "999.1.1.1", "127.0.0.1", "0.0.0.0", "::1", "::"],
            )],
            None,
        ),
        (
            &[iface(None, &["garbage", "10.1.2.3/24"])],
            Some("10.1.2.3"),
        ),
        (
            &[iface(None, &["fe80::1%eth0", "2001:DB8:0:0::9"])],
            Some("2001:db8::9"),
        ),
        (
            &[iface(None, &["169.254.0.1"]), iface(None, &[" 10.9.9.9 "])],
            Some("10.9.9.9"),
        ),
    ];
    for (ifaces, expected) in cases {
        assert_eq!(primary_ip(ifaces).as_deref(), *expected, "{ifaces:?}");
    }
    assert!(usable_ip("169.253.255.255").is_some());
    assert!(usable_ip("169.255.0.0").is_some());
    assert!(usable_ip("169.254.255.255").is_none());
}

#[test]
fn equal_data_gives_equal_bytes_whatever_the_input_order() {
    let a = json!({"metadata": {"namespace": "n", "name": "a", "labels": {"x": "1", "y": "2"}},
        "status": {"interfaces": [{"name": "eth", "mac": "m", "ipAddresses": ["10.0.0.1"],
                                   "interfaceName": "eth0", "infoSource": "domain"}],
                   "volumeStatus": [{"target": "vda", "name": "root", "size": 5,
                                     "persistentVolumeClaimInfo": {"claimName": "c"}}],
                   "activePods": {"b": "n2", "a": "n1"}}});
    let b = json!({"status": {"activePods": {"a": "n1", "b": "n2"},
                   "volumeStatus": [{"persistentVolumeClaimInfo": {"claimName": "c"},
                                     "size": 5, "name": "root", "target": "vda"}],
                   "interfaces": [{"infoSource": "domain", "interfaceName": "eth0",
                                   "ipAddresses": ["10.0.0.1"], "mac": "m", "name": "eth"}]},
        "metadata": {"labels": {"y": "2", "x": "1"}, "name": "a", "namespace": "n"}});
    let pa = derive_vmi(&decode_vmi(&a).unwrap()).unwrap();
    let pb = derive_vmi(&decode_vmi(&b).unwrap()).unwrap();
    assert_eq!(pa, pb);
    assert_eq!(
        pa.runtime.network_interfaces.as_deref(),
        Some(
            r#"[{"name":"eth","interfaceName":"eth0","mac":"m","ipAddresses":["10.0.0.1"],"infoSource":"domain"}]"#
        )
    );
    assert_eq!(
        pa.runtime.volume_details.as_deref(),
        Some(r#"[{"name":"root","target":"vda","phase":null,"size":5,"claim":"c"}]"#)
    );
    assert_eq!(
        pa.active_pods,
        vec![("a".into(), "n1".into()), ("b".into(), "n2".into())]
    );
}

#[test]
fn absent_values_are_null_and_empty_lists_are_none() {
    assert_eq!(interfaces_json(&[]), None);
    assert_eq!(volumes_json(&[], &[]), None);
    assert_eq!(
        interfaces_json(&[iface(Some("10.0.0.1"), &[])]).as_deref(),
        Some(
            r#"[{"name":null,"interfaceName":null,"mac":null,"ipAddresses":["10.0.0.1"],"infoSource":null}]"#
        )
    );
    assert_eq!(
        volumes_json(&[VolumeStatus::default()], &[]).as_deref(),
        Some(r#"[{"name":null,"target":null,"phase":null,"size":null,"claim":null}]"#)
    );
}
