//! Naming rules: a service is `<name>.<namespace>`, the name the first non-empty of the
//! labels `service.istio.io/canonical-name`, `app.kubernetes.io/name`, `app`, else the
//! workload name (the outbound FQDN `reviews.default.svc.cluster.local` gives the same
//! `reviews.default`); an endpoint is `<METHOD> <path>` with the query string removed and
//! id-like segments (digits, UUIDs, long hex or base64-ish tokens) replaced by `{id}`, or a
//! gRPC path as it is.

/// Longest endpoint kept, in bytes; longer ones are cut at a character boundary.
pub const MAX_ENDPOINT_LEN: usize = 256;

/// `<name>.<namespace>`, or just `<name>` when the namespace is unknown.
pub fn service_name(name: &str, namespace: Option<&str>) -> String {
    match namespace.filter(|n| !n.is_empty()) {
        Some(ns) => format!("{name}.{ns}"),
        None => name.to_string(),
    }
}

/// The service for an in-mesh FQDN: `reviews.default.svc.cluster.local` → `reviews.default`.
/// Returns `None` for names outside the cluster domain (external hosts).
pub fn service_from_fqdn(fqdn: &str) -> Option<String> {
    let mut parts = fqdn.split('.');
    let name = parts.next().filter(|s| !s.is_empty())?;
    let namespace = parts.next().filter(|s| !s.is_empty())?;
    (parts.next() == Some("svc")).then(|| format!("{name}.{namespace}"))
}

/// A workload name from a pod name made by a Deployment (`reviews-v2-7bf8c9648f-xk2lp` →
/// `reviews-v2`), by a StatefulSet or DaemonSet (`web-0`, `fluentd-x7k2p` → `web`,
/// `fluentd`); the pod name itself when no suffix matches.
pub fn workload_from_pod(pod: &str) -> &str {
    let is_suffix = |s: &str| {
        (1..=10).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let mut parts: Vec<&str> = pod.rsplitn(3, '-').collect();
    parts.reverse();
    match parts.as_slice() {
        [base, rs, id] if is_suffix(rs) && is_suffix(id) && rs.len() >= 6 && id.len() == 5 => base,
        _ => match pod.rsplit_once('-') {
            Some((base, id))
                if !base.is_empty()
                    && (id.len() == 5 || id.bytes().all(|b| b.is_ascii_digit()))
                    && is_suffix(id) =>
            {
                base
            }
            _ => pod,
        },
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Whether a path segment looks like an identifier rather than a route name.
pub fn is_id_like(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    if seg.bytes().all(|b| b.is_ascii_digit()) || is_uuid(seg) {
        return true;
    }
    if seg.len() >= 16 && is_hex(seg) {
        return true;
    }
    seg.len() >= 20
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'+' | b'.'))
        && seg.bytes().any(|b| b.is_ascii_digit())
        && seg.bytes().any(|b| b.is_ascii_alphabetic())
}

/// Cuts `s` to [`MAX_ENDPOINT_LEN`] bytes at a character boundary.
pub fn truncate(mut s: String) -> String {
    if s.len() > MAX_ENDPOINT_LEN {
        let mut cut = MAX_ENDPOINT_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The path without query string or fragment, id-like segments replaced by `{id}`.
pub fn normalize_path(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() {
        return "/".to_string();
    }
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_id_like(seg) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    truncate(out)
}

/// HTTP endpoint: `GET /reviews/{id}`.
pub fn http_endpoint(method: &str, path: &str) -> String {
    truncate(format!("{method} {}", normalize_path(path)))
}

/// gRPC endpoint: the method path (`/helloworld.Greeter/SayHello`), query-free and bounded.
pub fn grpc_endpoint(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    truncate(path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_to_service() {
        assert_eq!(
            service_from_fqdn("reviews.default.svc.cluster.local").as_deref(),
            Some("reviews.default")
        );
        assert_eq!(
            service_from_fqdn("backend.default.svc").as_deref(),
            Some("backend.default")
        );
        assert_eq!(service_from_fqdn("api.example.com"), None);
        assert_eq!(service_from_fqdn(""), None);
    }

    #[test]
    fn pods_to_workloads() {
        assert_eq!(
            workload_from_pod("reviews-v2-7bf8c9648f-xk2lp"),
            "reviews-v2"
        );
        assert_eq!(
            workload_from_pod("istio-ingressgateway-699c7dc774-hjxq5"),
            "istio-ingressgateway"
        );
        assert_eq!(
            workload_from_pod("productpage-v1-d66dcfdc5-kh6v7"),
            "productpage-v1"
        );
        assert_eq!(workload_from_pod("web-0"), "web");
        assert_eq!(workload_from_pod("fluentd-x7k2p"), "fluentd");
        assert_eq!(workload_from_pod("standalone"), "standalone");
    }

    #[test]
    fn endpoints_are_normalised() {
        assert_eq!(http_endpoint("GET", "/reviews/0"), "GET /reviews/{id}");
        assert_eq!(
            http_endpoint("GET", "/details/0?x=1#f"),
            "GET /details/{id}"
        );
        assert_eq!(
            http_endpoint("PUT", "/u/123e4567-e89b-12d3-a456-426614174000/cart"),
            "PUT /u/{id}/cart"
        );
        assert_eq!(
            http_endpoint("GET", "/o/5f2b9c1e8d3a4b6c7d8e9f01"),
            "GET /o/{id}"
        );
        assert_eq!(
            http_endpoint("GET", "/t/eyJhbGciOiJIUzI1NiJ9abc123XYZ"),
            "GET /t/{id}"
        );
        assert_eq!(http_endpoint("GET", "/productpage"), "GET /productpage");
        assert_eq!(http_endpoint("GET", "/api/v1/users"), "GET /api/v1/users");
        assert_eq!(http_endpoint("GET", ""), "GET /");
        assert_eq!(
            grpc_endpoint("/helloworld.Greeter/SayHello"),
            "/helloworld.Greeter/SayHello"
        );
        let long = format!("/{}", "é".repeat(400));
        assert!(http_endpoint("GET", &long).len() <= MAX_ENDPOINT_LEN);
    }
}
