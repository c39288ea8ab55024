//! nginx from the distribution as a plain round-robin load balancer in front
//! of gateway replicas: no stickiness, HTTP/1.1 with keep-alive upstream,
//! no buffering (server-sent events pass through). A request nginx has
//! already sent is never retried on another replica (nginx does not retry
//! POSTs by default), as a production balancer would be set up. Stopped on
//! drop.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
    pub url: String,
}

fn nginx_bin() -> &'static str {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if std::path::Path::new(p).exists() {
            return p;
        }
    }
    panic!("nginx is not installed: run scripts/setup-test-deps.sh (the README's test command .ci/run does)")
}

/// The addresses `deploy/nginx.conf` names for its three replicas, and the
/// one it listens on.
const DEPLOY_REPLICAS: [&str; 3] = ["127.0.0.1:7421", "127.0.0.1:7422", "127.0.0.1:7423"];
const DEPLOY_LISTEN: &str = "listen 127.0.0.1:8080;";

/// The main configuration a distribution's nginx.conf would give: this
/// instance's files under `dir`, and `http_body` inside its `http` block.
fn main_conf(dir: &std::path::Path, http_body: &str) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{http_body}}}
"#
    )
}

impl Nginx {
    /// The shipped `deploy/nginx.conf` as written, with only its addresses
    /// changed: the three replicas (started with `--replica r1`..`r3`) at
    /// these `host:port`s, and a free loopback port to listen on. Wrapped in
    /// the minimal main configuration a distribution's nginx.conf would give
    /// it (it is an `http` block's content).
    pub fn start_deployed(replicas: &[String; 3]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let mut shipped = std::fs::read_to_string(super::repo_root().join("deploy/nginx.conf")).unwrap();
        assert!(shipped.contains(DEPLOY_LISTEN), "deploy/nginx.conf no longer says `{DEPLOY_LISTEN}`");
        shipped = shipped.replace(DEPLOY_LISTEN, &format!("listen 127.0.0.1:{port};"));
        for (written, actual) in DEPLOY_REPLICAS.iter().zip(replicas) {
            assert!(shipped.contains(written), "deploy/nginx.conf no longer names {written}");
            shipped = shipped.replace(written, actual);
        }
        std::fs::write(dir.path().join("jitgate.conf"), shipped).unwrap();
        let conf = main_conf(dir.path(), &format!("    include {}/jitgate.conf;\n", dir.path().display()));
        Self::run(dir, port, conf)
    }

    /// Balance over these `host:port` upstreams.
    pub fn start(upstreams: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let servers: String = upstreams.iter().map(|u| format!("        server {u} max_fails=0;\n")).collect();
        let balancer = format!(
            r#"    upstream jitgate {{
{servers}        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://jitgate;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_read_timeout 120s;
            proxy_connect_timeout 2s;
        }}
    }}
"#
        );
        let conf = main_conf(dir.path(), &balancer);
        Self::run(dir, port, conf)
    }

    fn run(dir: tempfile::TempDir, port: u16, conf: String) -> Self {
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut nginx = Self { dir, child, port, url: format!("http://127.0.0.1:{port}/mcp") };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}): {}", nginx.error_log());
            }
            assert!(Instant::now() < deadline, "nginx did not listen: {}", nginx.error_log());
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM is nginx's fast shutdown; the master takes its workers along.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}
