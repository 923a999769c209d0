//! What TLS and tokens refuse, per listener (`grpc`, `otlp_http`, `api`), and the TLS
//! file reloads.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Label set `{listener, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    listener: &'static str,
    reason: &'static str,
}

/// Label set `{listener, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    listener: &'static str,
    result: &'static str,
}

/// Authentication failures and TLS reloads. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct SecurityMetrics {
    failures: Family<FailureLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
}

impl SecurityMetrics {
    /// Creates the metrics and registers them (names get the registry's prefix).
    pub fn register(registry: &mut Registry) -> SecurityMetrics {
        let m = SecurityMetrics::default();
        registry.register(
            "auth_failures",
            "Requests and connections refused by TLS or tokens, by listener and reason (missing: no token; invalid: not a token of this listener; forbidden: a read token on an admin endpoint; tls: the TLS handshake failed, a plain-text client or a refused client certificate included)",
            m.failures.clone(),
        );
        registry.register(
            "tls_reloads",
            "Changes of a listener's TLS files seen, by result (ok: new handshakes use them; failed: the previous files stay)",
            m.reloads.clone(),
        );
        m
    }

    /// Counts one refusal.
    pub fn failed(&self, listener: &'static str, reason: &'static str) {
        self.failures
            .get_or_create(&FailureLabels { listener, reason })
            .inc();
    }

    pub(crate) fn tls_reloaded(&self, listener: &'static str, result: &'static str) {
        self.reloads
            .get_or_create(&ReloadLabels { listener, result })
            .inc();
    }
}
