//! ClickHouse over `https://`: a server certificate from a private CA given as
//! `clickhouse.ca_file`, the password from `clickhouse.password_file`; a certificate that
//! does not verify and a wrong password stop the start with errors that say so.

use super::*;

const PASSWORD: &str = "pa$$ word'\"with quotes";

/// A password file holding `password` and a line end, as `kubectl create secret` mounts
/// and `echo` writes.
fn password_file(dir: &Path, password: &str) -> std::path::PathBuf {
    let path = dir.join("clickhouse-password");
    std::fs::write(&path, format!("{password}\n")).expect("write");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca_and_a_password_file_keeps_the_figures_exact() {
    let pki = common::tls::pki();
    let ch = ClickHouse::start_tls(&pki.cert, &pki.key, PASSWORD);
    let https = ch.https_url.clone().expect("https");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = processes::clickhouse_config(&https, dir.path());
    config.clickhouse.ca_file = Some(pki.ca.clone());
    config.clickhouse.password_file = Some(password_file(dir.path(), PASSWORD));
    let stack = common::start(config).await;

    let (mesh, hops, start) = scenario(43, 200);
    let (edges, _, _) = expected(&mesh, &hops);
    sim::send_all(&stack.grpc, &mesh, &hops)
        .await
        .expect("send");
    stack.flush().await;
    check_topology(&stack, &edges, start).await;

    // The rows are in ClickHouse, read back over the same https port with the CA: every
    // call report the server aggregated is in the service table.
    let client = Client::with_roots(
        &https,
        "default",
        PASSWORD,
        Duration::from_secs(30),
        Some(pki.ca_pem.as_bytes()),
    )
    .expect("client");
    let stored = tsv(client
        .execute("SELECT sum(calls) FROM meshscope.service WHERE res = 60 AND side != 'marker'")
        .await
        .expect("query over https"));
    let aggregated =
        common::metric_value(&stack.metrics().await, "meshscope_aggregated_calls_total");
    assert!(aggregated > 0.0);
    assert_eq!(
        stored.trim().parse::<f64>().expect("a sum"),
        aggregated,
        "{stored}"
    );
    // Without the password the server refuses; without the CA rustls does.
    let anonymous = Client::with_roots(
        &https,
        "default",
        "",
        Duration::from_secs(30),
        Some(pki.ca_pem.as_bytes()),
    )
    .expect("client");
    let refused = anonymous
        .execute("SELECT 1")
        .await
        .expect_err("no password");
    assert!(
        matches!(refused, aggregator::Error::ClickHouse { code: Some(_), .. }),
        "{refused}"
    );
    let system_roots =
        Client::new(&https, "default", PASSWORD, Duration::from_secs(30)).expect("client");
    let refused = system_roots.execute("SELECT 1").await.expect_err("no CA");
    assert!(
        matches!(refused, aggregator::Error::ClickHouseTls(_)),
        "{refused}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_certificate_or_a_wrong_password_stops_the_start_with_a_clear_error() {
    let pki = common::tls::pki();
    let ch = ClickHouse::start_tls(&pki.cert, &pki.key, PASSWORD);
    let https = ch.https_url.clone().expect("https");
    let dir = tempfile::tempdir().expect("tempdir");
    let start = |config: meshscope::Config| async move {
        match meshscope::App::start(config).await {
            Ok(app) => {
                app.shutdown().await.expect("shutdown");
                panic!("started")
            }
            Err(e) => format!("{e:#}"),
        }
    };

    // The system's roots do not know the test CA.
    let mut config = processes::clickhouse_config(&https, dir.path());
    config.clickhouse.password_file = Some(password_file(dir.path(), PASSWORD));
    let err = start(config.clone()).await;
    assert!(err.contains("ClickHouse TLS"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // A CA that signed something else.
    let other = common::tls::pki();
    config.clickhouse.ca_file = Some(other.ca.clone());
    let err = start(config.clone()).await;
    assert!(err.contains("ClickHouse TLS"), "{err}");

    // The right CA, the wrong password: ClickHouse's own refusal (code 193).
    config.clickhouse.ca_file = Some(pki.ca.clone());
    config.clickhouse.password_file = Some(password_file(dir.path(), "guess"));
    let err = start(config.clone()).await;
    assert!(err.contains("Code: 193"), "{err}");
    assert!(!err.contains("guess"), "{err}");

    // A CA file that is not PEM, and a missing password file, name the setting.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("write");
    config.clickhouse.ca_file = Some(junk);
    let err = start(config.clone()).await;
    assert!(err.contains("clickhouse.ca_file"), "{err}");
    config.clickhouse.ca_file = Some(pki.ca.clone());
    config.clickhouse.password_file = Some(dir.path().join("nope"));
    let err = start(config).await;
    assert!(err.contains("clickhouse.password_file"), "{err}");
}
