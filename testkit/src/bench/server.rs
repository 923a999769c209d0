//! A `meshscope serve` child process on loopback for the benchmarks, and what `/proc`
//! says about it (CPU time, peak RSS).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::secured::Secured;
use crate::error::{Error, Result, io};
use crate::sim::Peer;

/// utime + stime of a process in seconds (USER_HZ = 100 on Linux).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(io(format!("reading {path}")))?;
    let bad = || Error::Check(format!("cannot parse {path}"));
    let after = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(bad)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is index 0, utime is 11, stime is 12.
    let field =
        |i: usize| -> Result<f64> { fields.get(i).and_then(|f| f.parse().ok()).ok_or_else(bad) };
    Ok((field(11)? + field(12)?) / 100.0)
}

/// Peak resident set size of a process (`VmHWM`), in MiB.
pub fn peak_rss_mib(pid: u32) -> Result<f64> {
    status_mib(pid, "VmHWM:")
}

/// Resident set size of a process now (`VmRSS`), in MiB.
pub fn rss_mib(pid: u32) -> Result<f64> {
    status_mib(pid, "VmRSS:")
}

fn status_mib(pid: u32, field: &str) -> Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(io(format!("reading {path}")))?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Check(format!("no {field} in {path}")))?;
    Ok(kib / 1024.0)
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("finding a free port"))
}

/// A `meshscope serve` child process on loopback ports with a temporary data dir; with
/// [`Secured`] files, over TLS with tokens on every listener.
pub struct Server {
    child: tokio::process::Child,
    pub pid: u32,
    /// `http://127.0.0.1:PORT` (or `https://localhost:PORT`) of its HTTP API.
    pub http: String,
    /// `http://127.0.0.1:PORT` (or `https://localhost:PORT`) of its gRPC listener.
    pub endpoint: String,
    /// The TLS and token files, when secured.
    pub secured: Option<Secured>,
    /// Trusts the server's CA and sends the admin token, when secured.
    client: reqwest::Client,
    dir: PathBuf,
    /// Leave `dir` in place on [`Server::stop`].
    keep_dir: bool,
}

impl Server {
    /// Starts `exe` (default: this executable) on a fresh temporary data dir with `env`
    /// set and waits until it is healthy; `secured`: over TLS with tokens.
    pub async fn start(
        exe: Option<&PathBuf>,
        env: &[(&str, String)],
        secured: bool,
    ) -> Result<Server> {
        let dir = std::env::temp_dir().join(format!(
            "meshscope-bench-{}-{}",
            std::process::id(),
            if secured { "tls" } else { "plain" }
        ));
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        // The secured server's key and tokens go in here: for this user only.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(io(format!("restricting {}", dir.display())))?;
        Server::start_in(exe, dir, env, secured).await
    }

    /// Starts `exe` on `dir` (removed by [`Server::stop`]) with `env` set and waits until
    /// it is healthy.
    pub async fn start_in(
        exe: Option<&PathBuf>,
        dir: PathBuf,
        env: &[(&str, String)],
        secured: bool,
    ) -> Result<Server> {
        let (grpc_port, http_port) = (free_port()?, free_port()?);
        let exe = match exe {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(io("finding this executable"))?,
        };
        let secured = if secured {
            Some(Secured::create(&dir)?)
        } else {
            None
        };
        let child = tokio::process::Command::new(&exe)
            .args(["serve", "--grpc-addr", &format!("127.0.0.1:{grpc_port}")])
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .args([
                "--otlp-http-addr",
                "127.0.0.1:0",
                "--enable-admin-api",
                "--data-dir",
            ])
            .arg(&dir)
            .args(secured.iter().flat_map(Secured::args))
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("starting {}", exe.display())))?;
        let pid = child
            .id()
            .ok_or_else(|| Error::Check("the server exited at once".into()))?;
        let (scheme, host) = match secured {
            Some(_) => ("https", "localhost"),
            None => ("http", "127.0.0.1"),
        };
        let client = match &secured {
            Some(s) => s.http_client()?,
            None => reqwest::Client::new(),
        };
        let http = format!("{scheme}://{host}:{http_port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if client
                .get(format!("{http}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Check(
                    "server did not become healthy within 30 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Server {
            child,
            pid,
            http,
            endpoint: format!("{scheme}://{host}:{grpc_port}"),
            secured,
            client,
            dir,
            keep_dir: false,
        })
    }

    /// Where to send ALS and OTLP: the gRPC listener, with the CA and the ingest token
    /// when secured.
    pub fn peer(&self) -> Peer {
        match &self.secured {
            Some(s) => s.peer(&self.endpoint),
            None => Peer::from(&self.endpoint),
        }
    }

    /// `GET` on the HTTP API (with the admin token when secured).
    pub fn get(&self, path_and_query: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path_and_query}", self.http))
    }

    /// `POST /api/v1/admin/flush?waiting_spans=record`: everything sent is written.
    pub async fn flush(&self) -> Result<()> {
        let flush = self
            .client
            .post(format!(
                "{}/api/v1/admin/flush?waiting_spans=record",
                self.http
            ))
            .send()
            .await?;
        if !flush.status().is_success() {
            return Err(Error::Check(format!("flush failed: {}", flush.status())));
        }
        Ok(())
    }

    /// The server's `/metrics` text.
    pub async fn metrics_text(&self) -> Result<String> {
        let resp = self.get("/metrics").send().await?;
        if !resp.status().is_success() {
            return Err(Error::Check(format!("/metrics: {}", resp.status())));
        }
        Ok(resp.text().await?)
    }

    /// Leaves the data dir in place when the server stops.
    pub fn keep_dir(&mut self) {
        self.keep_dir = true;
    }

    /// SIGTERM, wait, remove the data dir (unless kept).
    pub async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
