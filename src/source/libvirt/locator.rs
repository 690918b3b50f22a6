//! The domain locator (docs/ARCHITECTURE.md, "Sources"): how a VMI finds its libvirt domain.
//!
//! - `uri` mode: one configured URI; the domain is named `<namespace>_<name>`.
//! - `kubevirt` mode: the domain lives inside the VMI's virt-launcher pod. The
//!   `status.activePods` entry whose node is this node names the pod; its libvirt socket
//!   is `socket_template` with `{kubelet_root}` and `{pod_uid}` filled in (older KubeVirt:
//!   `libvirt-sock` instead of `virtqemud-sock` in the same directory).
//!
//! URI choice in `kubevirt` mode: `status.runtimeUser` non-zero (KubeVirt's non-root
//! launcher runs as 107) → `qemu+unix:///session?socket=PATH`; `0` → root launcher →
//! `qemu+unix:///system?socket=PATH`. An absent `runtimeUser` is taken as root: KubeVirt
//! releases before the field existed ran every launcher as root.

use std::path::{Path, PathBuf};

use crate::config::{LibvirtConfig, Locator};

/// The socket file name of current KubeVirt launchers (modular `virtqemud`).
pub const CURRENT_SOCKET_NAME: &str = "virtqemud-sock";
/// The socket file name of older KubeVirt launchers (monolithic `libvirtd`).
pub const LEGACY_SOCKET_NAME: &str = "libvirt-sock";

/// Where a VMI's domain is: the connection URI and the domain name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DomainLocation {
    pub uri: String,
    pub domain: String,
    /// `kubevirt` mode: the socket the URI points at.
    pub socket: Option<PathBuf>,
}

/// Why a VMI's domain cannot be located.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("libvirt.uri is not configured (needed by locator = uri)")]
    NoUri,
    #[error("no active pod of the VMI runs on node {node} (active pods: {pods})")]
    NoPodOnNode { node: String, pods: String },
    #[error("libvirt socket of pod {pod_uid} not found (tried {tried})")]
    NoSocket { pod_uid: String, tried: String },
    #[error("invalid libvirt socket path {0:?}")]
    BadSocketPath(PathBuf),
    #[error("cannot make a short link to libvirt socket {socket:?} in {dir:?}: {source}")]
    ShortLink {
        socket: PathBuf,
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Longest path a unix socket address holds (`sun_path` is 108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Default directory of the short links made by [`short_socket_path`].
pub const DEFAULT_LINK_DIR: &str = "/run/virtsync/libvirt-sockets";

/// KubeVirt's domain name: `<namespace>_<name>`.
pub fn domain_name(namespace: &str, name: &str) -> String {
    format!("{namespace}_{name}")
}

/// The active pod on `node`, if any (`active_pods` are `(pod UID, node)`).
pub fn pod_on_node<'a>(active_pods: &'a [(String, String)], node: &str) -> Option<&'a str> {
    active_pods
        .iter()
        .find(|(_, n)| n == node)
        .map(|(uid, _)| uid.as_str())
}

/// The socket path from the template (no file system access).
pub fn socket_path(template: &str, kubelet_root: &Path, pod_uid: &str) -> PathBuf {
    let root = kubelet_root.to_string_lossy();
    let root = root.trim_end_matches('/');
    let root = if root.is_empty() { "/" } else { root };
    PathBuf::from(
        template
            .replace("{kubelet_root}", root)
            .replace("{pod_uid}", pod_uid),
    )
}

/// The older launchers' socket next to `path` when `path` names the current socket.
pub fn legacy_socket_path(path: &Path) -> Option<PathBuf> {
    (path.file_name()? == CURRENT_SOCKET_NAME).then(|| path.with_file_name(LEGACY_SOCKET_NAME))
}

/// The connection URI for a launcher socket (see the module documentation).
pub fn launcher_uri(socket: &Path, runtime_user: Option<i64>) -> Result<String, LocateError> {
    let s = socket
        .to_str()
        .filter(|s| {
            s.starts_with('/') && !s.chars().any(|c| c.is_control() || matches!(c, '&' | '#'))
        })
        .ok_or_else(|| LocateError::BadSocketPath(socket.to_path_buf()))?;
    let kind = match runtime_user {
        Some(uid) if uid != 0 => "session",
        _ => "system",
    };
    Ok(format!("qemu+unix:///{kind}?socket={s}"))
}

/// Locates a VMI's domain. `exists` answers whether a socket path exists (the real
/// caller passes [`socket_exists`]; tests can pass a closure).
pub fn locate(
    config: &LibvirtConfig,
    this_node: &str,
    namespace: &str,
    name: &str,
    active_pods: &[(String, String)],
    runtime_user: Option<i64>,
    exists: impl Fn(&Path) -> bool,
) -> Result<DomainLocation, LocateError> {
    let domain = domain_name(namespace, name);
    match config.locator {
        Locator::Uri => Ok(DomainLocation {
            uri: config.uri.clone().ok_or(LocateError::NoUri)?,
            domain,
            socket: None,
        }),
        Locator::Kubevirt => {
            let pod_uid =
                pod_on_node(active_pods, this_node).ok_or_else(|| LocateError::NoPodOnNode {
                    node: this_node.to_owned(),
                    pods: describe_pods(active_pods),
                })?;
            let current = socket_path(&config.socket_template, &config.kubelet_root, pod_uid);
            let mut tried = vec![current.clone()];
            let socket = if exists(&current) {
                Some(current)
            } else if let Some(legacy) = legacy_socket_path(&current) {
                tried.push(legacy.clone());
                exists(&legacy).then_some(legacy)
            } else {
                None
            };
            let socket = socket.ok_or_else(|| LocateError::NoSocket {
                pod_uid: pod_uid.to_owned(),
                tried: tried
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            Ok(DomainLocation {
                uri: launcher_uri(&socket, runtime_user)?,
                domain,
                socket: Some(socket),
            })
        }
    }
}

/// [`locate`] on this host: checks the socket files, and when a socket path is longer
/// than a unix socket address can hold (real kubelet paths are: `/var/lib/kubelet/pods/`
/// + a 36-character UID + 63 more bytes), connects through a short symlink in `link_dir`.
pub fn locate_on_host(
    config: &LibvirtConfig,
    this_node: &str,
    namespace: &str,
    name: &str,
    active_pods: &[(String, String)],
    runtime_user: Option<i64>,
    link_dir: &Path,
) -> Result<DomainLocation, LocateError> {
    let mut loc = locate(
        config,
        this_node,
        namespace,
        name,
        active_pods,
        runtime_user,
        socket_exists,
    )?;
    if let Some(socket) = &loc.socket {
        let short =
            short_socket_path(socket, link_dir).map_err(|source| LocateError::ShortLink {
                socket: socket.clone(),
                dir: link_dir.to_path_buf(),
                source,
            })?;
        loc.uri = launcher_uri(&short, runtime_user)?;
    }
    Ok(loc)
}

/// `socket` itself when it fits a unix socket address, else a symlink
/// `<link_dir>/<hash of socket>` to it (created or corrected; the directory is made
/// with mode 0700).
pub fn short_socket_path(socket: &Path, link_dir: &Path) -> std::io::Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::DirBuilderExt;
    if socket.as_os_str().as_bytes().len() <= MAX_SOCKET_PATH {
        return Ok(socket.to_path_buf());
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    socket.hash(&mut h);
    let link = link_dir.join(format!("{:016x}", h.finish()));
    if link.as_os_str().as_bytes().len() > MAX_SOCKET_PATH {
        return Err(std::io::Error::other("link directory path too long"));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(link_dir)?;
    match std::fs::read_link(&link) {
        Ok(target) if target == socket => return Ok(link),
        Ok(_) => std::fs::remove_file(&link)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match std::os::unix::fs::symlink(socket, &link) {
        Ok(()) => Ok(link),
        // A concurrent caller made the same link.
        Err(e)
            if e.kind() == std::io::ErrorKind::AlreadyExists
                && std::fs::read_link(&link).is_ok_and(|t| t == socket) =>
        {
            Ok(link)
        }
        Err(e) => Err(e),
    }
}

/// Whether `path` exists (following symlinks).
pub fn socket_exists(path: &Path) -> bool {
    path.exists()
}

fn describe_pods(active_pods: &[(String, String)]) -> String {
    if active_pods.is_empty() {
        return "none".to_owned();
    }
    active_pods
        .iter()
        .map(|(uid, node)| format!("{uid} on {node}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(locator: Locator) -> LibvirtConfig {
        LibvirtConfig {
            uri: Some("qemu:///system".into()),
            locator,
            kubelet_root: PathBuf::from("/var/lib/k0s/kubelet/"),
            socket_template: "{kubelet_root}/pods/{pod_uid}/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock".into(),
            domain_check_interval: std::time::Duration::from_secs(30),
        }
    }

    fn pods() -> Vec<(String, String)> {
        vec![("aaa".into(), "other".into()), ("bbb".into(), "me".into())]
    }

    #[test]
    fn uri_mode_uses_configured_uri_and_kubevirt_name() {
        let loc = locate(&config(Locator::Uri), "me", "ns", "vm", &[], None, |_| {
            false
        })
        .unwrap();
        assert_eq!(loc.uri, "qemu:///system");
        assert_eq!(loc.domain, "ns_vm");
        assert_eq!(loc.socket, None);
        let mut c = config(Locator::Uri);
        c.uri = None;
        let err = locate(&c, "me", "ns", "vm", &[], None, |_| true);
        assert!(matches!(err, Err(LocateError::NoUri)), "{err:?}");
    }

    #[test]
    fn kubevirt_mode_picks_this_nodes_pod() {
        let want = "/var/lib/k0s/kubelet/pods/bbb/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock";
        let c = config(Locator::Kubevirt);
        let loc = locate(&c, "me", "ns", "vm", &pods(), Some(107), |p| {
            p == Path::new(want)
        })
        .unwrap();
        assert_eq!(loc.uri, format!("qemu+unix:///session?socket={want}"));
        assert_eq!(loc.domain, "ns_vm");
        let loc = locate(&c, "me", "ns", "vm", &pods(), Some(0), |_| true).unwrap();
        assert_eq!(loc.uri, format!("qemu+unix:///system?socket={want}"));
        let loc = locate(&c, "me", "ns", "vm", &pods(), None, |_| true).unwrap();
        assert!(loc.uri.starts_with("qemu+unix:///system?"));
    }

    #[test]
    fn kubevirt_mode_falls_back_to_legacy_socket() {
        let c = config(Locator::Kubevirt);
        let loc = locate(&c, "me", "ns", "vm", &pods(), Some(107), |p| {
            p.file_name().is_some_and(|f| f == LEGACY_SOCKET_NAME)
        })
        .unwrap();
        assert!(
            loc.uri.ends_with("/libvirt-runtime/libvirt-sock"),
            "{}",
            loc.uri
        );
        let err = locate(&c, "me", "ns", "vm", &pods(), Some(107), |_| false).unwrap_err();
        assert!(matches!(err, LocateError::NoSocket { ref pod_uid, .. } if pod_uid == "bbb"));
        assert!(err.to_string().contains("libvirt-sock"), "{err}");
    }

    #[test]
    fn kubevirt_mode_without_pod_on_this_node() {
        let c = config(Locator::Kubevirt);
        let err = locate(&c, "third", "ns", "vm", &pods(), None, |_| true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no active pod of the VMI runs on node third (active pods: aaa on other, bbb on me)"
        );
        let err = locate(&c, "me", "ns", "vm", &[], None, |_| true).unwrap_err();
        assert!(err.to_string().ends_with("(active pods: none)"));
    }

    #[test]
    fn long_socket_paths_get_a_short_link() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("s");
        assert_eq!(short_socket_path(&short, dir.path()).unwrap(), short);
        let long = dir.path().join("x".repeat(120));
        let links = dir.path().join("links");
        let link = short_socket_path(&long, &links).unwrap();
        assert!(link.as_os_str().len() <= MAX_SOCKET_PATH);
        assert_eq!(std::fs::read_link(&link).unwrap(), long);
        assert_eq!(short_socket_path(&long, &links).unwrap(), link);
        let other = dir.path().join("y".repeat(120));
        assert_ne!(short_socket_path(&other, &links).unwrap(), link);
    }

    #[test]
    fn odd_socket_paths_are_refused() {
        assert!(launcher_uri(Path::new("relative/sock"), None).is_err());
        assert!(launcher_uri(Path::new("/a&b"), None).is_err());
        assert_eq!(legacy_socket_path(Path::new("/x/other-sock")), None);
    }
}
