//! Reading the database password from a file or the credentials directory.

use super::*;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("virtsync-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pg_with(password_file: Option<PathBuf>) -> PostgresConfig {
    let mut pg = Config::defaults(&Env::default()).postgres;
    pg.password_file = password_file;
    pg
}

#[test]
fn password_file() {
    let dir = TempDir::new("pwfile");
    let ok: &[(&str, &str)] = &[
        ("s3cret\n", "s3cret"),
        ("s3cret\r\n", "s3cret"),
        ("s3cret", "s3cret"),
        ("with space \n\n", "with space "),
    ];
    for (contents, want) in ok {
        let pg = pg_with(Some(dir.file("pw", contents)));
        assert_eq!(
            read_password(&pg, None).ok().flatten().as_deref(),
            Some(*want),
            "{contents:?}"
        );
    }
    // password_file wins over the credentials directory.
    let creds = TempDir::new("pwfile-creds");
    creds.file("postgres-password", "other\n");
    let pg = pg_with(Some(dir.file("pw", "mine\n")));
    assert_eq!(
        read_password(&pg, Some(&creds.0)).ok().flatten().as_deref(),
        Some("mine")
    );

    let bad: &[(Option<&str>, &[&str])] = &[
        (None, &["cannot read", "missing"]),
        (Some(""), &["is empty"]),
        (Some("\n"), &["is empty"]),
        (Some("\r\n"), &["is empty"]),
    ];
    for (contents, words) in bad {
        let path = match contents {
            Some(c) => dir.file("bad", c),
            None => dir.0.join("missing"),
        };
        let err = read_password(&pg_with(Some(path)), Some(&creds.0)).err();
        let Some(err) = err else {
            panic!("no error for {contents:?}")
        };
        assert_eq!(err.key, "postgres.password_file");
        for word in *words {
            assert!(err.problem.contains(word), "{err} lacks {word:?}");
        }
    }
    // A directory cannot be read as a file: the OS error is reported.
    let err = read_password(&pg_with(Some(dir.0.clone())), None)
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.starts_with("postgres.password_file: cannot read")));
}

#[test]
fn password_from_credentials_directory() {
    let creds = TempDir::new("creds");
    let pg = pg_with(None);
    assert_eq!(read_password(&pg, None).ok(), Some(None));
    assert_eq!(
        read_password(&pg, Some(&creds.0)).ok(),
        Some(None),
        "no credential file"
    );
    creds.file("postgres-password", "from-systemd\n");
    assert_eq!(
        read_password(&pg, Some(&creds.0)).ok().flatten().as_deref(),
        Some("from-systemd")
    );
    creds.file("postgres-password", "");
    let err = read_password(&pg, Some(&creds.0))
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("postgres-password") && e.contains("is empty")));
}
