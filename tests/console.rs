//! The web console in a real browser: Debian's headless Chromium, driven over WebDriver
//! (chromedriver), against a real server fed with generated Envoy access logs. What the
//! page shows is checked against counts computed here from the generated calls. Screenshots
//! go to `$CARGO_TARGET_TMPDIR/console/` for humans to look at.
//!
//! Also, without a browser: the page and its files carry a strict Content-Security-Policy
//! and need no token, and the API the console reads (`/api/v1/status`, `/api/v1/edge`,
//! `timeseries?metrics=`) answers exactly.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use common::truth::{Expected, expected, scenario};
use serde_json::{Value, json};
use testkit::bench::backfill::{self, Shape};
use testkit::browser::{Driver, Session};
use testkit::sim;

/// The old traffic: a small mesh of its own, 90 minutes ago, in none of the recent windows.
const OLD: Shape = Shape {
    services: 4,
    instances: 1,
    endpoints: 2,
};

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console")
}

/// Bookinfo over the last minutes, and the old mesh's five minutes 90 minutes ago; the
/// truth of each.
async fn feed(stack: &common::Stack) -> (Expected, Expected, i64) {
    let (mesh, hops, start) = scenario(11, 150);
    sim::send_all(&stack.grpc, &mesh, &hops)
        .await
        .expect("send bookinfo");
    let old_mesh = backfill::mesh(OLD);
    let old_start = (start / 60 - 90) * 60;
    let old_hops: Vec<sim::Hop> = (0..5)
        .flat_map(|m| backfill::minute_hops(OLD, old_start + m * 60))
        .collect();
    sim::send_all(&stack.grpc, &old_mesh, &old_hops)
        .await
        .expect("send the old mesh");
    stack.flush().await;
    (
        expected(&mesh, &hops),
        expected(&old_mesh, &old_hops),
        start,
    )
}

fn edge_ids(truth: &Expected) -> BTreeSet<String> {
    truth
        .0
        .keys()
        .map(|(c, s, p)| format!("{c}|{s}|{p}"))
        .collect()
}

fn node_ids(truth: &Expected) -> BTreeSet<String> {
    truth
        .0
        .keys()
        .flat_map(|(c, s, _)| [c.clone(), s.clone()])
        .collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// Waits until the map is drawn for the current address; its node and edge ids.
async fn drawn(page: &Session, what: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let v = page
        .wait(
            what,
            "const s = document.getElementById('status-line').textContent;
             if (!/updated/.test(s) || document.getElementById('map-view').hidden) return null;
             return [[...document.querySelectorAll('#map .node')].map(n => n.dataset.id),
                     [...document.querySelectorAll('#map .edge')].map(e => e.dataset.id)];",
        )
        .await
        .expect("webdriver");
    (strings(&v[0]), strings(&v[1]))
}

/// The digits of a figure in the open panel (`1 234` → 1234).
async fn figure(page: &Session, key: &str) -> u64 {
    let text = page
        .wait(
            &format!("the panel's {key}"),
            &format!(
                "const d = document.querySelector('#panel [data-figure={key}] dd'); return d && d.firstChild.textContent;"
            ),
        )
        .await.expect("webdriver");
    let digits: String = text
        .as_str()
        .expect("text")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or_else(|_| panic!("{key}: {text}"))
}

/// The console's errors since the last look, except those `expected` names (a request the
/// test made fail on purpose logs its status).
async fn no_console_errors(page: &Session, when: &str, expected: &[&str]) {
    let bad: Vec<(String, String)> = page
        .console()
        .await
        .expect("webdriver")
        .into_iter()
        .filter(|(level, msg)| {
            (level == "SEVERE" || level == "WARNING") && !expected.iter().any(|e| msg.contains(e))
        })
        .collect();
    assert!(bad.is_empty(), "console errors {when}: {bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_generated_mesh_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    let (now_truth, old_truth, _) = feed(&stack).await;
    let driver = Driver::start().await.expect("webdriver");
    let page = driver.session(1400, 900).await.expect("webdriver");
    let base = &stack.http;

    // The map of the last 15 minutes: exactly the generated services and edges.
    page.goto(&format!("{base}/")).await.expect("webdriver");
    let (nodes, edges) = drawn(&page, "the map of the last 15 minutes").await;
    assert_eq!(edges, edge_ids(&now_truth), "edges drawn");
    assert_eq!(nodes, node_ids(&now_truth), "nodes drawn");
    // Every node and edge names itself (`aria-label`; a tooltip made from it on hover).
    let unnamed = page
        .js(
            "const all = [...document.querySelectorAll('#map .node, #map .edge')];
             const edge = document.querySelector('#map .edge');
             edge.dispatchEvent(new PointerEvent('pointerover', {bubbles: true}));
             const tip = edge.querySelector('title')?.textContent;
             return all.filter(g => !g.getAttribute('aria-label')).length
               + (tip === edge.getAttribute('aria-label') ? 0 : 1000);",
            vec![],
        )
        .await
        .expect("webdriver");
    assert_eq!(unnamed, json!(0));
    let names = strings(
        &page
            .js(
                "return [...document.querySelectorAll('#map .node text.name')].map(t => t.textContent)",
                vec![],
            )
            .await.expect("webdriver"),
    );
    assert_eq!(names, node_ids(&now_truth), "node names as text");
    // Zooming and panning work under the page's policy (no violation is logged).
    // The last press goes through the gesture path: a CSS transform, committed once it
    // pauses.
    for button in ["#zoom-fit", "#zoom-in", "#zoom-in", "#zoom-out"] {
        page.click(button).await.expect("webdriver");
    }
    page.wait(
        "the zoom to settle",
        "return document.querySelector('#map svg').style.transform === ''",
    )
    .await
    .expect("webdriver");
    page.screenshot(&shots().join("map.png"))
        .await
        .expect("webdriver");
    no_console_errors(&page, "on the map", &[]).await;
    // The console log is read for real: an error logged now is seen.
    page.js("console.error('meshscope-probe')", vec![])
        .await
        .expect("webdriver");
    let logged = page.console().await.expect("webdriver");
    assert!(
        logged
            .iter()
            .any(|(level, m)| level == "SEVERE" && m.contains("meshscope-probe")),
        "{logged:?}"
    );

    // Clicking a node opens its panel with its exact calls and errors; the address says so.
    let service = "reviews.default";
    let want = &now_truth.1[service];
    page.click(&format!("#map .node[data-id=\"{service}\"] .shape"))
        .await
        .expect("webdriver");
    page.wait(
        "the panel of reviews",
        &format!("return document.querySelector('#panel [data-node=\"{service}\"]')"),
    )
    .await
    .expect("webdriver");
    assert_eq!(
        figure(&page, "calls").await,
        want.calls,
        "calls in the panel"
    );
    assert_eq!(
        figure(&page, "errors").await,
        want.errors,
        "errors in the panel"
    );
    assert!(
        page.current_url()
            .await
            .expect("webdriver")
            .contains("service=reviews.default"),
        "the address holds the selection"
    );
    // Its instances and endpoints arrive from the API.
    page.wait(
        "the panel's instances",
        "return document.querySelector('#panel h3')?.parentNode.textContent.includes('Instances (')",
    )
    .await.expect("webdriver");
    page.screenshot(&shots().join("service-panel.png"))
        .await
        .expect("webdriver");

    // Keyboard: Escape clears the selection, Enter on a focused node selects it again.
    page.js(
        "document.querySelector('#map .node[data-id=\"ratings.default\"]').focus()",
        vec![],
    )
    .await
    .expect("webdriver");
    page.type_into("#map .node[data-id=\"ratings.default\"]", "\u{E007}")
        .await
        .expect("webdriver");
    page.wait(
        "the panel of ratings after Enter",
        "return document.querySelector('#panel [data-node=\"ratings.default\"]')",
    )
    .await
    .expect("webdriver");
    assert_eq!(
        figure(&page, "calls").await,
        now_truth.1["ratings.default"].calls
    );
    page.type_into("#map .node[data-id=\"ratings.default\"]", "\u{E00C}")
        .await
        .expect("webdriver");
    page.wait(
        "the panel to close on Escape",
        "return document.getElementById('panel').hidden && !location.search.includes('service=')",
    )
    .await
    .expect("webdriver");

    // The whole view state round-trips through the address.
    let view = "?window=1h&service=reviews.default&label=p99&q=ratings&virtual=hide";
    page.goto(&format!("{base}/{view}"))
        .await
        .expect("webdriver");
    drawn(&page, "the map from a shared link").await;
    let controls = page
        .js(
            "return [document.getElementById('window').value, document.getElementById('label').value,
                     document.getElementById('search').value, document.getElementById('hide-virtual').checked,
                     document.querySelector('#panel [data-node]')?.dataset.node]",
            vec![],
        )
        .await.expect("webdriver");
    assert_eq!(
        controls,
        json!(["1h", "p99", "ratings", true, "reviews.default"])
    );
    assert!(
        page.current_url().await.expect("webdriver").ends_with(view),
        "{}",
        page.current_url().await.expect("webdriver")
    );
    // With virtual nodes hidden, `unknown` and the external host are gone.
    let (nodes, _) = drawn(&page, "the map without virtual nodes").await;
    let real: BTreeSet<String> = now_truth
        .1
        .keys()
        .filter(|s| s.contains('.') && !s.contains(':'))
        .cloned()
        .collect();
    assert!(nodes.is_subset(&node_ids(&now_truth)));
    assert!(!nodes.contains("unknown"), "{nodes:?}");
    assert!(real.is_subset(&nodes), "{real:?} ⊄ {nodes:?}");
    // An edge label shows the chosen figure: p99 in ms.
    let label = page
        .js(
            "return document.querySelector('#map .edge .label')?.textContent",
            vec![],
        )
        .await
        .expect("webdriver");
    assert!(
        label.as_str().is_some_and(|l| l.ends_with(" ms")),
        "{label}"
    );

    // An edge: each side's report beside the other. An edge only its server reports (the
    // gateway's from `unknown`) and one only its client reports (an external host) show
    // their calls in that side's column and nothing in the other.
    let digits = |v: &Value| -> Option<u64> {
        v.as_str()?
            .chars()
            .filter(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    };
    for (what, server_side) in [("server only", true), ("client only", false)] {
        let ((c, sv, p), want) = now_truth
            .0
            .iter()
            .find(|(_, e)| e.server_seen == server_side && e.client_seen != server_side)
            .unwrap_or_else(|| panic!("an edge reported by the {what}"));
        let id = format!("{c}|{sv}|{p}");
        page.goto(&format!("{base}/?edge={}", common::enc(&id)))
            .await
            .expect("webdriver");
        let sides = page
            .wait(
                "the edge's sides",
                "const rows = [...document.querySelectorAll('#panel table.sides tbody tr')];
                 return rows.length && rows.map(r => [...r.children].map(c => c.textContent));",
            )
            .await
            .expect("webdriver");
        let calls = sides
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r[0] == "Calls")
            .expect("a Calls row");
        let (client, server) = (digits(&calls[1]), digits(&calls[2]));
        if want.server_seen {
            assert_eq!((client, server), (None, Some(want.calls)), "{id}: {sides}");
        } else {
            assert_eq!((client, server), (Some(want.calls), None), "{id}: {sides}");
        }
        page.screenshot(&shots().join(format!("edge-panel-{}.png", what.replace(' ', "-"))))
            .await
            .expect("webdriver");
    }

    // A service's page: its figures and two full charts.
    page.goto(&format!("{base}/?view=service&service=reviews.default"))
        .await
        .expect("webdriver");
    page.wait(
        "the service page's charts",
        "return document.querySelectorAll('#service-view .uplot').length === 2",
    )
    .await
    .expect("webdriver");
    let calls = page
        .js(
            "return document.querySelector('#service-view [data-figure=calls] dd').firstChild.textContent",
            vec![],
        )
        .await
        .expect("webdriver");
    assert_eq!(digits(&calls), Some(now_truth.1["reviews.default"].calls));
    page.screenshot(&shots().join("service-page.png"))
        .await
        .expect("webdriver");

    // Focus: ratings and what lies one hop from it, computed from the generated edges.
    let mut near: BTreeSet<String> = BTreeSet::from(["ratings.default".to_string()]);
    for (c, s, _) in now_truth.0.keys() {
        if c == "ratings.default" {
            near.insert(s.clone());
        }
        if s == "ratings.default" {
            near.insert(c.clone());
        }
    }
    page.goto(&format!("{base}/?focus=ratings.default"))
        .await
        .expect("webdriver");
    let (nodes, _) = drawn(&page, "the focused map").await;
    assert_eq!(nodes, near, "focus with depth 1");

    // A collapsed namespace is one node standing for its services.
    page.goto(&format!("{base}/?collapse=default"))
        .await
        .expect("webdriver");
    let (nodes, _) = drawn(&page, "the map with default collapsed").await;
    assert!(nodes.contains(" ns:default"), "{nodes:?}");
    assert!(!nodes.iter().any(|n| n.ends_with(".default")), "{nodes:?}");
    let members = page
        .js(
            "return document.querySelector('#map .node.kind-namespace .count').textContent",
            vec![],
        )
        .await
        .expect("webdriver");
    let in_default = node_ids(&now_truth)
        .iter()
        .filter(|n| n.ends_with(".default"))
        .count();
    assert_eq!(members, json!(in_default.to_string()));
    no_console_errors(&page, "in the panels and pages", &[]).await;

    // Health thresholds: with failing above 0.1 %, every node with an error ratio above it
    // turns red, and the address keeps the threshold.
    page.goto(&format!("{base}/")).await.expect("webdriver");
    drawn(&page, "the map").await;
    page.js(
        "const i = document.getElementById('err-crit'); i.value = '0.1'; i.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await
    .expect("webdriver");
    let failing: BTreeSet<String> = now_truth
        .1
        .iter()
        .filter(|(_, e)| e.calls > 0 && e.errors as f64 / e.calls as f64 > 0.001)
        .map(|(name, _)| name.clone())
        .collect();
    assert!(!failing.is_empty());
    let red = page
        .wait(
            "red nodes",
            "const red = [...document.querySelectorAll('#map .node.h-crit')].map(n => n.dataset.id);
             return location.search.includes('err_crit=0.1') && red.length && red;",
        )
        .await
        .expect("webdriver");
    assert_eq!(strings(&red), failing, "nodes over the threshold");

    // A custom window from the picker: the form opens with the current window, and
    // applying it puts start and end in the address.
    page.select("#window", "custom").await.expect("webdriver");
    page.wait(
        "the custom window form",
        "return !document.getElementById('custom-range').hidden && /window=custom&start=\\d+&end=\\d+/.test(location.search)",
    )
    .await
    .expect("webdriver");
    page.click("#custom-range button[type=submit]")
        .await
        .expect("webdriver");
    let (_, edges) = drawn(&page, "the map of the custom window").await;
    assert_eq!(
        edges,
        edge_ids(&now_truth),
        "the custom window holds the recent calls"
    );

    // The window picker: 6 hours hold the old mesh too, 15 minutes do not.
    page.goto(&format!("{base}/")).await.expect("webdriver");
    drawn(&page, "the map").await;
    let places = "return Object.fromEntries([...document.querySelectorAll('#map .node')].map(n => [n.dataset.id, n.getAttribute('transform')]))";
    let before = page.js(places, vec![]).await.expect("webdriver");
    page.select("#window", "6h").await.expect("webdriver");
    let (_, edges) = drawn(&page, "the map of 6 hours").await;
    let both: BTreeSet<String> = edge_ids(&now_truth)
        .union(&edge_ids(&old_truth))
        .cloned()
        .collect();
    // The wait may see the 15-minute map still: wait for the old edges.
    let edges = if edges == both {
        edges
    } else {
        page.wait(
            "the old mesh's edges",
            "return document.querySelectorAll('#map .edge[data-id^=\"svc-\"]').length > 0",
        )
        .await
        .expect("webdriver");
        drawn(&page, "the map of 6 hours").await.1
    };
    assert_eq!(edges, both, "6 h: both meshes");
    assert!(
        page.current_url()
            .await
            .expect("webdriver")
            .contains("window=6h")
    );
    page.select("#window", "15m").await.expect("webdriver");
    page.wait(
        "the old edges to go",
        "return document.querySelectorAll('#map .edge').length > 0 && document.querySelectorAll('#map .edge[data-id^=\"svc-\"]').length === 0",
    )
    .await.expect("webdriver");
    // The nodes drawn before are where they were: the layout stays put across reloads.
    let after = page.js(places, vec![]).await.expect("webdriver");
    assert_eq!(after, before, "the layout moved");
    no_console_errors(&page, "after the window picker", &[]).await;

    // Compare the last hour with the hour before: the old mesh's edges exist only in the
    // earlier hour (removed), bookinfo's only now (added).
    page.goto(&format!("{base}/?window=1h&compare=previous"))
        .await
        .expect("webdriver");
    let (_, edges) = drawn(&page, "the compared map").await;
    assert_eq!(edges, both);
    let changes = page
        .js(
            "const out = {};
             for (const e of document.querySelectorAll('#map .edge'))
               out[e.dataset.id] = [...e.classList].find(c => c.startsWith('change-'));
             return out;",
            vec![],
        )
        .await
        .expect("webdriver");
    for id in edge_ids(&old_truth) {
        assert_eq!(changes[&id], json!("change-removed"), "{id}");
    }
    for id in edge_ids(&now_truth) {
        assert_eq!(changes[&id], json!("change-added"), "{id}");
    }
    page.screenshot(&shots().join("compare.png"))
        .await
        .expect("webdriver");

    // The services table: every service of the window, with its exact calls.
    page.goto(&format!("{base}/?view=services&sort=name&order=asc"))
        .await
        .expect("webdriver");
    let rows = page
        .wait(
            "the services table",
            "const rows = [...document.querySelectorAll('#table-view tbody tr')];
             return rows.length && rows.map(r => [r.dataset.service, r.children[2].textContent]);",
        )
        .await
        .expect("webdriver");
    let mut got = BTreeMap::new();
    for r in rows.as_array().expect("rows") {
        let calls: String = r[1]
            .as_str()
            .expect("calls")
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        got.insert(
            r[0].as_str().expect("name").to_string(),
            calls.parse::<u64>().expect("calls"),
        );
    }
    for (name, want) in &now_truth.1 {
        assert_eq!(got.get(name), Some(&want.calls), "{name} in the table");
    }
    let order: Vec<String> = got.keys().cloned().collect();
    let shown: Vec<String> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r[0].as_str().expect("name").to_string())
        .collect();
    assert_eq!(shown, order, "sorted by name");
    page.screenshot(&shots().join("services.png"))
        .await
        .expect("webdriver");

    // No data in the window: the page says how to send some, with this server's address.
    page.goto(&format!("{base}/?start=1000000000&end=1000003600"))
        .await
        .expect("webdriver");
    let text = page
        .wait(
            "the empty state",
            "const e = document.getElementById('empty'); return !e.hidden && e.textContent;",
        )
        .await
        .expect("webdriver");
    let grpc_port = stack.app.grpc_addr.port().to_string();
    let text = text.as_str().expect("text");
    assert!(text.contains("No calls in"), "{text}");
    assert!(text.contains(&grpc_port), "{text}");
    page.screenshot(&shots().join("empty.png"))
        .await
        .expect("webdriver");
    no_console_errors(&page, "in the empty state", &[]).await;

    // The API refuses the view: a banner says why, never a blank page.
    page.goto(&format!("{base}/?start=0&end=99999999999"))
        .await
        .expect("webdriver");
    let banner = page
        .wait(
            "the error banner",
            "const b = document.getElementById('banner'); return !b.hidden && b.textContent;",
        )
        .await
        .expect("webdriver");
    assert!(
        banner.as_str().is_some_and(|b| b.contains("longer than")),
        "{banner}"
    );
    // What of an address is not understood is said, and the rest of the view stands.
    page.goto(&format!("{base}/?window=3y&label=p99"))
        .await
        .expect("webdriver");
    drawn(&page, "the map despite a bad window").await;
    let said = page
        .js(
            "return [document.getElementById('banner').hidden, document.getElementById('banner').textContent, document.getElementById('label').value]",
            vec![],
        )
        .await
        .expect("webdriver");
    assert_eq!(said[0], json!(false), "{said}");
    assert!(
        said[1].as_str().is_some_and(|t| t.contains("window=3y")),
        "{said}"
    );
    assert_eq!(said[2], json!("p99"));
    page.goto(&format!("{base}/?start=0&end=99999999999"))
        .await
        .expect("webdriver");
    page.wait(
        "the error banner again",
        "const b = document.getElementById('banner'); return !b.hidden && b.textContent.includes('longer than');",
    )
    .await
    .expect("webdriver");
    page.screenshot(&shots().join("error.png"))
        .await
        .expect("webdriver");
    no_console_errors(&page, "with the banner", &["400"]).await;

    page.close().await;
    stack.stop().await;
}

/// A server in `dir` whose reads need `token`.
async fn with_read_token(dir: &std::path::Path, token: &str) -> common::Stack {
    let tokens = dir.join("read-tokens");
    std::fs::write(&tokens, format!("{token}\n")).expect("tokens");
    let mut config = common::config(&dir.join("data"));
    config.auth.read_tokens_file = Some(tokens);
    common::start(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_asks_for_a_token_when_reads_need_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = with_read_token(dir.path(), "console-reader-token").await;
    let (mesh, hops, _) = scenario(3, 40);
    sim::send_all(&stack.grpc, &mesh, &hops)
        .await
        .expect("send");
    stack.flush().await;
    let driver = Driver::start().await.expect("webdriver");
    let page = driver.session(1200, 800).await.expect("webdriver");
    page.goto(&format!("{}/", stack.http))
        .await
        .expect("webdriver");
    page.wait(
        "the token dialog",
        "return document.getElementById('token-dialog').open",
    )
    .await
    .expect("webdriver");
    // A wrong token is refused and asked again.
    page.type_into("#token-input", "wrong\u{E007}")
        .await
        .expect("webdriver");
    page.wait(
        "the dialog again after a wrong token",
        "return document.getElementById('token-dialog').open && !document.getElementById('banner').hidden",
    )
    .await.expect("webdriver");
    page.type_into("#token-input", "console-reader-token\u{E007}")
        .await
        .expect("webdriver");
    let (_, edges) = drawn(&page, "the map with the token").await;
    assert_eq!(edges, edge_ids(&expected(&mesh, &hops)));
    page.screenshot(&shots().join("token.png"))
        .await
        .expect("webdriver");
    no_console_errors(&page, "with tokens", &["401"]).await;
    page.close().await;
    stack.stop().await;
}

/// The page and its files: served without a token, under a strict policy, the files
/// cacheable for good under this build's version, another version's address a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_under_a_strict_policy_without_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = with_read_token(dir.path(), "secret-reader").await;
    let page = reqwest::get(format!("{}/", stack.http))
        .await
        .expect("get /");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.expect("html");
    assert!(!html.contains("style="), "no inline style attributes");
    assert!(
        !html.contains("<script>") && !html.contains("<style"),
        "no inline script or style"
    );
    let script = html
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a script")
        .to_string();
    let asset = reqwest::get(format!("{}{script}", stack.http))
        .await
        .expect("asset");
    assert_eq!(asset.status(), 200, "{script}");
    assert!(
        asset.headers()["cache-control"]
            .to_str()
            .expect("cache-control")
            .contains("immutable")
    );
    assert!(
        asset.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/javascript")
    );
    let stale = script.replacen("/ui/", "/ui/0000", 1);
    let gone = reqwest::get(format!("{}{stale}", stack.http))
        .await
        .expect("stale");
    assert_eq!(gone.status(), 404);
    // The data still needs the token.
    let (status, _) = stack.get("/api/v1/status").await;
    assert_eq!(status, 401);
    stack.stop().await;
}

/// What the console reads besides the topology, against the generated truth: each side's
/// view of an edge, series as columns, and the server's own description.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_the_console_reads_answers_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    config.api.grafana_url = Some("https://grafana.example.com/".into());
    let stack = common::start(config).await;
    let (truth, _, start) = feed(&stack).await;
    let w = common::truth::window(start);

    let status = stack.ok("/api/v1/status").await;
    assert_eq!(
        status["grpc"]["address"],
        json!(stack.app.grpc_addr.to_string())
    );
    assert_eq!(status["read_tokens"], json!(false));
    assert_eq!(status["grafana_url"], json!("https://grafana.example.com"));
    assert!(status["now"].as_i64().is_some_and(|n| n > start));

    // Each side of every edge: the server's side counts what the truth counts when the
    // server reported, and a side that did not report is null.
    for ((c, s, p), want) in &truth.0 {
        let got = stack
            .ok(&format!(
                "/api/v1/edge?client={}&server={}&protocol={p}&{w}",
                common::enc(c),
                common::enc(s)
            ))
            .await;
        let e = &got["edges"][0];
        assert_eq!(got["edges"].as_array().map(Vec::len), Some(1), "{got}");
        let counted = if want.server_seen {
            &e["server"]
        } else {
            &e["client"]
        };
        assert_eq!(
            counted["calls"].as_u64(),
            Some(want.calls),
            "{c}->{s}: {got}"
        );
        assert_eq!(counted["errors"].as_u64(), Some(want.errors), "{c}->{s}");
        assert_eq!(e["server"].is_null(), !want.server_seen, "{c}->{s}: {got}");
        assert_eq!(e["client"].is_null(), !want.client_seen, "{c}->{s}: {got}");
    }

    // Series as columns: every step present, and the calls add up to the service's.
    let (service, want) = truth
        .1
        .iter()
        .find(|(s, _)| s.as_str() == "productpage.default")
        .expect("productpage");
    let got = stack
        .ok(&format!(
            "/api/v1/timeseries?entity=service&service={service}&metrics=calls,errors,p99_ms&step=120&{w}"
        ))
        .await;
    let times = got["times"].as_array().expect("times");
    assert_eq!(times.len(), 6, "11 minutes at a 2-minute step: {got}");
    let column = |m: &str| -> Vec<Value> {
        got["series"]
            .as_array()
            .expect("series")
            .iter()
            .find(|c| c["metric"] == m)
            .unwrap_or_else(|| panic!("{m}: {got}"))["values"]
            .as_array()
            .expect("values")
            .clone()
    };
    // Counts come as JSON numbers (floats, as every figure of a series).
    let sum = |m: &str| -> u64 { column(m).iter().filter_map(Value::as_f64).sum::<f64>() as u64 };
    assert_eq!(sum("calls"), want.calls);
    assert_eq!(sum("errors"), want.errors);
    assert_eq!(column("p99_ms").len(), times.len());
    // One side of an edge, over time, adds up to that side's figures.
    let ((c, s, p), e) = truth
        .0
        .iter()
        .find(|(_, e)| e.client_seen && e.server_seen)
        .expect("an edge both sides report");
    let client = stack
        .ok(&format!(
            "/api/v1/timeseries?entity=edge&client={c}&server={s}&protocol={p}&side=client&metrics=calls&{w}"
        ))
        .await;
    let sides = stack
        .ok(&format!(
            "/api/v1/edge?client={c}&server={s}&protocol={p}&{w}"
        ))
        .await;
    let client_calls = client["series"][0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(Value::as_f64)
        .sum::<f64>() as u64;
    assert_eq!(
        Some(client_calls),
        sides["edges"][0]["client"]["calls"].as_u64()
    );
    assert!(e.calls > 0);
    // Bad asks are 400 with a reason.
    for bad in [
        "metric=calls&metrics=calls",
        "metrics=calls,calls",
        "metrics=calls,nope",
        "metric=calls,errors",
        "metric=calls&side=client",
    ] {
        let (code, body) = stack
            .get(&format!(
                "/api/v1/timeseries?entity=service&service={service}&{bad}"
            ))
            .await;
        assert_eq!(code, 400, "{bad}: {body}");
    }
    stack.stop().await;
}

/// `meshscope demo` as a newcomer runs it (default settings): its console shows bookinfo
/// (Envoy access logs) and the traced shop (OTLP) on the map. The time it took is printed
/// (measured, not asserted: the 15 s is checked in the closing notes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_bookinfo_and_the_shop_on_the_map() {
    let data = tempfile::tempdir().expect("tempdir");
    let http = common::free_port();
    let started = std::time::Instant::now();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshscope"))
        .arg("demo")
        .args(["--grpc-addr", "127.0.0.1:0"])
        .args(["--otlp-http-addr", "127.0.0.1:0"])
        .args(["--http-addr", &format!("127.0.0.1:{http}")])
        .arg("--data-dir")
        .arg(data.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn meshscope demo");
    let base = format!("http://127.0.0.1:{http}");
    common::wait_healthy(&base).await;
    let driver = Driver::start().await.expect("webdriver");
    let page = driver.session(1400, 900).await.expect("webdriver");
    page.goto(&format!("{base}/?refresh=10s"))
        .await
        .expect("webdriver");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let want = [
        "productpage.default",
        "reviews.default",
        "ratings.default",
        "storefront.shop",
        "catalog.shop",
    ];
    loop {
        let drawn = page
            .js(
                "return [...document.querySelectorAll('#map .node')].map(n => n.dataset.id)",
                vec![],
            )
            .await
            .expect("webdriver");
        let drawn = strings(&drawn);
        if want.iter().all(|w| drawn.contains(*w)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo's map never showed {want:?}: {drawn:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    eprintln!(
        "the demo's map showed bookinfo and the shop {:.1} s after the process started",
        started.elapsed().as_secs_f64()
    );
    page.screenshot(&shots().join("demo.png"))
        .await
        .expect("webdriver");
    no_console_errors(&page, "on the demo's map", &[]).await;
    page.close().await;
    common::sigterm(&child).await;
    let exit = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exit in time")
        .expect("wait");
    assert!(exit.status.success(), "{exit:?}");
}

/// Names come from whoever sends telemetry: markup in a service or endpoint name is shown
/// as text on the map, in the panel and in the table, and never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_shown_as_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    let workload = |app: &'static str, namespace: &'static str, n: usize| sim::Workload {
        app,
        version: "v1",
        namespace,
        pod: format!("pod-{n}-<i>x</i>"),
        ip: format!("10.9.0.{n}"),
        gateway: false,
        port: 8080,
        legacy_proxy: false,
    };
    let mesh = sim::Mesh {
        workloads: vec![
            workload("<img src=x onerror=\"window.pwned=1\">", "evil", 1),
            workload("quoted'\"&<b>bold</b>", "ns", 2),
        ],
    };
    let now = common::now_nanos() / 1_000_000_000 / 60 * 60 - 120;
    let hops: Vec<sim::Hop> = (0..20)
        .map(|i| sim::Hop {
            start_unix_nanos: (now + i) * 1_000_000_000,
            client: Some(0),
            server: sim::Target::Workload(1),
            proto: sim::Proto::Http,
            method: "GET",
            path: "/<script>window.pwned=2</script>".into(),
            endpoint: "GET /<script>window.pwned=2</script>".into(),
            status: if i % 4 == 0 { 500 } else { 200 },
            grpc_status: None,
            failed: false,
            client_latency_nanos: 3_000_000,
            server_latency_nanos: 2_000_000,
            request_bytes: 10,
            response_bytes: 20,
            mtls: true,
            client_reports: true,
            server_reports: true,
            peer_metadata: true,
        })
        .collect();
    sim::send_all(&stack.grpc, &mesh, &hops)
        .await
        .expect("send");
    stack.flush().await;
    let truth = expected(&mesh, &hops);
    let names = node_ids(&truth);
    let server = mesh.workloads[1].service();

    let driver = Driver::start().await.expect("webdriver");
    let page = driver.session(1200, 800).await.expect("webdriver");
    page.goto(&format!("{}/", stack.http))
        .await
        .expect("webdriver");
    let (nodes, _) = drawn(&page, "the map of hostile names").await;
    assert_eq!(nodes, names);
    let texts = strings(
        &page
            .js(
                "return [...document.querySelectorAll('#map .node text.name')].map(t => t.textContent)",
                vec![],
            )
            .await
            .expect("webdriver"),
    );
    assert_eq!(texts, names, "names drawn as they are");
    // Open the server's panel (its endpoint holds a script tag), then the table.
    page.goto(&format!("{}/?service={}", stack.http, common::enc(&server)))
        .await
        .expect("webdriver");
    let title = page
        .wait(
            "the endpoint in the panel",
            "const t = [...document.querySelectorAll('#panel td.name')].map(td => td.textContent);
             return t.some(x => x.includes('<script>')) && document.getElementById('panel-title').textContent;",
        )
        .await
        .expect("webdriver");
    assert_eq!(title, json!(server));
    page.goto(&format!("{}/?view=services", stack.http))
        .await
        .expect("webdriver");
    page.wait(
        "the table",
        "return document.querySelectorAll('#table-view tbody tr').length === 2",
    )
    .await
    .expect("webdriver");
    let injected = page
        .js(
            "return [window.pwned ?? null, document.querySelectorAll('body img, body b, body i, main script').length]",
            vec![],
        )
        .await
        .expect("webdriver");
    assert_eq!(
        injected,
        json!([null, 0]),
        "no markup from names ran or rendered"
    );
    page.screenshot(&shots().join("hostile-names.png"))
        .await
        .expect("webdriver");
    no_console_errors(&page, "with hostile names", &[]).await;
    page.close().await;
    stack.stop().await;
}

/// A graph over 600 edges: drawn without edge labels from afar (they would only blur it),
/// and with every label once zoomed in close enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_graph_gets_its_edge_labels_when_zoomed_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(common::config(dir.path())).await;
    let shape = Shape {
        services: 400,
        instances: 1,
        endpoints: 1,
    };
    let mesh = backfill::mesh(shape);
    let minute = (common::now_nanos() / 1_000_000_000 / 60 - 3) * 60;
    // Two minutes: each service is called by one client in even minutes, another in odd.
    let hops: Vec<sim::Hop> = (0..2)
        .flat_map(|m| backfill::minute_hops(shape, minute + m * 60))
        .collect();
    sim::send_all(&stack.grpc, &mesh, &hops)
        .await
        .expect("send");
    stack.flush().await;
    let truth = expected(&mesh, &hops);
    assert!(truth.0.len() > 600, "{} edges", truth.0.len());
    let driver = Driver::start().await.expect("webdriver");
    let page = driver.session(1400, 900).await.expect("webdriver");
    page.goto(&format!("{}/", stack.http))
        .await
        .expect("webdriver");
    let (_, edges) = drawn(&page, "the large map").await;
    assert_eq!(edges, edge_ids(&truth));
    let labels = "return document.querySelectorAll('#map .edge .label').length";
    assert_eq!(
        page.js(labels, vec![]).await.expect("webdriver"),
        json!(0),
        "no labels from afar"
    );
    for _ in 0..12 {
        page.click("#zoom-in").await.expect("webdriver");
    }
    let want = truth.0.len();
    page.wait(
        "every edge label once zoomed in",
        &format!("return document.querySelectorAll('#map .edge .label').length === {want}"),
    )
    .await
    .expect("webdriver");
    no_console_errors(&page, "on the large map", &[]).await;
    page.close().await;
    stack.stop().await;
}
