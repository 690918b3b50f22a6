//! TLS to PostgreSQL against a real server with a certificate from a CA made here:
//! verified with `ca_file`, refused without the right CA, plaintext only when allowed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;

use support::pg::PgCluster;
use virtsync::config::{Config, Env};
use virtsync::sink::postgres::{connect_client, pg_config};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (scripts/install-deps installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, written into `dir`.
fn make_ca(dir: &Path, name: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let key = format!("{name}.key");
    let pem = format!("{name}.pem");
    let subject = format!("/CN={name}");
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subject,
    ]);
    openssl(dir, &args);
}

fn make_server_cert(dir: &Path, ca: &str) {
    let mut args = vec!["req"];
    args.extend([
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ]);
    args.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &args);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

/// The server files must belong to the user postgres runs as, the key mode 0600.
fn hand_to_server(cluster: &PgCluster, files: &[&str]) {
    use std::os::unix::fs::PermissionsExt;
    let data = cluster.dir();
    let owner = std::fs::metadata(data.join("data")).unwrap();
    for f in files {
        let path = data.join(f);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(
            &path,
            Some(std::os::unix::fs::MetadataExt::uid(&owner)),
            Some(std::os::unix::fs::MetadataExt::gid(&owner)),
        )
        .unwrap();
    }
}

async fn uses_tls(url: &str, ca_file: Option<&Path>) -> Result<bool, String> {
    let mut cfg = Config::defaults(&Env::default()).postgres;
    cfg.ca_file = ca_file.map(Path::to_path_buf);
    let (pg, tls) = pg_config(url, None, "virtsync-tls-test", &cfg).map_err(|e| e.to_string())?;
    let client = connect_client(&pg, &tls).await.map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test]
async fn tls_is_verified_against_the_configured_ca() {
    let cluster = PgCluster::start_new();
    let certs = tempfile::tempdir().unwrap();
    make_ca(certs.path(), "test-ca");
    make_ca(certs.path(), "other-ca");
    make_server_cert(certs.path(), "test-ca");
    for f in ["server.pem", "server.key"] {
        std::fs::copy(certs.path().join(f), cluster.dir().join(f)).unwrap();
    }
    hand_to_server(&cluster, &["server.pem", "server.key"]);
    let admin = support::pg::connect(&cluster.url("postgres")).await;
    let (cert, key) = (
        cluster.dir().join("server.pem"),
        cluster.dir().join("server.key"),
    );
    // ALTER SYSTEM refuses multi-statement strings (an implicit transaction).
    for sql in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
        "ALTER SYSTEM SET ssl = on".to_string(),
        "SELECT pg_reload_conf()".to_string(),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
    let base = cluster.url("postgres");
    let require = format!("{base}?sslmode=require");
    let ca = certs.path().join("test-ca.pem");
    let other = certs.path().join("other-ca.pem");

    // The reload takes a moment: wait until the server speaks TLS.
    let mut result = Err(String::new());
    for _ in 0..50 {
        result = uses_tls(&require, Some(&ca)).await;
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(result, Ok(true), "sslmode=require with the right CA");
    assert_eq!(
        uses_tls(&base, Some(&ca)).await,
        Ok(true),
        "prefer + ca_file: TLS"
    );

    let wrong = uses_tls(&require, Some(&other)).await;
    assert!(
        wrong.is_err(),
        "a certificate from another CA is refused: {wrong:?}"
    );
    let system = uses_tls(&require, None).await;
    assert!(
        system.is_err(),
        "not trusted by the system store: {system:?}"
    );
    // Without a CA configured, the default (prefer) stays plaintext, as before TLS support.
    assert_eq!(uses_tls(&base, None).await, Ok(false));
}
