//! The real captured Istio messages in `../shared/fixtures/skywalking/` (proto3 JSON),
//! read through Envoy's descriptors with prost-reflect and encoded as protobuf.

use std::path::PathBuf;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::Value;

/// The fixtures' folder beside the clone.
pub fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/skywalking");
    assert!(dir.is_dir(), "fixtures not found at {}", dir.display());
    dir
}

/// Envoy's descriptor set, as shipped inside the envoy-types crate source.
pub fn envoy_descriptors() -> DescriptorPool {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let lock =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"))
            .expect("Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"envoy-types\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .expect("envoy-types in Cargo.lock");
    let registry = cargo_home.join("registry/src");
    let path = std::fs::read_dir(&registry)
        .expect("cargo registry sources")
        .flatten()
        .map(|d| {
            d.path()
                .join(format!("envoy-types-{version}/src/generated/types.bin"))
        })
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "envoy-types {version} descriptor set not found under {}",
                registry.display()
            )
        });
    DescriptorPool::decode(std::fs::read(path).expect("read descriptors").as_slice())
        .expect("descriptor pool")
}

/// The JSON value of a fixture: `#` and `//` comment lines dropped, trailing garbage
/// (one file has a stray `}`) ignored.
pub fn fixture_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join(name)).expect("fixture");
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::Deserializer::from_str(&body)
        .into_iter::<Value>()
        .next()
        .expect("one JSON value")
        .expect("valid JSON")
}

pub fn encode(pool: &DescriptorPool, json: &Value) -> Vec<u8> {
    let desc = pool
        .get_message_by_name("envoy.service.accesslog.v3.StreamAccessLogsMessage")
        .expect("message descriptor");
    let msg = DynamicMessage::deserialize(desc, json.clone()).expect("proto3 JSON");
    msg.encode_to_vec()
}
