//! The libvirt source against real libvirt: the test driver (`test:///default` and a
//! custom node XML), a real libvirtd with real KVM and TCG guests, and the `kubevirt`
//! locator through a fake kubelet root whose launcher socket is the test libvirtd's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::libvirtd::{self, Guest, Libvirtd};
use virtsync::config::{LibvirtConfig, Locator};
use virtsync::source::libvirt::{
    ConnState, ConnectionPool, LibvirtConnection, LibvirtError, MachinePlan, discover,
    discover_with, domain_type, domain_type_on, locate, locate_on_host, locator,
};

const NS: &str = "vstest";

fn uri_config() -> LibvirtConfig {
    LibvirtConfig {
        uri: Some(libvirtd::uri().to_owned()),
        locator: Locator::Uri,
        kubelet_root: PathBuf::from("/var/lib/kubelet"),
        socket_template: "{kubelet_root}/pods/{pod_uid}/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock".into(),
        domain_check_interval: std::time::Duration::from_secs(30),
    }
}

async fn wait_state(conn: &LibvirtConnection, want: impl Fn(&ConnState) -> bool, what: &str) {
    let mut rx = conn.state();
    tokio::time::timeout(Duration::from_secs(40), rx.wait_for(|s| want(s)))
        .await
        .unwrap_or_else(|_| panic!("state never became {what}: {:?}", *conn.state().borrow()))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_default_driver() {
    let conn = LibvirtConnection::new("test:///default");
    assert_eq!(*conn.state().borrow(), ConnState::Idle);
    conn.connect().await.unwrap();
    assert_eq!(*conn.state().borrow(), ConnState::Connected);

    assert_eq!(
        domain_type_on(&conn, "test")
            .await
            .unwrap()
            .map(|t| t.as_str()),
        Some("unknown")
    );
    assert_eq!(domain_type_on(&conn, "no-such-domain").await.unwrap(), None);

    let raw = discover(&conn).await.unwrap();
    let info = raw.node_info.as_ref().unwrap();
    assert!(info.cpus > 0 && info.memory_kib > 0, "{info:?}");
    assert!(
        raw.capabilities
            .as_ref()
            .unwrap()
            .contains("<capabilities>")
    );
    assert_eq!(raw.driver_type.as_deref(), Ok("TEST"));
    assert!(raw.lib_version.unwrap() >= 9_000_000);
    // The test driver's host is i686, with no machine configured: libvirt's default
    // machine is asked for, kvm then qemu, and both refusals are kept as the answers.
    let asked: Vec<(&str, Option<&str>)> = raw
        .domain_capabilities
        .iter()
        .map(|a| (a.virttype.as_str(), a.machine.as_deref()))
        .collect();
    assert_eq!(asked, [("kvm", None), ("qemu", None)]);
    for a in &raw.domain_capabilities {
        let unsupported = a.answer.as_ref().unwrap_err();
        assert!(unsupported.contains("not supported"), "{unsupported}");
    }
    assert_eq!(raw.guest_machine, None);
    let pools = raw.storage_pools.as_ref().unwrap();
    assert!(
        pools
            .iter()
            .any(|p| p.name == "default-pool" && p.xml.as_ref().unwrap().contains("<pool")),
        "{pools:?}"
    );
    let nets = raw.networks.as_ref().unwrap();
    assert!(nets.iter().any(|n| n.name == "default"), "{nets:?}");
    // libvirt 9.0's test driver answers the PCI listing with an empty list.
    assert!(raw.pci_devices.as_ref().is_ok_and(|d| d.is_empty()) || raw.pci_devices.is_err());

    // The unsupported call itself is an error with the driver's reason, not a panic.
    let err = conn
        .call_rw(|c| c.domain_capabilities(None, None, None, Some("kvm"), 0))
        .await
        .unwrap_err();
    assert!(err.is_unsupported(), "{err:?}");
    assert!(matches!(
        err,
        LibvirtError::Call {
            connection_lost: false,
            ..
        }
    ));
    assert_eq!(*conn.state().borrow(), ConnState::Connected);
    conn.close().await.unwrap();
    assert!(matches!(
        conn.connect().await,
        Err(LibvirtError::Disconnected { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_test_driver_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node.xml");
    let domain = |t: &str, name: &str, extra: &str| {
        format!(
            "<domain type='{t}'><name>{name}</name><memory>65536</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64'>hvm</type></os>{extra}</domain>"
        )
    };
    std::fs::write(
        &node,
        format!(
            "<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\
             <cpu><mhz>2600</mhz><model>x86_64</model><active>2</active><max>2</max>\
             <nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads></cpu>\
             <memory>8349900</memory>{}{}</node>",
            domain("kvm", "ns_kvm-vm", ""),
            domain("qemu", "ns_tcg-vm", ""),
        ),
    )
    .unwrap();
    let uri = format!("test://{}", node.display());
    let pool = ConnectionPool::new();
    let loc = |name: &str| {
        let mut c = uri_config();
        c.uri = Some(uri.clone());
        locate(&c, "me", "ns", name, &[], None, |_| false).unwrap()
    };
    assert_eq!(
        domain_type(&pool, &loc("kvm-vm"))
            .await
            .unwrap()
            .map(|t| t.as_str()),
        Some("kvm")
    );
    assert_eq!(
        domain_type(&pool, &loc("tcg-vm"))
            .await
            .unwrap()
            .map(|t| t.as_str()),
        Some("qemu-tcg")
    );
    assert_eq!(domain_type(&pool, &loc("absent")).await.unwrap(), None);
    assert_eq!(pool.uris(), vec![uri.clone()]);
    let info = discover(&pool.get(&uri)).await.unwrap().node_info.unwrap();
    assert_eq!((info.cpus, info.mhz, info.memory_kib), (2, 2600, 8349900));
    pool.close_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_guests_kvm_and_tcg_in_uri_mode() {
    let _lock = Libvirtd::read().await;
    let kvm_name = libvirtd::unique("kvm");
    let tcg_name = libvirtd::unique("tcg");
    let t = Instant::now();
    let _kvm = Guest::create("kvm", &format!("{NS}_{kvm_name}"));
    let mut tcg = Guest::create("qemu", &format!("{NS}_{tcg_name}"));
    eprintln!("two guests created in {:?}", t.elapsed());

    let pool = ConnectionPool::new();
    let config = uri_config();
    let kvm_loc = locate(&config, "me", NS, &kvm_name, &[], None, |_| false).unwrap();
    let tcg_loc = locate(&config, "me", NS, &tcg_name, &[], None, |_| false).unwrap();
    assert_eq!(
        domain_type(&pool, &kvm_loc)
            .await
            .unwrap()
            .map(|t| t.as_str()),
        Some("kvm")
    );
    assert_eq!(
        domain_type(&pool, &tcg_loc)
            .await
            .unwrap()
            .map(|t| t.as_str()),
        Some("qemu-tcg")
    );

    let t = Instant::now();
    tcg.destroy();
    eprintln!("destroy took {:?}", t.elapsed());
    assert_eq!(
        domain_type(&pool, &tcg_loc).await.unwrap(),
        None,
        "destroyed guest still found"
    );
    assert_eq!(
        domain_type(&pool, &kvm_loc)
            .await
            .unwrap()
            .map(|t| t.as_str()),
        Some("kvm")
    );
    pool.close_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_libvirtd_restart() {
    let _lock = Libvirtd::write().await;
    let name = libvirtd::unique("restart");
    let _guest = Guest::create("kvm", &format!("{NS}_{name}"));
    let conn = LibvirtConnection::new(libvirtd::uri());
    let dom = format!("{NS}_{name}");
    assert_eq!(
        domain_type_on(&conn, &dom)
            .await
            .unwrap()
            .map(|t| t.as_str()),
        Some("kvm")
    );
    assert_eq!(*conn.state().borrow(), ConnState::Connected);

    Libvirtd::kill();
    let killed = Instant::now();
    let err = domain_type_on(&conn, &dom).await.unwrap_err();
    assert!(
        matches!(
            err,
            LibvirtError::Call {
                connection_lost: true,
                ..
            } | LibvirtError::Disconnected { .. }
        ),
        "{err:?}"
    );
    wait_state(
        &conn,
        |s| matches!(s, ConnState::Disconnected(_)),
        "Disconnected",
    )
    .await;
    // While it is down, calls fail at once.
    let t = Instant::now();
    assert!(matches!(
        domain_type_on(&conn, &dom).await,
        Err(LibvirtError::Disconnected { .. })
    ));
    assert!(t.elapsed() < Duration::from_secs(1));

    Libvirtd::start();
    let started = Instant::now();
    eprintln!("libvirtd down for {:?}", started - killed);
    wait_state(&conn, |s| *s == ConnState::Connected, "Connected").await;
    eprintln!(
        "reconnected {:?} after libvirtd answered",
        started.elapsed()
    );
    assert_eq!(
        domain_type_on(&conn, &dom)
            .await
            .unwrap()
            .map(|t| t.as_str()),
        Some("kvm")
    );
    conn.close().await.unwrap();
}

fn symlink_socket(root: &Path, pod_uid: &str, file: &str, target: &Path) {
    let dir = root.join(format!(
        "pods/{pod_uid}/volumes/kubernetes.io~empty-dir/libvirt-runtime"
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(target, dir.join(file)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubevirt_locator_through_fake_kubelet_root() {
    let _lock = Libvirtd::read().await;
    let root = tempfile::tempdir().unwrap();
    let this_pod = "1f0c7c4e-0000-4000-8000-000000000001";
    let other_pod = "1f0c7c4e-0000-4000-8000-000000000002";
    let legacy_pod = "1f0c7c4e-0000-4000-8000-000000000003";
    symlink_socket(
        root.path(),
        this_pod,
        locator::CURRENT_SOCKET_NAME,
        libvirtd::socket(),
    );
    symlink_socket(
        root.path(),
        other_pod,
        locator::CURRENT_SOCKET_NAME,
        Path::new("/nonexistent/sock"),
    );
    symlink_socket(
        root.path(),
        legacy_pod,
        locator::LEGACY_SOCKET_NAME,
        libvirtd::socket(),
    );

    let name = libvirtd::unique("kv");
    let _guest = Guest::create("kvm", &format!("{NS}_{name}"));
    let config = LibvirtConfig {
        uri: None,
        locator: Locator::Kubevirt,
        kubelet_root: root.path().to_path_buf(),
        ..uri_config()
    };
    let pool = ConnectionPool::new();
    let pods = vec![
        (other_pod.to_owned(), "node-b".to_owned()),
        (this_pod.to_owned(), "node-a".to_owned()),
    ];
    let links = tempfile::tempdir().unwrap();
    let loc = locate_on_host(&config, "node-a", NS, &name, &pods, Some(0), links.path()).unwrap();
    let socket = root.path().join(format!(
        "pods/{this_pod}/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock"
    ));
    assert_eq!(loc.socket.as_deref(), Some(socket.as_path()));
    // Real kubelet socket paths exceed a unix socket address (108 bytes): the URI names a
    // short symlink to the socket instead.
    assert!(socket.as_os_str().len() > locator::MAX_SOCKET_PATH);
    let link = std::fs::read_dir(links.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(std::fs::read_link(&link).unwrap(), socket);
    assert_eq!(
        loc.uri,
        format!("qemu+unix:///system?socket={}", link.display())
    );
    let pure = locate(
        &config,
        "node-a",
        NS,
        &name,
        &pods,
        Some(0),
        locator::socket_exists,
    )
    .unwrap();
    assert_eq!(
        pure.uri,
        format!("qemu+unix:///system?socket={}", socket.display())
    );
    assert_eq!(loc.domain, format!("{NS}_{name}"));
    assert_eq!(
        domain_type(&pool, &loc).await.unwrap().map(|t| t.as_str()),
        Some("kvm")
    );

    // A non-root launcher gets a session URI (not served by this system daemon).
    let loc107 = locate(
        &config,
        "node-a",
        NS,
        &name,
        &pods,
        Some(107),
        locator::socket_exists,
    )
    .unwrap();
    assert!(
        loc107.uri.starts_with("qemu+unix:///session?socket="),
        "{}",
        loc107.uri
    );

    // The other node's pod: its socket is dangling, and a node with no pod is an error.
    let err = locate(
        &config,
        "node-b",
        NS,
        &name,
        &pods,
        Some(0),
        locator::socket_exists,
    )
    .unwrap_err();
    assert!(err.to_string().contains(other_pod), "{err}");
    let err = locate(
        &config,
        "node-c",
        NS,
        &name,
        &pods,
        Some(0),
        locator::socket_exists,
    )
    .unwrap_err();
    assert!(err.to_string().contains("no active pod"), "{err}");

    // Older launchers: libvirt-sock.
    let legacy = vec![(legacy_pod.to_owned(), "node-a".to_owned())];
    let loc = locate_on_host(&config, "node-a", NS, &name, &legacy, None, links.path()).unwrap();
    assert!(
        loc.socket
            .as_ref()
            .unwrap()
            .ends_with("libvirt-runtime/libvirt-sock"),
        "{loc:?}"
    );
    assert_eq!(
        domain_type(&pool, &loc).await.unwrap().map(|t| t.as_str()),
        Some("kvm")
    );
    assert_eq!(pool.uris().len(), 2);
    pool.close_all().await.unwrap();
}

/// `virsh -c <the test libvirtd> ARGS`, its stdout.
fn virsh(args: &[&str]) -> String {
    let out = std::process::Command::new("virsh")
        .args(["-c", libvirtd::uri()])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "virsh {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The text between the first `open` after `from` and the next `close`.
fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(&text[start..start + len])
}

/// The `<value>`s of the first `<enum name='NAME'>` in `text`.
fn enum_values(text: &str, name: &str) -> Vec<String> {
    between(text, &format!("<enum name='{name}'>"), "</enum>")
        .map(|values| {
            values
                .split("<value>")
                .skip(1)
                .filter_map(|v| v.split_once("</value>").map(|(v, _)| v.trim().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// What a domcapabilities document says, read from virsh's text without the parser.
#[derive(Debug)]
struct VirshFacts {
    /// `<machine>`: the canonical machine.
    machine: String,
    /// `<vcpu max>`.
    vcpus: Option<u32>,
    /// The loader's `secure` enum: secure boot when it holds `yes`.
    secure_boot: bool,
    /// The disk `bus` enum.
    disk_buses: Vec<String>,
    /// `<sev supported>`, `<sgx supported>`, `<tpm supported>`: `None` without the
    /// element.
    sev: Option<bool>,
    sgx: Option<bool>,
    tpm: Option<bool>,
    /// A `<launchSecurity>` element is there (libvirt 9.0 has none).
    launch_security: bool,
    /// A `<tdx>` element is there.
    tdx: bool,
}

/// `supported='yes'|'no'` of the first `<TAG supported=…>`; `None` without one.
fn supported_of(domcaps: &str, tag: &str) -> Option<bool> {
    match between(domcaps, &format!("<{tag} supported='"), "'")? {
        "yes" => Some(true),
        "no" => Some(false),
        other => panic!("<{tag} supported='{other}'>"),
    }
}

fn virsh_facts(domcaps: &str) -> VirshFacts {
    VirshFacts {
        machine: between(domcaps, "<machine>", "</machine>")
            .unwrap()
            .to_owned(),
        vcpus: between(domcaps, "<vcpu max='", "'").map(|v| v.parse().unwrap()),
        secure_boot: between(domcaps, "<loader", "</loader>")
            .is_some_and(|loader| enum_values(loader, "secure").contains(&"yes".to_owned())),
        disk_buses: between(domcaps, "<disk supported='yes'>", "</disk>")
            .map(|disk| enum_values(disk, "bus"))
            .unwrap_or_default(),
        sev: supported_of(domcaps, "sev"),
        sgx: supported_of(domcaps, "sgx"),
        tpm: supported_of(domcaps, "tpm"),
        launch_security: domcaps.contains("<launchSecurity"),
        tdx: domcaps.contains("<tdx"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_on_real_libvirtd() {
    let _lock = Libvirtd::read().await;
    let conn = LibvirtConnection::new(libvirtd::uri());
    let t = Instant::now();
    let raw = discover(&conn).await.unwrap();
    eprintln!("discovery took {:?}", t.elapsed());
    assert!(
        raw.capabilities
            .as_ref()
            .unwrap()
            .contains("<capabilities>")
    );
    // The default configuration on x86_64: q35, kvm then qemu.
    assert_eq!(raw.guest_machine.as_deref(), Some("q35"));
    let asked: Vec<(&str, Option<&str>)> = raw
        .domain_capabilities
        .iter()
        .map(|a| (a.virttype.as_str(), a.machine.as_deref()))
        .collect();
    assert_eq!(asked, [("kvm", Some("q35")), ("qemu", Some("q35"))]);
    let kvm = raw.domain_capabilities[0].answer.as_ref().unwrap();
    assert!(kvm.contains("<domain>kvm</domain>"), "{kvm}");
    assert!(kvm.contains("<machine>pc-q35-"), "{kvm}");
    let qemu = raw.domain_capabilities[1].answer.as_ref().unwrap();
    assert!(qemu.contains("<domain>qemu</domain>"), "{qemu}");
    let info = raw.node_info.as_ref().unwrap();
    assert!(info.cpus > 0 && info.memory_kib > 0, "{info:?}");
    assert_eq!(raw.driver_type.as_deref(), Ok("QEMU"));
    assert!(*raw.hypervisor_version.as_ref().unwrap() > 0);
    assert!(!raw.hostname.as_ref().unwrap().is_empty());
    assert!(raw.storage_pools.is_ok(), "{:?}", raw.storage_pools);
    assert!(raw.networks.is_ok(), "{:?}", raw.networks);
    // The host's sysfs files, as read here (or the error).
    assert_eq!(
        raw.host_files.ksm_run,
        std::fs::read_to_string("/sys/kernel/mm/ksm/run").map_err(|e| e.to_string())
    );
    assert_eq!(
        raw.host_files.kvm_intel_nested,
        std::fs::read_to_string("/sys/module/kvm_intel/parameters/nested")
            .map_err(|e| e.to_string())
    );
    eprintln!(
        "pci devices: {:?}",
        raw.pci_devices.as_ref().map(|v| v.len())
    );
    conn.close().await.unwrap();

    // The groups hold what `virsh capabilities` / `virsh domcapabilities` report for the
    // same host: the same builder fed virsh's documents gives the same result.
    let from_api = virtsync::derive::caps::build_capabilities(&raw.clone().into_input());
    let mut input = raw.into_input();
    input.capabilities = Ok(virsh(&["capabilities"]));
    for a in &mut input.domcaps {
        a.answer = Ok(virsh(&[
            "domcapabilities",
            "--arch",
            "x86_64",
            "--machine",
            "q35",
            "--virttype",
            &a.virttype,
        ]));
    }
    let from_virsh = virtsync::derive::caps::build_capabilities(&input);
    assert_eq!(from_api, from_virsh);
    assert!(from_api.cpu_info.arch.is_some() && from_api.cpu_info.topology.is_some());
    assert!(
        !from_api.cpu_info.usable_models.is_empty(),
        "kvm host-usable CPU models"
    );
    eprintln!("capabilities: {}", from_api.to_canonical_json());

    // Free 2 MiB pages of cell 0 (`virNodeGetFreePages`): what `virsh freepages` says
    // (hugepages move only when guests take them), at most the cell's 2 MiB pages as
    // `virsh capabilities` counts them. The base 4 KiB pages get no free count: it moves
    // every second and would change the capabilities' fingerprint at every discovery.
    // Read from virsh's text, not parsed.
    let caps_text = virsh(&["capabilities"]);
    let cell0 = between(&caps_text, "<cell id='0'>", "</cell>").expect("NUMA cell 0");
    let count: u64 = between(cell0, "<pages unit='KiB' size='2048'>", "</pages>")
        .expect("cell 0's 2 MiB pages")
        .trim()
        .parse()
        .unwrap();
    let freepages = virsh(&["freepages", "--cellno", "0", "--pagesize", "2048"]);
    let virsh_free: u64 = freepages
        .lines()
        .find_map(|l| l.trim().strip_prefix("2048KiB:"))
        .unwrap_or_else(|| panic!("virsh freepages: {freepages:?}"))
        .trim()
        .parse()
        .unwrap();
    let asked = from_api
        .cpu_info
        .numa_cells
        .iter()
        .find(|c| c.id == 0)
        .unwrap();
    let page = |size: u64| asked.pages.iter().find(|p| p.size_kib == size).unwrap();
    eprintln!(
        "cell 0, 2 MiB pages: {:?} free of {count} (virsh freepages: {virsh_free})",
        page(2048).free
    );
    assert_eq!(page(2048).count, count);
    assert_eq!(page(2048).free, Some(virsh_free));
    assert!(virsh_free <= count);
    assert_eq!(
        page(4).free,
        None,
        "the base pages' free count moves every second"
    );
    assert!(
        !from_api
            .memory_info
            .status
            .reasons
            .iter()
            .any(|r| r.starts_with("free pages")),
        "{:?}",
        from_api.memory_info.status
    );
}

/// The guests' machine on this host is q35 (libvirt's default machine, asked without
/// one, is pc), and its values are what `virsh domcapabilities --machine q35` says, read
/// from virsh's text without the parser. A VMI's machine type comes first; a machine
/// libvirt does not know is a recorded refusal, not a failed discovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_names_the_guests_machine() {
    let _lock = Libvirtd::read().await;
    // /dev/kvm is here (the other tests run kvm guests): kvm describes the guests.
    assert!(
        Path::new("/dev/kvm").exists(),
        "the libvirt tests need /dev/kvm"
    );
    let virttype = "kvm";
    let conn = LibvirtConnection::new(libvirtd::uri());
    let raw = discover(&conn).await.unwrap();
    let caps = virtsync::derive::caps::build_capabilities(&raw.into_input());
    let q35 = virsh(&[
        "domcapabilities",
        "--machine",
        "q35",
        "--virttype",
        virttype,
    ]);
    let q35 = virsh_facts(&q35);
    let default = virsh_facts(&virsh(&["domcapabilities", "--virttype", virttype]));
    eprintln!("virsh, machine q35: {q35:?}; default machine: {default:?}");
    assert!(q35.machine.starts_with("pc-q35-"), "{q35:?}");
    assert!(default.machine.starts_with("pc-i440fx-"), "{default:?}");
    // What the machine changes: q35 has no IDE, i440fx has.
    let ide = "ide".to_owned();
    assert!(!q35.disk_buses.contains(&ide) && default.disk_buses.contains(&ide));
    let guest = caps.virt_info.guest_machine.as_ref().unwrap();
    assert_eq!(guest.name, "q35");
    assert_eq!(guest.canonical.as_deref(), Some(q35.machine.as_str()));
    assert_eq!(guest.virttype, virttype);
    assert_eq!(
        caps.security_info.secure_boot,
        Some(q35.secure_boot),
        "secure boot of q35"
    );
    assert_eq!(caps.virt_info.max_vcpus, q35.vcpus);
    assert_eq!(caps.storage_info.disk_buses, q35.disk_buses);
    // SEV, SGX, TPM as the document states them; SEV-SNP and TDX null when it has no
    // element for them (libvirt 9.0 has no <launchSecurity>), never false.
    let s = &caps.security_info;
    assert_eq!(s.sgx.supported, q35.sgx, "sgx of q35");
    assert_eq!(s.tpm.supported, q35.tpm, "tpm of q35");
    if q35.sev.is_some() {
        assert_eq!(s.sev.supported, q35.sev, "sev of q35");
    }
    if !q35.launch_security {
        assert_eq!(s.sev.snp, None, "sev-snp without <launchSecurity>");
        if !q35.tdx {
            assert_eq!(s.tdx, None, "tdx without <launchSecurity> or <tdx>");
        }
    }
    let m = caps
        .virt_info
        .machines
        .iter()
        .find(|m| m.machine == "q35" && m.virttype == virttype)
        .unwrap();
    assert_eq!(m.canonical.as_deref(), Some(q35.machine.as_str()));
    assert_eq!(m.secure_boot, Some(q35.secure_boot));
    assert_eq!(m.max_vcpus, q35.vcpus);
    assert_eq!(m.disk_buses, q35.disk_buses);
    eprintln!(
        "reported: guest machine {guest:?}, secure boot {:?}, max vCPUs {:?}, disk buses {:?}",
        caps.security_info.secure_boot, caps.virt_info.max_vcpus, m.disk_buses
    );

    // VMIs on this node run a machine libvirt does not know and pc: both are asked (the
    // unknown one is its refusal, kept), pc describes the guests; q35 is still asked.
    let plan = MachinePlan {
        running: vec!["no-such-machine".into(), "pc".into()],
        ..MachinePlan::defaults()
    };
    let raw = discover_with(&conn, &plan).await.unwrap();
    let asked: Vec<(&str, Option<&str>, bool)> = raw
        .domain_capabilities
        .iter()
        .map(|a| (a.virttype.as_str(), a.machine.as_deref(), a.answer.is_ok()))
        .collect();
    assert_eq!(
        asked,
        [
            ("kvm", Some("no-such-machine"), false),
            ("qemu", Some("no-such-machine"), false),
            ("kvm", Some("pc"), true),
            ("qemu", Some("pc"), true),
            ("kvm", Some("q35"), true),
            ("qemu", Some("q35"), true),
        ]
    );
    let refused = raw.domain_capabilities[0].answer.as_ref().unwrap_err();
    assert!(refused.contains("no-such-machine"), "{refused}");
    assert_eq!(raw.guest_machine.as_deref(), Some("pc"));
    let caps = virtsync::derive::caps::build_capabilities(&raw.into_input());
    let guest = caps.virt_info.guest_machine.as_ref().unwrap();
    assert_eq!(
        (guest.name.as_str(), guest.canonical.as_deref()),
        ("pc", Some(default.machine.as_str()))
    );
    assert_eq!(caps.security_info.secure_boot, Some(default.secure_boot));
    assert_eq!(caps.virt_info.max_vcpus, default.vcpus);
    assert_eq!(caps.storage_info.disk_buses, default.disk_buses);
    let unknown = caps
        .virt_info
        .machines
        .iter()
        .find(|m| m.machine == "no-such-machine" && m.virttype == "kvm")
        .unwrap();
    assert_eq!(
        serde_json::to_value(&unknown.status).unwrap()["state"],
        "unavailable",
        "{unknown:?}"
    );
    conn.close().await.unwrap();
}
