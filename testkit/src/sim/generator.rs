//! Generated traffic: a seeded PRNG and the user requests that fan out through bookinfo.

use super::mesh::{Hop, Mesh, Proto, Target, bookinfo};

/// A small deterministic PRNG (splitmix64), so scenarios replay exactly from a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// Generates user requests through the mesh.
#[derive(Debug, Clone)]
pub struct Generator {
    pub mesh: Mesh,
    rng: Rng,
}

impl Generator {
    /// The bookinfo mesh with a traffic generator seeded with `seed`.
    pub fn new(seed: u64) -> Generator {
        Generator {
            mesh: bookinfo(),
            rng: Rng::new(seed),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn hop(
        &mut self,
        t: i64,
        client: Option<usize>,
        server: Target,
        proto: Proto,
        method: &'static str,
        path: String,
        endpoint: String,
        base_ms: u64,
        error_rate: f64,
    ) -> Hop {
        let server_latency = self
            .rng
            .range(base_ms * 1_000_000 / 2, base_ms * 1_000_000 * 3 / 2)
            + self.rng.range(0, 1000);
        let client_latency = server_latency + self.rng.range(200_000, 2_000_000);
        let err = self.rng.chance(error_rate);
        let (status, grpc_status, failed) = match proto {
            Proto::Grpc => (200, Some(if err { 14 } else { 0 }), false),
            Proto::Http => (if err { 503 } else { 200 }, None, false),
            Proto::Tcp => (0, None, err),
        };
        let is_workload = matches!(server, Target::Workload(_));
        Hop {
            start_unix_nanos: t,
            client,
            server,
            proto,
            method,
            path,
            endpoint,
            status,
            grpc_status,
            failed,
            client_latency_nanos: client_latency,
            server_latency_nanos: server_latency,
            request_bytes: self.rng.range(0, 400),
            response_bytes: self.rng.range(100, 5000),
            mtls: is_workload && client.is_some(),
            client_reports: client.is_some(),
            server_reports: is_workload,
            // Some proxies predate Istio 1.24's peer metadata: their peers are resolved by
            // address instead.
            peer_metadata: !self.rng.chance(0.3),
        }
    }

    /// One user request entering at the gateway at `t` (unix nanos) and the calls it fans
    /// out to.
    pub fn user_request(&mut self, t: i64) -> Vec<Hop> {
        let m = &self.mesh;
        let (gw, pp, details, ratings, recs, mongo) = (
            m.find("istio-ingressgateway", ""),
            m.find("productpage", "v1"),
            m.find("details", "v1"),
            m.find("ratings", "v1"),
            m.find("recommendations", "v1"),
            m.find("mongodb", "v1"),
        );
        let reviews = [3, 4, 5, 9][self.rng.range(0, 4) as usize];
        let id = self.rng.range(0, 1000);
        let ms = 1_000_000i64;
        let mut hops = vec![self.hop(
            t,
            Some(gw),
            Target::Workload(pp),
            Proto::Http,
            "GET",
            "/productpage?u=normal".into(),
            "GET /productpage".into(),
            40,
            0.0,
        )];
        hops.push(self.hop(
            t + ms,
            Some(pp),
            Target::Workload(details),
            Proto::Http,
            "GET",
            format!("/details/{id}"),
            "GET /details/{id}".into(),
            5,
            0.01,
        ));
        hops.push(self.hop(
            t + 7 * ms,
            Some(pp),
            Target::Workload(reviews),
            Proto::Http,
            "GET",
            format!("/reviews/{id}"),
            "GET /reviews/{id}".into(),
            20,
            0.02,
        ));
        if self.mesh.workloads[reviews].version != "v1" {
            hops.push(self.hop(
                t + 9 * ms,
                Some(reviews),
                Target::Workload(ratings),
                Proto::Http,
                "GET",
                format!("/ratings/{id}"),
                "GET /ratings/{id}".into(),
                8,
                0.05,
            ));
            if self.rng.chance(0.3) {
                hops.push(self.hop(
                    t + 10 * ms,
                    Some(ratings),
                    Target::Workload(mongo),
                    Proto::Tcp,
                    "",
                    String::new(),
                    String::new(),
                    3,
                    0.02,
                ));
            }
        }
        hops.push(self.hop(
            t + 30 * ms,
            Some(pp),
            Target::Workload(recs),
            Proto::Grpc,
            "POST",
            "/bookinfo.Recommendations/Recommend".into(),
            "/bookinfo.Recommendations/Recommend".into(),
            12,
            0.03,
        ));
        if self.rng.chance(0.2) {
            let quote = self.rng.range(1, 1 << 40);
            hops.push(self.hop(
                t + 32 * ms,
                Some(pp),
                Target::External {
                    host: "api.example.com",
                    port: 443,
                },
                Proto::Http,
                "GET",
                format!("/v1/quotes/{quote}"),
                "GET /v1/quotes/{id}".into(),
                80,
                0.05,
            ));
        }
        if self.rng.chance(0.1) {
            // A prober without a sidecar: seen only by the server, caller unknown.
            hops.push(self.hop(
                t + 2 * ms,
                None,
                Target::Workload(details),
                Proto::Http,
                "GET",
                "/health".into(),
                "GET /health".into(),
                1,
                0.0,
            ));
        }
        hops
    }
}
