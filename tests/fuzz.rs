//! The fuzzing driver: its seed corpus holds the shared Envoy fixtures encoded as
//! protobuf, and a short campaign over every decoder runs clean (the long one is
//! documented in BENCHMARKS.md).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::envoy_fixtures::{encode, envoy_descriptors, fixture_json, fixtures_dir};
use prost_reflect::DynamicMessage;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

/// `fuzz/corpus/als/` is exactly the shared fixtures encoded as protobuf (rewrite it with
/// `MESHSCOPE_WRITE_CORPUS=1` when the fixtures change).
#[test]
fn the_als_corpus_is_the_shared_fixtures_encoded() {
    let pool = envoy_descriptors();
    let dir = corpus_dir().join("als");
    let write = std::env::var_os("MESHSCOPE_WRITE_CORPUS").is_some();
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".msg"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no .msg fixture");
    for name in &names {
        let bytes = encode(&pool, &fixture_json(name));
        let path = dir.join(name.replace(".msg", ".pb"));
        if write {
            std::fs::create_dir_all(&dir).expect("corpus dir");
            std::fs::write(&path, &bytes).expect("write corpus");
        }
        let kept = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (MESHSCOPE_WRITE_CORPUS=1 writes it)",
                path.display()
            )
        });
        // Map fields encode in no fixed order: compare the messages, not the bytes.
        let desc = pool
            .get_message_by_name("envoy.service.accesslog.v3.StreamAccessLogsMessage")
            .expect("message descriptor");
        let decode = |b: &[u8]| DynamicMessage::decode(desc.clone(), b).expect("protobuf");
        assert_eq!(
            decode(&kept),
            decode(&bytes),
            "{} differs from {name}",
            path.display()
        );
    }
}

fn fuzz(args: &[&str], crashes: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meshscope"))
        .arg("fuzz")
        .args(args)
        .arg("--crashes")
        .arg(crashes)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run meshscope fuzz")
}

/// A short campaign over every decoder finds no panic, and every decoder accepts some
/// inputs (the seeds at least), so the mutants reach past the first check.
#[test]
fn a_short_campaign_over_every_decoder_finds_no_panic() {
    let crashes = tempfile::tempdir().expect("tempdir");
    let corpus = corpus_dir();
    let out = fuzz(
        &[
            "--inputs",
            "2000",
            "--seed",
            "7",
            "--corpus",
            corpus.to_str().expect("path"),
        ],
        crashes.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for target in [
        "als",
        "otlp-protobuf",
        "otlp-json",
        "promql",
        "prometheus-api",
        "spool",
        "parquet",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(target))
            .unwrap_or_else(|| panic!("no line for {target}: {stdout}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], "2000", "{line}");
        let accepted: f64 = cols[3].trim_end_matches('%').parse().expect("accepted");
        assert!(accepted > 0.0, "{target} accepted nothing: {line}");
        assert_eq!(cols[5], "0", "{line}");
    }
    // Panics the served code caught itself are saved as `caught-…`; none escaped.
    let escaped = std::fs::read_dir(crashes.path())
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("panic-"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(escaped, 0);
}
