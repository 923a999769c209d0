//! A real ClickHouse server for tests: Debian's `clickhouse-server` (18.16 here; `.ci/deps`
//! installs it) started on loopback with free ports and its data in a temp dir, stopped
//! (SIGTERM) when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ClickHouse {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `https://localhost:PORT` when started by [`ClickHouse::start_tls`].
    pub https_url: Option<String>,
    http: u16,
    _dir: tempfile::TempDir,
}

/// An `https_port` and the certificate and key it serves.
struct Https<'a> {
    port: u16,
    cert: &'a Path,
    key: &'a Path,
}

fn write_config(dir: &Path, http: u16, tcp: u16, https: Option<Https<'_>>, password: &str) {
    let d = dir.display();
    let https = https.map_or(String::new(), |h| {
        format!(
            "<https_port>{}</https_port>\n  <openSSL><server><certificateFile>{}</certificateFile><privateKeyFile>{}</privateKeyFile><verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile><disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols></server></openSSL>",
            h.port,
            h.cert.display(),
            h.key.display()
        )
    });
    let config = format!(
        r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  {https}
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
</yandex>
"#
    );
    let users = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password>PASSWORD</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"#
    .replace("PASSWORD", password);
    std::fs::write(dir.join("config.xml"), config).expect("config.xml");
    std::fs::write(dir.join("users.xml"), users).expect("users.xml");
}

/// `GET /ping` answers `Ok.`.
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut answer = String::new();
    conn.write_all(b"GET /ping HTTP/1.0\r\n\r\n").is_ok()
        && conn.read_to_string(&mut answer).is_ok()
        && answer.ends_with("Ok.\n")
}

impl ClickHouse {
    /// Starts a server and waits for `/ping`.
    pub fn start() -> ClickHouse {
        let dir = tempfile::tempdir().expect("tempdir");
        let (http, tcp) = (super::free_port(), super::free_port());
        write_config(dir.path(), http, tcp, None, "");
        let child = spawn(dir.path(), http);
        ClickHouse {
            child,
            url: format!("http://127.0.0.1:{http}"),
            https_url: None,
            http,
            _dir: dir,
        }
    }

    /// Starts a server that also serves HTTPS with `cert` and `key` (PEM), and whose
    /// `default` user has `password`.
    pub fn start_tls(cert: &Path, key: &Path, password: &str) -> ClickHouse {
        let dir = tempfile::tempdir().expect("tempdir");
        let (http, tcp, port) = (super::free_port(), super::free_port(), super::free_port());
        write_config(
            dir.path(),
            http,
            tcp,
            Some(Https { port, cert, key }),
            password,
        );
        let child = spawn(dir.path(), http);
        ClickHouse {
            child,
            url: format!("http://127.0.0.1:{http}"),
            https_url: Some(format!("https://localhost:{port}")),
            http,
            _dir: dir,
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 15 s); its data stays.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the stopped server again on the same port and data.
    pub fn restart(&mut self) {
        self.child = spawn(self._dir.path(), self.http);
    }
}

fn spawn(dir: &Path, http: u16) -> Child {
    let child = Command::new("clickhouse-server")
        .arg(format!("--config-file={}/config.xml", dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "clickhouse-server runs (Debian package clickhouse-server; `.ci/deps` installs it)",
        );
    // Generous: under a full test run on two cores a restart has taken over 30 s.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !ping(http) {
        assert!(
            Instant::now() < deadline,
            "clickhouse-server did not answer /ping within 90 s; see {}/error.log",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        // The data dir goes away with it: no need for the graceful stop's wait for idle
        // client connections (several seconds on 18.16).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// ClickHouse's current engine through chDB behind a small HTTP stand-in
/// (`tests/chdb_server.py`; `.ci/deps` installs the `chdb` Python package).
pub struct Chdb {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// chDB's data, removed when the stand-in stops (it is killed, so it cannot clean up).
    _dir: tempfile::TempDir,
}

impl Chdb {
    pub fn start() -> Chdb {
        use std::io::BufRead;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chdb_server.py");
        let dir = tempfile::Builder::new()
            .prefix("meshscope-chdb-")
            .tempdir()
            .expect("temp dir");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs tests/chdb_server.py (pip package chdb; `.ci/deps` installs it)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the chDB stand-in prints its port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("chDB stand-in did not start: {line:?}"));
        Chdb {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Chdb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
