//! The dashboard at `/ui` over a real daemon's HTTPS listener: its files are served
//! without a token while its data needs one, and, in a real headless Chromium driven
//! through WebDriver, the page follows a scale live (within 2 s, without a reload).
//! The browser test runs when `SHOAL_BROWSER_TESTS=1` (`scripts/test` installs
//! Debian's `chromium` and `chromium-driver` and sets it); otherwise it says why it
//! skipped.

mod support;

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client as Browser, ClientBuilder};
use serde_json::{Value, json};
use shoal_api::service::ServiceMode;
use shoal_api::task_spec::RestartCondition;
use shoal_api::wire::TaskFilter;
use shoal_api::{ServiceSpec, TaskState};
use support::daemons::{Daemon, block_on, free_addr, serve_forever};

/// An HTTP client of the daemon's TCP listener, checking it against the cluster CA.
fn https(d: &Daemon) -> reqwest::Client {
    let roots = std::fs::read_to_string(d.ca_file()).unwrap();
    let creds = shoal_pki::Credentials::trusting(&roots).unwrap();
    let tls = creds.client_config(&[b"http/1.1"]).unwrap().as_ref().clone();
    reqwest::Client::builder().no_proxy().tls_backend_preconfigured(tls).build().unwrap()
}

/// GETs `path` over HTTPS with `token`; returns the status, content type and the
/// first bytes of the body (an event stream never ends).
async fn get(http: &reqwest::Client, d: &Daemon, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut req = http.get(format!("https://{}{path}", d.api_addr));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ty = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let first = tokio::time::timeout(Duration::from_secs(5), resp.chunk()).await;
    let body = match first {
        Ok(Ok(Some(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    };
    (status, ty, body)
}

#[test]
fn the_dashboard_is_served_without_a_token_and_its_data_needs_one() {
    let d = Daemon::init("m1");
    let read_only = block_on(d.client().read_only_api_token()).unwrap().token;
    block_on(async {
        let http = https(&d);
        let (status, ty, page) = get(&http, &d, "/ui", None).await;
        assert_eq!((status, ty.as_str()), (200, "text/html; charset=utf-8"), "{page}");
        assert!(page.contains("/ui/app.js"), "{page}");
        let (status, ty, _) = get(&http, &d, "/ui/app.js", None).await;
        assert_eq!((status, ty.as_str()), (200, "text/javascript; charset=utf-8"));
        // What the page shows needs a token: none gets 401, and no query parameter
        // stands in for one (it would end up in logs and history).
        for path in ["/v1/nodes", "/v1/services", "/v1/tasks", "/v1/events"] {
            assert_eq!(get(&http, &d, path, None).await.0, 401, "{path} without a token");
        }
        let with_query = format!("/v1/events?access_token={read_only}");
        assert_ne!(get(&http, &d, &with_query, None).await.0, 200, "a token in the URL is not taken");
        // The read-only token reads all of it, the event stream too.
        for path in ["/v1/nodes", "/v1/services", "/v1/tasks"] {
            let (status, ty, _) = get(&http, &d, path, Some(&read_only)).await;
            assert_eq!((status, ty.as_str()), (200, "application/json"), "{path}");
        }
        let (status, ty, _) = get(&http, &d, "/v1/events?since=0", Some(&read_only)).await;
        assert_eq!((status, ty.as_str()), (200, "text/event-stream"));
    });
}

/// `chromedriver` in its own process group, with the Chromium it starts; the whole
/// group is killed when dropped.
struct Driver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let profile = tempfile::Builder::new().prefix("shoal-ui-chromium-").tempdir().unwrap();
        let addr = free_addr();
        let port = addr.rsplit_once(':').unwrap().1.to_owned();
        let log = std::fs::File::create(profile.path().join("chromedriver.log")).unwrap();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .expect("chromedriver runs (Debian: apt-get install chromium chromium-driver)");
        let driver = Driver { child, url: format!("http://{addr}"), profile };
        support::wait_for("chromedriver to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
        driver
    }

    /// A headless Chromium session that trusts only `spki` (the manager's key, as
    /// base64 SHA-256) beside the usual roots, and resolves no host name: it can
    /// reach loopback addresses and nothing else.
    async fn session(&self, spki: &str) -> Browser {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,800",
            "--force-device-scale-factor=1",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            &format!("--ignore-certificate-errors-spki-list={spki}"),
            &format!("--user-data-dir={}", self.profile.path().join("profile").display()),
        ];
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
        });
        let caps = caps.as_object().unwrap().clone();
        let http = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(http).capabilities(caps).connect(&self.url).await.unwrap_or_else(|e| {
            let log =
                std::fs::read_to_string(self.profile.path().join("chromedriver.log")).unwrap_or_default();
            panic!("no browser session: {e}\n{log}")
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The base64 SHA-256 of the manager's public key (its certificate's SPKI), as
/// Chromium's `--ignore-certificate-errors-spki-list` takes it.
fn manager_spki(d: &Daemon) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let pem = std::fs::read(d.dir.join("certs/node.pem")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let spki = sha2::Sha256::digest(cert.tbs_certificate.subject_pki.raw);
    base64::engine::general_purpose::STANDARD.encode(spki)
}

/// Runs `script` in the page and returns what it returns.
async fn eval(b: &Browser, script: &str) -> Value {
    b.execute(script, Vec::new()).await.unwrap()
}

/// The text of the first element `css` selects, if any.
async fn text(b: &Browser, css: &str) -> Option<String> {
    let script =
        format!("const e = document.querySelector({}); return e ? e.textContent : null;", json!(css));
    eval(b, &script).await.as_str().map(str::to_owned)
}

/// Polls until the text at `css` passes `ok`.
async fn until(b: &Browser, css: &str, ok: impl Fn(&str) -> bool, timeout: Duration) {
    let start = Instant::now();
    loop {
        let got = text(b, css).await;
        if got.as_deref().is_some_and(&ok) {
            return;
        }
        assert!(start.elapsed() < timeout, "{css} shows {got:?} after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until the text at `css` is `want`; returns how long that took.
async fn until_text(b: &Browser, css: &str, want: &str, timeout: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let got = text(b, css).await;
        if got.as_deref() == Some(want) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            return Err(format!("{css} shows {got:?}, not {want:?}, after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn busybox_service(name: &str, replicas: u64) -> ServiceSpec {
    let mut spec = ServiceSpec::new(name, "shoal/busybox");
    spec.mode = ServiceMode::Replicated { replicas };
    spec.task_template.container.args = serve_forever();
    spec
}

#[test]
fn the_dashboard_follows_a_scale_live_in_a_real_browser() {
    if std::env::var("SHOAL_BROWSER_TESTS").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set SHOAL_BROWSER_TESTS=1 to run the browser test (it needs Debian's chromium and \
             chromium-driver; scripts/test installs them and sets it)"
        );
        return;
    }
    let mut d = Daemon::init("m1");
    d.import_busybox();
    let w = Daemon::worker("w1", &d);
    w.import_busybox();
    let c = d.client();
    let read_only = block_on(c.read_only_api_token()).unwrap().token;
    block_on(async {
        c.create_service(&busybox_service("web", 1)).await.unwrap();
        c.create_service(&busybox_service("api", 2)).await.unwrap();
    });
    let driver = Driver::start();
    block_on(async {
        let b = driver.session(&manager_spki(&d)).await;
        // The page gets 1280x800 whatever the window's frame takes.
        let frame = eval(&b, "return [outerWidth - innerWidth, outerHeight - innerHeight]").await;
        let frame: [u32; 2] = serde_json::from_value(frame).unwrap();
        b.set_window_size(1280 + frame[0], 800 + frame[1]).await.unwrap();
        b.goto(&format!("https://{}/ui", d.api_addr)).await.unwrap();

        // Without a token the page holds nothing but the form asking for one.
        until_text(&b, "#conn", "needs a token", Duration::from_secs(10)).await.unwrap();
        assert_eq!(eval(&b, "return document.querySelector('#dash').hidden").await, json!(true));
        let form = b.find(fantoccini::Locator::Css("#token")).await.unwrap();
        form.send_keys(&read_only).await.unwrap();
        b.find(fantoccini::Locator::Css("#login button")).await.unwrap().click().await.unwrap();

        // With the read-only token: the live dashboard, once both services run.
        until_text(&b, "#conn", "live", Duration::from_secs(10)).await.unwrap();
        let web = "#services tr[data-name='web'] .count";
        until_text(&b, web, "1/1", Duration::from_secs(30)).await.unwrap();
        until_text(&b, "#services tr[data-name='api'] .count", "2/2", Duration::from_secs(30)).await.unwrap();
        let loaded = eval(&b, "window.shoalTestMarker = 'still here'; return performance.timeOrigin").await;

        // Scale through the API: the page shows the new count without a reload.
        let scaled = Instant::now();
        c.scale_service("web", 3).await.unwrap();
        let shown = until_text(&b, web, "3/3", Duration::from_secs(2)).await;
        let all = TaskFilter { service: Some("web".into()), ..Default::default() };
        let running = c.tasks(&all).await.unwrap();
        let running = running.iter().filter(|t| t.status.state == TaskState::Running).count();
        let shown = shown.unwrap_or_else(|e| panic!("{e} ({running} tasks of web running by the API)"));
        eprintln!(
            "the page showed 3/3 {shown:?} after the scale call returned ({:?} in all)",
            scaled.elapsed()
        );
        assert_eq!(eval(&b, "return window.shoalTestMarker").await, json!("still here"), "the page reloaded");
        assert_eq!(eval(&b, "return performance.timeOrigin").await, loaded, "the page reloaded");

        // The rest of the page agrees: the banner, the node and the task grid.
        until_text(&b, "#banner", "2 nodes ready, 2 services converged.", Duration::from_secs(2))
            .await
            .unwrap();
        let cards =
            eval(&b, "return document.querySelectorAll('#grid .card:not(.pending):not(.failed)').length")
                .await;
        assert_eq!(cards, json!(5), "a card per running task");
        let columns =
            eval(&b, "return [...document.querySelectorAll('#grid .column h3')].map(e => e.textContent)");
        assert_eq!(columns.await, json!(["m1", "w1"]), "a column per node, the leader first");
        let marks = "return ['m1', 'w1'].map(n => !document.querySelector(`#nodes tr[data-name=${n}] .leader`).hidden)";
        assert_eq!(eval(&b, marks).await, json!([true, false]), "the leader is marked");
        let feed = text(&b, "#feed").await.unwrap();
        assert!(feed.contains("service web updated") && feed.contains("task web.3 running"), "{feed}");

        // A task that fails shows as the service's last error, and a rolling update
        // as a progress bar, both live.
        let mut broken = busybox_service("batch", 1);
        broken.task_template.container.args = ["sh", "-c", "exit 3"].map(String::from).to_vec();
        broken.task_template.restart_policy.condition = RestartCondition::None;
        c.create_service(&broken).await.unwrap();
        let error = "#services tr[data-name='batch'] td.error";
        until(&b, error, |t| t.starts_with("batch.1: task: non-zero exit (3) ("), Duration::from_secs(10))
            .await;
        until(&b, "#banner", |t| t.contains("Not converged: batch."), Duration::from_secs(2)).await;
        let api = c.service("api").await.unwrap();
        let mut spec = api.spec.clone();
        spec.task_template.container.args.push("v2".into());
        spec.update_config.delay = Duration::from_secs(60);
        c.update_service("api", api.meta.version, &spec).await.unwrap();
        until_text(&b, "#services tr[data-name='api'] .state", "updating 1/2", Duration::from_secs(10))
            .await
            .unwrap();

        let png = b.screenshot().await.unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let (w, h) = (
            u32::from_be_bytes(png[16..20].try_into().unwrap()),
            u32::from_be_bytes(png[20..24].try_into().unwrap()),
        );
        assert_eq!((w, h), (1280, 800), "the screenshot's size");
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::write(repo.join("target/dashboard.png"), &png).unwrap();
        if std::env::var_os("SHOAL_WRITE_SCREENSHOT").is_some() {
            std::fs::write(repo.join("docs/img/dashboard.png"), &png).unwrap();
        }

        // The manager restarts: the page says so, comes back by itself and shows
        // what changed meanwhile, still without a reload.
        d.stop();
        until(&b, "#conn", |t| t.starts_with("disconnected"), Duration::from_secs(10)).await;
        d.start(&[]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = c.scale_service("web", 1).await {
            assert!(Instant::now() < deadline, "the restarted manager takes no writes: {e}\n{}", d.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        until_text(&b, "#conn", "live", Duration::from_secs(30)).await.unwrap();
        until_text(&b, web, "1/1", Duration::from_secs(10)).await.unwrap();
        assert_eq!(eval(&b, "return window.shoalTestMarker").await, json!("still here"), "the page reloaded");
        b.close().await.unwrap();
    });
    // No browser process outlives the test.
    let profile = driver.profile.path().to_string_lossy().into_owned();
    drop(driver);
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&profile))
        .collect();
    assert!(left.is_empty(), "browser processes left: {left:?}");
}
