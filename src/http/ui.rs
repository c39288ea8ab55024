//! The reviewer pages under `/ui`: read-only, server-rendered HTML that works
//! without JavaScript. Reviewers sign in with a credential from
//! `[[reviewers.issuers]]` (never an agent identity): the sign-in form puts
//! it in an HttpOnly, SameSite=Strict cookie scoped to `/ui`; an
//! `Authorization: Bearer` header works too. Acting on approvals and
//! break-glass grants stays in the approvals API and CLI.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::approver::VerifiedApprover;
use crate::clock::rfc3339;
use crate::gateway::Shared;
use crate::store::run_blocking;
use crate::trace::{TaskSummary, TaskTrace};

const COOKIE: &str = "jitgate_reviewer";

pub fn routes() -> axum::Router<Arc<Shared>> {
    axum::Router::new()
        .route("/ui", get(tasks))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/login/oidc", get(oidc_start))
        .route(crate::http::login::CALLBACK_PATH, get(oidc_callback))
        .route("/ui/approvals/{id}/approve", axum::routing::post(approve_from_page))
        .route("/ui/approvals/{id}/deny", axum::routing::post(deny_from_page))
        .route("/ui/logout", axum::routing::post(logout))
        .route("/ui/tasks/{id}", get(task))
        .route("/ui/approvals", get(approvals))
        .route("/ui/reviews", get(reviews))
        .layer(axum::middleware::map_response(security_headers))
}

/// Every page: no scripts, no framing, no referrer to other sites, not cached.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (name, value) in [
        ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        h.insert(header::HeaderName::from_static(name), header::HeaderValue::from_static(value));
    }
    resp
}

/// Is a state-changing form post from this site? A browser says where a
/// request comes from (`Sec-Fetch-Site`, `Origin`); a post from another site
/// (login CSRF: signing a reviewer in as someone else; a forced sign-out) is
/// refused. Non-browser clients send neither and are not affected.
fn same_site(headers: &HeaderMap) -> bool {
    // Browsers that send Sec-Fetch-Site are judged by it alone.
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => origin.split_once("://").is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
    }
}

fn cross_site_refused() -> Response {
    (StatusCode::FORBIDDEN, page("Refused", None, "<p class=\"deny\" id=\"error\">a form post from another site was refused [cross_site]</p>")).into_response()
}

/// HTML-escape text. Characters that break a line or act unseen (U+2028,
/// bidi controls that reorder the rest of a purpose or an argument, see
/// [`crate::telemetry::is_unseen`]) are shown as escapes (`\u{202e}`).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if crate::telemetry::is_unseen(c) => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, who: Option<&str>, body: &str) -> Html<String> {
    let nav = match who {
        Some(w) => format!(
            "<nav><a href=\"/ui\">Tasks</a> · <a href=\"/ui/approvals\">Pending approvals</a> · <a href=\"/ui/reviews\">Break-glass reviews</a> <span class=\"who\">signed in as {} · <form method=\"post\" action=\"/ui/logout\" style=\"display:inline\"><button type=\"submit\" id=\"sign-out\">sign out</button></form></span></nav>",
            esc(w)
        ),
        None => String::new(),
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · jitgate</title><style>\
body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d1d1f}}table{{border-collapse:collapse;width:100%}}\
td,th{{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}}\
th{{background:#f4f4f6}}.deny{{color:#b00020;font-weight:600}}.allow{{color:#0a7a2f}}.pending{{color:#a15c00}}\
.who{{float:right;color:#555}}nav{{margin-bottom:1rem}}code{{background:#f4f4f6;padding:0 .2rem}}ul.tree{{list-style:none;padding-left:1rem;border-left:2px solid #ddd}}\
.muted{{color:#666}}form.filters input,form.filters select{{margin-right:.5rem}}</style></head><body><h1>{t}</h1>{nav}{body}</body></html>",
        t = esc(title)
    ))
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies.split(';').map(str::trim).find_map(|c| c.strip_prefix(&format!("{COOKIE}=")).map(str::to_owned))
}

/// A cookie's value.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies.split(';').map(str::trim).find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

/// The person signed in with OpenID Connect, if any (with their session).
fn signed_in(shared: &Shared, headers: &HeaderMap) -> Option<crate::http::login::PersonSession> {
    let login = shared.login.as_ref()?;
    let id = cookie(headers, crate::http::login::SESSION_COOKIE)?;
    login.session(&id, shared.clock.now_unix())
}

async fn reviewer(shared: &Shared, headers: &HeaderMap) -> Result<VerifiedApprover, Response> {
    if let Some(s) = signed_in(shared, headers) {
        return Ok(s.person);
    }
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::to_owned);
    let Some(token) = bearer.or_else(|| cookie_token(headers)) else {
        return Err(Redirect::to("/ui/login").into_response());
    };
    shared.reviewers.verify_refreshing(&token).await.map_err(|e| {
        tracing::warn!(code = e.code(), "reviewer pages: credential refused");
        let status = match e.code() {
            "approver_is_agent" => StatusCode::FORBIDDEN,
            "approver_keys_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        (status, page("Not signed in", None, &format!("<p class=\"deny\">{} [{}]</p><p><a href=\"/ui/login\">Sign in</a> with a reviewer credential.</p>", esc(&e.to_string().replace("approver", "reviewer")), esc(e.code())))).into_response()
    })
}

async fn login_form(State(shared): State<Arc<Shared>>) -> Html<String> {
    let oidc = if shared.login.is_some() {
        "<p><a href=\"/ui/login/oidc\" id=\"sign-in-oidc\">Sign in with your identity provider</a></p><p class=\"muted\">Or:</p>"
    } else {
        ""
    };
    page(
        "Reviewer sign-in",
        None,
        &format!("{oidc}{}", "<p>Paste your reviewer credential (a JWT from a reviewer issuer; agents' identities are refused). \
         Development: <code>jitgate identity mint --config … --reviewer you@example.org</code>.</p>\
         <form method=\"post\" action=\"/ui/login\"><textarea name=\"credential\" id=\"credential\" rows=\"5\" cols=\"80\"></textarea><br>\
         <button type=\"submit\" id=\"sign-in\">Sign in</button></form>"),
    )
}

fn secure_attr(shared: &Shared) -> &'static str {
    if shared.login.as_ref().is_some_and(|l| l.secure()) { "; Secure" } else { "" }
}

/// Start an OpenID Connect sign-in: to the provider, with the sealed
/// sign-in cookie for the callback (see `login::PeopleLogin::started_cookie`).
async fn oidc_start(State(shared): State<Arc<Shared>>) -> Response {
    let Some(login) = shared.login.clone() else {
        return (StatusCode::NOT_FOUND, page("Sign-in", None, "<p class=\"deny\">OpenID Connect sign-in is not configured ([ui.oidc])</p>")).into_response();
    };
    match login.start(shared.clock.now_unix()).await {
        Ok((url, sealed)) => ([(header::SET_COOKIE, login.started_cookie(&sealed))], Redirect::to(&url)).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "sign-in could not start");
            (StatusCode::BAD_GATEWAY, page("Sign-in", None, &format!("<p class=\"deny\" id=\"error\">{}</p>", esc(&e.to_string())))).into_response()
        }
    }
}

/// The provider sends the browser back here with a code.
async fn oidc_callback(State(shared): State<Arc<Shared>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let Some(login) = shared.login.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let q = q.unwrap_or_default();
    let param = |name: &str| form_field(q.as_bytes(), name);
    let failed = |status: StatusCode, msg: String| {
        ([(header::SET_COOKIE, login.forget_started_cookie())], (status, page("Sign-in failed", None, &format!("<p class=\"deny\" id=\"error\">{}</p><p><a href=\"/ui/login\">Start again</a></p>", esc(&msg)))))
            .into_response()
    };
    if let Some(err) = param("error") {
        return failed(StatusCode::UNAUTHORIZED, format!("the provider refused the sign-in: {err} {}", param("error_description").unwrap_or_default()));
    }
    let (Some(code), Some(state)) = (param("code"), param("state")) else {
        return failed(StatusCode::BAD_REQUEST, "the provider's answer has no code or state".into());
    };
    let now = shared.clock.now_unix();
    let people = shared.clone();
    let issuer = login.config.issuer.clone();
    let client_id = login.config.client_id.clone();
    let verify = move |id_token: &str, nonce: &str| {
        let verifier = if people.approvers.has_issuer(&issuer) { &people.approvers } else { &people.reviewers };
        verifier.verify_id_token(id_token, &issuer, &client_id, nonce).map_err(|e| format!("{e} [{}]", e.code()))
    };
    match login.finish(&state, cookie(&headers, crate::http::login::STATE_COOKIE).as_deref(), &code, param("iss").as_deref(), now, verify).await {
        Ok((id, session)) => {
            tracing::info!(person = %session.person.subject, groups = ?session.person.groups, "person signed in with OpenID Connect");
            let ttl = login.config.session_ttl.as_secs();
            let secure = secure_attr(&shared);
            let set = format!("{}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={ttl}{secure}", crate::http::login::SESSION_COOKIE);
            let clear = login.forget_started_cookie();
            // A page of this site moves on: the Strict cookie would not be
            // sent on a redirect that is still part of the provider's
            // cross-site navigation.
            let body = page(
                "Signed in",
                None,
                "<meta http-equiv=\"refresh\" content=\"0;url=/ui/approvals\"><p>Signed in. <a href=\"/ui/approvals\" id=\"continue\">Continue</a></p>",
            );
            let mut resp = body.into_response();
            for c in [set, clear] {
                if let Ok(v) = header::HeaderValue::from_str(&c) {
                    resp.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            resp
        }
        Err(e) => {
            tracing::warn!(error = %e, "OpenID Connect sign-in refused");
            failed(StatusCode::UNAUTHORIZED, e.to_string())
        }
    }
}

/// Approve or deny from the page: a signed-in person of an approver issuer,
/// a same-site form post carrying the session's CSRF token.
async fn act_from_page(shared: Arc<Shared>, headers: HeaderMap, id: String, body: Bytes, approve: bool) -> Response {
    if !same_site(&headers) {
        return cross_site_refused();
    }
    let Some(session) = signed_in(&shared, &headers) else {
        return Redirect::to("/ui/login").into_response();
    };
    let token = form_field(&body, "csrf").unwrap_or_default();
    if !crate::jws::constant_time_eq(token.as_bytes(), session.csrf.as_bytes()) {
        return (StatusCode::FORBIDDEN, page("Refused", Some(&session.person.subject), "<p class=\"deny\" id=\"error\">the form's CSRF token is not this session's [csrf]</p>")).into_response();
    }
    if !shared.approvers.has_issuer(&session.person.issuer) {
        return (StatusCode::FORBIDDEN, page("Refused", Some(&session.person.subject), "<p class=\"deny\" id=\"error\">you signed in at a reviewers' issuer: you can review, not approve [not_an_approver]</p>")).into_response();
    }
    let note = form_field(&body, "note").unwrap_or_default();
    let (person, now, ttl) = (session.person.clone(), shared.clock.now_unix(), shared.config.approvals.use_ttl);
    let wanted = id.clone();
    let result = run_blocking(&shared.store, move |s| crate::policy::approvals::decide(s, &person, &wanted, approve, &note, now, ttl)).await;
    let message = match result {
        Ok(Ok(a)) => format!("<p class=\"allow\" id=\"done\">{} {}</p>", esc(&a.id), a.state.as_str()),
        Ok(Err(e)) => format!("<p class=\"deny\" id=\"error\">{} [{}]</p>", esc(&e.to_string()), esc(e.code())),
        Err(e) => format!("<p class=\"deny\" id=\"error\">{}</p>", esc(&e.to_string())),
    };
    page("Approval", Some(&session.person.subject), &format!("{message}<p><a href=\"/ui/approvals\" id=\"back\">Back to pending approvals</a></p>")).into_response()
}

async fn approve_from_page(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    act_from_page(shared, headers, id, body, true).await
}

async fn deny_from_page(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    act_from_page(shared, headers, id, body, false).await
}

/// Decode one field of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let raw = text.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}=")))?;
    let mut out = Vec::new();
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(|s| s.trim().to_owned())
}

async fn login(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !same_site(&headers) {
        return cross_site_refused();
    }
    let token = form_field(&body, "credential").unwrap_or_default();
    match shared.reviewers.verify_refreshing(&token).await {
        Ok(r) => {
            tracing::info!(reviewer = %r.subject, "reviewer signed in");
            let cookie = format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict");
            ([(header::SET_COOKIE, cookie)], Redirect::to("/ui")).into_response()
        }
        Err(e) => {
            let status = if e.code() == "approver_is_agent" { StatusCode::FORBIDDEN } else { StatusCode::UNAUTHORIZED };
            (status, page("Reviewer sign-in", None, &format!("<p class=\"deny\" id=\"error\">{} [{}]</p><p><a href=\"/ui/login\">Try again</a></p>", esc(&e.to_string().replace("approver", "reviewer")), esc(e.code())))).into_response()
        }
    }
}

async fn logout(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !same_site(&headers) {
        return cross_site_refused();
    }
    if let (Some(login), Some(id)) = (shared.login.as_ref(), cookie(&headers, crate::http::login::SESSION_COOKIE)) {
        login.end(&id);
    }
    let mut resp = Redirect::to("/ui/login").into_response();
    for c in [
        format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
        format!("{}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0", crate::http::login::SESSION_COOKIE),
    ] {
        if let Ok(v) = header::HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// Tasks listed per page of `/ui`.
const TASKS_PER_PAGE: usize = 100;

/// One page of tasks, newest first, each with its summary: the counts come
/// from the task's own audit records (an indexed read per task, so memory is
/// bounded by the page, not by the whole trail), the outcome from the store's
/// task state, so a revoked or expired task never shows as open.
async fn task_page(shared: &Shared, agent: Option<String>, since: i64, before: Option<(i64, String)>) -> Result<Vec<(crate::store::Task, TaskSummary)>, Response> {
    let now = shared.clock.now_unix();
    run_blocking(&shared.store, move |s| -> Result<_, crate::store::StoreError> {
        let tasks = s.recent_tasks(agent.as_deref(), since, before, TASKS_PER_PAGE)?;
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            let records = s.audit_of_task(&t.id)?;
            let mut summary = crate::trace::summaries(&records).into_iter().next().unwrap_or_else(|| TaskSummary {
                id: t.id.clone(),
                agent: t.agent.clone(),
                objective: t.objective.clone(),
                begun: t.created_at,
                ..Default::default()
            });
            summary.outcome = crate::trace::outcome_of(&t, now);
            out.push((t, summary));
        }
        Ok(out)
    })
    .await
    .and_then(|r| r)
    .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response())
}

fn query_param(q: &Option<String>, name: &str) -> Option<String> {
    q.as_deref()?.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).map(|v| form_field(format!("x={v}").as_bytes(), "x").unwrap_or_default()).filter(|v| !v.is_empty())
}

fn decision_class(d: &str) -> &'static str {
    match d {
        "deny" => "deny",
        "pending_approval" => "pending",
        _ => "allow",
    }
}

async fn tasks(State(shared): State<Arc<Shared>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let who = match reviewer(&shared, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let agent_filter = query_param(&q, "agent");
    let outcome = query_param(&q, "outcome");
    let since = query_param(&q, "since").and_then(|s| humantime::parse_duration(&s).ok());
    let denied_only = query_param(&q, "denied").is_some();
    let bg_only = query_param(&q, "break_glass").is_some();
    let before = query_param(&q, "before").and_then(|b| b.split_once(':').and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_owned()))));
    let now = shared.clock.now_unix();
    // The agent filter takes a name or an id.
    let agent = agent_filter.as_deref().map(|a| shared.identity.agents().by_name(a).map(|x| x.id.clone()).unwrap_or_else(|| a.to_owned()));
    let since_at = since.map(|d| now - i64::try_from(d.as_secs()).unwrap_or(0)).unwrap_or(0);
    let rows = match task_page(&shared, agent, since_at, before).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let next = rows.last().map(|(t, _)| format!("{}:{}", t.created_at, t.id));
    let full_page = rows.len() == TASKS_PER_PAGE;
    let list: Vec<TaskSummary> = rows
        .into_iter()
        .map(|(_, summary)| summary)
        .filter(|t| outcome.as_deref().is_none_or(|o| t.outcome.starts_with(o)))
        .filter(|t| !denied_only || t.denied > 0)
        .filter(|t| !bg_only || t.break_glass)
        .collect();
    let sel = |v: &str| if outcome.as_deref() == Some(v) { " selected" } else { "" };
    let mut body = format!(
        "<form class=\"filters\" method=\"get\" action=\"/ui\">Agent <input name=\"agent\" value=\"{}\"> Outcome <select name=\"outcome\"><option value=\"\">any</option><option{} value=\"open\">open</option><option{} value=\"ended\">ended</option><option{} value=\"revoked\">revoked</option></select> Since <input name=\"since\" size=\"5\" placeholder=\"24h\" value=\"{}\"> <label><input type=\"checkbox\" name=\"denied\" value=\"1\"{}> with denials</label> <label><input type=\"checkbox\" name=\"break_glass\" value=\"1\"{}> break-glass</label> <button type=\"submit\">Filter</button></form>",
        esc(agent_filter.as_deref().unwrap_or("")),
        sel("open"),
        sel("ended"),
        sel("revoked"),
        esc(&query_param(&q, "since").unwrap_or_default()),
        if denied_only { " checked" } else { "" },
        if bg_only { " checked" } else { "" },
    );
    body.push_str(&format!("<p class=\"muted\" id=\"count\">{} task(s)</p><table id=\"tasks\"><tr><th>Task</th><th>Agent</th><th>Objective</th><th>Begun (UTC)</th><th>Outcome</th><th>Requests</th><th>Denied</th><th>Calls</th><th>Break-glass</th></tr>", list.len()));
    for t in &list {
        body.push_str(&format!(
            "<tr><td><a href=\"/ui/tasks/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&t.agent_name),
            esc(&t.objective),
            rfc3339(t.begun),
            esc(&t.outcome),
            t.requests,
            if t.denied > 0 { "deny" } else { "" },
            t.denied,
            t.calls,
            if t.break_glass { "<span class=\"deny\">yes</span>" } else { "" },
            id = esc(&t.id),
        ));
    }
    body.push_str("</table>");
    if let (true, Some(next)) = (full_page, next) {
        // The filters carry over; only the cursor changes.
        let mut query: Vec<String> = q.as_deref().unwrap_or("").split('&').filter(|kv| !kv.is_empty() && !kv.starts_with("before=")).map(str::to_owned).collect();
        query.push(format!("before={next}"));
        body.push_str(&format!("<p><a id=\"older\" href=\"/ui?{}\">older tasks</a></p>", esc(&query.join("&"))));
    }
    page("Tasks", Some(&who.subject), &body).into_response()
}

fn render_trace(t: &TaskTrace) -> String {
    let tool_of = |jti: &str| t.phases.iter().flat_map(|p| &p.requests).find(|r| r.jti.as_deref() == Some(jti)).map(|r| r.tool.clone()).unwrap_or_else(|| "?".into());
    let mut b = format!(
        "<p><b>Agent</b> {} <span class=\"muted\">({})</span><br><b>Objective</b> {}<br><b>Begun</b> {} · <b>Outcome</b> <span id=\"outcome\">{}</span></p><ul class=\"tree\" id=\"trace\">",
        esc(&t.agent_name),
        esc(&t.agent),
        esc(&t.objective),
        rfc3339(t.begun),
        esc(&t.outcome)
    );
    if let Some(by) = &t.delegated_by {
        let parent = by["parent_task"].as_str().unwrap_or_default();
        b.push_str(&format!(
            "<li id=\"delegated-by\">Delegated by task <a href=\"/ui/tasks/{}\">{}</a> (delegation <code>{}</code>)</li>",
            esc(parent),
            esc(parent),
            esc(by["delegation"].as_str().unwrap_or_default())
        ));
    }
    for d in &t.delegations {
        let child = d["child_task"].as_str().map(|c| format!(" → <a href=\"/ui/tasks/{}\">{}</a>", esc(c), esc(c))).unwrap_or_default();
        b.push_str(&format!(
            "<li class=\"delegation\">Delegated <code>{}</code> to <b>{}</b>: {} <span class=\"muted\">(depth {})</span>{child}</li>",
            esc(d["delegation"].as_str().unwrap_or_default()),
            esc(d["child_name"].as_str().unwrap_or_default()),
            esc(&d["tools"].as_array().map(|a| a.iter().filter_map(serde_json::Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()),
            d["depth"].as_i64().unwrap_or(0),
        ));
    }
    for p in &t.phases {
        b.push_str(&format!("<li><b>Phase {}</b> <span class=\"muted\">from {}</span><ul class=\"tree\">", esc(&p.name), rfc3339(p.started)));
        for r in &p.requests {
            b.push_str(&format!(
                "<li class=\"request\"><code>{}</code> {} → <span class=\"{}\">{}</span> by {}",
                rfc3339(r.at),
                esc(&r.tool),
                decision_class(&r.decision),
                esc(&r.decision),
                if r.policies.is_empty() { "default deny".to_owned() } else { r.policies.iter().map(|p| format!("<code>{}</code>", esc(p))).collect::<Vec<_>>().join(", ") }
            ));
            b.push_str(&format!("<br><span class=\"muted\">purpose: {}</span>", esc(&r.purpose)));
            if let Some(reason) = &r.reason {
                b.push_str(&format!("<br>reason: {}", esc(reason)));
            }
            if r.baseline_score > 0 {
                b.push_str(&format!("<br>baseline score {}: {}", r.baseline_score, esc(&r.baseline)));
            }
            if let Some(f) = &r.follows {
                b.push_str(&format!("<br>follows call <code>{}</code> ({})", esc(f), esc(&tool_of(f))));
            }
            for s in &r.taint_sources {
                b.push_str(&format!("<br><span class=\"deny\">tainted</span> by the output of call <code>{}</code> ({})", esc(s), esc(&tool_of(s))));
            }
            if let Some(j) = &r.jti {
                b.push_str(&format!("<br>token <code>{}</code>", esc(j)));
            }
            if let Some(c) = &r.call {
                b.push_str(&format!(
                    "<ul class=\"tree\"><li>call at {}: <b>{}</b> in {:.1} ms, {} bytes{}</li></ul>",
                    rfc3339(c.forwarded_at),
                    esc(&c.status),
                    c.duration_ms,
                    c.result_bytes,
                    c.error.as_deref().map(|e| format!(" ({})", esc(e))).unwrap_or_default()
                ));
            }
            b.push_str("</li>");
        }
        b.push_str("</ul></li>");
    }
    for a in &t.approvals {
        b.push_str(&format!("<li>approval <code>{}</code> {} by {}: {}</li>", esc(a["approval"].as_str().unwrap_or("")), esc(a["decision"].as_str().unwrap_or("")), esc(a["by"].as_str().unwrap_or("")), esc(a["note"].as_str().unwrap_or(""))));
    }
    for r in &t.revocations {
        b.push_str(&format!("<li class=\"revocation\">revoked ({}): {} — {} token(s)</li>", esc(r["scope"].as_str().unwrap_or("")), esc(r["reason"].as_str().unwrap_or("")), r["tokens"]));
    }
    b.push_str("</ul>");
    b
}

async fn task(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let who = match reviewer(&shared, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let (wanted, now) = (id.clone(), shared.clock.now_unix());
    let trace = match run_blocking(&shared.store, move |s| crate::trace::from_store(s, &wanted, now)).await.and_then(|r| r) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return (StatusCode::NOT_FOUND, page("No such task", Some(&who.subject), &format!("<p>No audit records for task <code>{}</code>.</p>", esc(&id)))).into_response();
        }
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    page(&format!("Task {id}"), Some(&who.subject), &render_trace(&trace)).into_response()
}

async fn approvals(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let who = match reviewer(&shared, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = shared.clock.now_unix();
    let list = match run_blocking(&shared.store, move |s| s.approvals(false, now)).await.and_then(|r| r) {
        Ok(l) => l,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    // A person signed in with OpenID Connect at an approver issuer acts
    // here; everyone else with the CLI or the approvals API.
    let session = signed_in(&shared, &headers).filter(|s| shared.approvers.has_issuer(&s.person.issuer));
    let mut body = String::from("<p class=\"muted\">Approvers act here when signed in with the identity provider, or with <code>jitgate approvals approve|deny</code> or the approvals API.</p><table id=\"approvals\"><tr><th>Approval</th><th>State</th><th>Agent</th><th>Task</th><th>Tool</th><th>Arguments</th><th>Purpose</th><th>Group</th><th>Expires</th><th>Decide</th></tr>");
    for a in &list {
        let forms = match &session {
            Some(s) if s.person.in_group(&a.group) => format!(
                "<form method=\"post\" action=\"/ui/approvals/{id}/approve\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input name=\"note\" placeholder=\"note\"><button type=\"submit\" id=\"approve-{id}\">Approve</button></form>\
                 <form method=\"post\" action=\"/ui/approvals/{id}/deny\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input name=\"note\" placeholder=\"reason (required)\" required><button type=\"submit\" id=\"deny-{id}\">Deny</button></form>",
                id = esc(&a.id),
                csrf = esc(&s.csrf),
            ),
            Some(_) => "<span class=\"muted\">not your group</span>".into(),
            None => String::new(),
        };
        body.push_str(&format!(
            "<tr><td><code>{}</code></td><td class=\"pending\">{}</td><td>{}</td><td><a href=\"/ui/tasks/{task}\">{task}</a></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{forms}</td></tr>",
            esc(&a.id),
            a.state.as_str(),
            esc(&a.agent),
            esc(&a.tool),
            esc(&a.constraints),
            esc(&a.purpose),
            esc(&a.group),
            rfc3339(a.expires_at),
            task = esc(&a.task),
        ));
    }
    body.push_str("</table>");
    page("Pending approvals", Some(&who.subject), &body).into_response()
}

async fn reviews(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let who = match reviewer(&shared, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let list = match run_blocking(&shared.store, |s| s.break_glass_grants(false)).await.and_then(|r| r) {
        Ok(l) => l,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let mut body = String::from("<p class=\"muted\">Sign grants off with <code>jitgate review ack ID --note …</code>.</p><table id=\"reviews\"><tr><th>Grant</th><th>Agent</th><th>Task</th><th>Tool</th><th>Justification</th><th>Granted</th><th>Token</th></tr>");
    for g in &list {
        body.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td><a href=\"/ui/tasks/{task}\">{task}</a></td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&g.id),
            esc(&g.agent),
            esc(&g.tool),
            esc(&g.justification),
            rfc3339(g.granted_at),
            esc(&g.jti),
            task = esc(&g.task),
        ));
    }
    body.push_str("</table>");
    page("Break-glass reviews", Some(&who.subject), &body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_forms_decode() {
        assert_eq!(esc("<script>alert('x')&\"</script>"), "&lt;script&gt;alert(&#39;x&#39;)&amp;&quot;&lt;/script&gt;");
        assert_eq!(esc("ok\u{2028}Approved by\u{202E}nimda"), "ok\\u{2028}Approved by\\u{202e}nimda");
        assert_eq!(esc("café · 日本"), "café · 日本");
        assert_eq!(form_field(b"credential=a%2Eb+c&x=1", "credential").as_deref(), Some("a.b c"));
        assert_eq!(form_field(b"x=1", "credential"), None);
    }
}
