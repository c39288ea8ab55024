//! A private PostgreSQL server for one test binary: the distribution's
//! binaries (installed by scripts/setup-test-deps.sh), a fresh data directory
//! in a temporary directory, a loopback port, trust authentication for the
//! `jitgate` role on 127.0.0.1 only. As root, the server runs as the
//! `postgres` user (PostgreSQL refuses to run as root). Stopped on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_user: Option<&'static str>,
    /// Extra server settings (`-c name=value ...`).
    settings: String,
}

/// The directory of the newest installed PostgreSQL's binaries.
fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    found.sort_by_key(|p| p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0));
    found.pop().unwrap_or_else(|| panic!("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb): run scripts/setup-test-deps.sh (the README's test command .ci/run does)"))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

impl Postgres {
    /// Start a fresh server.
    pub fn start() -> Self {
        Self::start_with(|_| String::new())
    }

    /// Start a fresh server that also speaks TLS, with a certificate for
    /// 127.0.0.1 and localhost signed by a CA made for it; returns the CA's
    /// PEM file (openssl from the distribution makes them).
    pub fn start_tls() -> (Self, PathBuf) {
        let mut ca = PathBuf::new();
        let pg = Self::start_with(|dir| {
            let run = |args: &[&str]| {
                let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is needed for the TLS tests (scripts/setup-test-deps.sh installs it)");
                assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            };
            let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
            run(&[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=jitgate test CA", "-days", "2"]].concat());
            run(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
            std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
            run(&["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext"]);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            ca = dir.join("ca.crt");
            format!(" -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key", dir.display())
        });
        (pg, ca)
    }

    /// Start a fresh server; `prepare` may write files into its directory
    /// and returns extra `-c` settings.
    fn start_with(prepare: impl FnOnce(&Path) -> String) -> Self {
        let bin = pg_bin();
        let dir = tempfile::tempdir().unwrap();
        let settings = prepare(dir.path());
        let as_user = is_root().then_some("postgres");
        if let Some(user) = as_user {
            // The server's user must own its directory.
            let status = Command::new("chown").args(["-R", user]).arg(dir.path()).status().unwrap();
            assert!(status.success());
        }
        let port = super::free_port();
        let pg = Self { dir, bin, port, as_user, settings };
        let data = pg.data();
        let out = pg.run("initdb", &["-D", data.to_str().unwrap(), "-U", "jitgate", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        pg.pg_ctl_start();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let program = self.bin.join(tool);
        let mut cmd = match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        cmd.args(args).current_dir(self.dir.path()).stdin(Stdio::null()).output().unwrap()
    }

    fn pg_ctl_start(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200{}", self.port, self.dir.path().display(), self.settings);
        let log = self.dir.path().join("server.log");
        let out = self.run("pg_ctl", &["-D", self.data().to_str().unwrap(), "-o", &options, "-l", log.to_str().unwrap(), "-w", "-t", "60", "start"]);
        assert!(out.status.success(), "PostgreSQL did not start: {}\n{}", String::from_utf8_lossy(&out.stderr), std::fs::read_to_string(&log).unwrap_or_default());
    }

    /// Stop the server (fast: open connections are cut).
    pub fn stop(&self) {
        let _ = self.run("pg_ctl", &["-D", self.data().to_str().unwrap(), "-m", "fast", "-w", "stop"]);
    }

    /// Stop and start again on the same port, keeping the data.
    pub fn restart(&self) {
        self.stop();
        self.pg_ctl_start();
    }

    /// Start again after [`Postgres::stop`].
    pub fn start_again(&self) {
        self.pg_ctl_start();
    }

    /// The URL of a new, empty database on this server.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let out = self.run("createdb", &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "jitgate", &name]);
        assert!(out.status.success(), "createdb failed: {}", String::from_utf8_lossy(&out.stderr));
        self.url(&name)
    }

    /// A login role that must give `password` (SCRAM) from 127.0.0.1, and a
    /// fresh database it owns; every other role keeps trust authentication.
    /// Returns the database's URL for that role (no password in it).
    pub fn password_role(&self, role: &str, password: &str) -> String {
        let db = self.fresh_database();
        let name = db.rsplit('/').next().unwrap().to_owned();
        let sql = format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'; ALTER DATABASE {name} OWNER TO {role};");
        let out = self.run("psql", &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "jitgate", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", &sql]);
        assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
        // pg_hba.conf is read top down: this line comes before trust.
        let hba = self.data().join("pg_hba.conf");
        let rest = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, format!("host all {role} 127.0.0.1/32 scram-sha-256\n{rest}")).unwrap();
        let out = self.run("pg_ctl", &["-D", self.data().to_str().unwrap(), "reload"]);
        assert!(out.status.success(), "pg_ctl reload failed: {}", String::from_utf8_lossy(&out.stderr));
        // The reload is a signal: wait until the role is asked for its password.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let out = self.run("psql", &["-w", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", role, "-d", &name, "-c", "SELECT 1"]);
            if !out.status.success() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "PostgreSQL did not start asking {role} for a password");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        format!("postgres://{role}@127.0.0.1:{}/{name}", self.port)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://jitgate@127.0.0.1:{}/{database}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
