//! A small W3C WebDriver client (JSON over HTTP, with reqwest) driving Debian's headless
//! Chromium through `chromedriver`: the console's browser tests and `meshscope bench
//! console` use it. Only what they need: sessions, navigation, elements, clicks, keys,
//! scripts, screenshots and the browser's console log (a Chromium extension of the
//! protocol).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::error::{During, Error, Result, io};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Longest [`Session::wait`] waits.
const WAIT: Duration = Duration::from_secs(20);

/// A `chromedriver` child process on a free loopback port, and the Chromium profile
/// directory its sessions use.
pub struct Driver {
    child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
    profile: tempfile::TempDir,
}

fn first_existing(candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("finding a free port"))
}

impl Driver {
    /// Starts chromedriver (`$CHROMEDRIVER`, else Debian's `/usr/bin/chromedriver`) and
    /// waits until it is ready.
    pub async fn start() -> Result<Driver> {
        let path = std::env::var("CHROMEDRIVER")
            .ok()
            .or_else(|| {
                first_existing(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
            })
            .ok_or_else(|| {
                Error::Check(
                    "chromedriver not found: install Debian's chromium and chromium-driver (make deps), or set CHROMEDRIVER".into(),
                )
            })?;
        let port = free_port()?;
        let child = tokio::process::Command::new(&path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("starting {path}")))?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == json!(true)),
                Err(_) => false,
            };
            if ready {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Check(format!("{path} did not come up in 30 s")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Driver {
            child,
            base,
            http,
            profile: tempfile::tempdir().map_err(io("creating a Chromium profile dir"))?,
        })
    }

    /// A new headless Chromium session with a `width`×`height` window and its console
    /// logged (`$CHROMIUM`, else Debian's `/usr/bin/chromium`, else chromedriver's choice).
    pub async fn session(&self, width: u32, height: u32) -> Result<Session> {
        let mut options = json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", self.profile.path().display()),
            ],
        });
        if let Some(binary) = std::env::var("CHROMIUM")
            .ok()
            .or_else(|| first_existing(&["/usr/bin/chromium"]))
        {
            options["binary"] = json!(binary);
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let resp: Value = self
            .http
            .post(format!("{}/session", self.base))
            .json(&caps)
            .send()
            .await
            .during("starting a browser session")?
            .json()
            .await
            .during("starting a browser session")?;
        let id = resp["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| Error::Check(format!("no browser session: {resp}")))?;
        Ok(Session {
            http: self.http.clone(),
            url: format!("{}/session/{id}", self.base),
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The browsers chromedriver started end with it, even when a session was not
            // closed (a failed test); chromedriver itself is killed on drop. (They stay in
            // the terminal's process group, so Ctrl-C reaches them all.)
            let _ = std::process::Command::new("pkill")
                .args(["-TERM", "-P", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// One browser session.
pub struct Session {
    http: reqwest::Client,
    url: String,
}

fn truthy(v: &Value) -> bool {
    !(v.is_null()
        || *v == json!(false)
        || *v == json!("")
        || *v == json!(0)
        || v.as_array().is_some_and(Vec::is_empty))
}

impl Session {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let what = || format!("webdriver {path}");
        let resp: Value = req
            .send()
            .await
            .during(what())?
            .json()
            .await
            .during(what())?;
        if let Some(err) = resp["value"]["error"].as_str() {
            return Err(Error::Check(format!(
                "webdriver {path}: {err}: {}",
                resp["value"]["message"].as_str().unwrap_or("")
            )));
        }
        Ok(resp["value"].clone())
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    /// Opens `url` (returns once the page has loaded).
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.post("/url", json!({ "url": url })).await.map(drop)
    }

    pub async fn current_url(&self) -> Result<String> {
        let v = self.cmd(reqwest::Method::GET, "/url", None).await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; its result.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Waits up to 20 s until `script` returns a truthy value; that value. The error names
    /// `what` and what the page's status line and banner say.
    pub async fn wait(&self, what: &str, script: &str) -> Result<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.js(script, vec![]).await?;
            if truthy(&v) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                let page = self
                    .js(
                        "return (document.getElementById('status-line')?.textContent ?? '') + ' | banner: ' + (document.getElementById('banner')?.textContent ?? '')",
                        vec![],
                    )
                    .await?;
                return Err(Error::Check(format!(
                    "waited {} s for {what}; the page says {page}",
                    WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first element matching `css`.
    pub async fn find(&self, css: &str) -> Result<String> {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await?;
        v[ELEMENT]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Check(format!("no element {css}")))
    }

    /// Clicks the first element matching `css` as a user does (the pointer at its centre).
    pub async fn click(&self, css: &str) -> Result<()> {
        let el = self.find(css).await?;
        self.post(&format!("/element/{el}/click"), json!({}))
            .await
            .map(drop)
    }

    /// Types `text` into the first element matching `css` (`\u{E007}` is Enter).
    pub async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let el = self.find(css).await?;
        self.post(&format!("/element/{el}/value"), json!({ "text": text }))
            .await
            .map(drop)
    }

    /// Picks the option with value `value` of the `<select>` matching `css`, by clicking it.
    pub async fn select(&self, css: &str, value: &str) -> Result<()> {
        self.click(css).await?;
        self.click(&format!("{css} option[value=\"{value}\"]"))
            .await
    }

    /// Writes a PNG of the viewport to `path` (creating its directory).
    pub async fn screenshot(&self, path: &Path) -> Result<PathBuf> {
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .map_err(|e| Error::Check(format!("a screenshot that is not base64: {e}")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        std::fs::write(path, png).map_err(io(format!("writing {}", path.display())))?;
        Ok(path.to_path_buf())
    }

    /// The browser console's entries since the last call: `(level, message)`.
    pub async fn console(&self) -> Result<Vec<(String, String)>> {
        let v = self.post("/se/log", json!({"type": "browser"})).await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or("").to_string(),
                            e["message"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Ends the session (closes the browser).
    pub async fn close(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}
