//! `meshscope bench console`: how long the console takes to draw a large mesh in headless
//! Chromium, and how smoothly it then zooms.
//!
//! Writes the last hour of rollups for `--services` services (2 outgoing edges each, so
//! 1 000 services make 2 000 edges; spread over `--namespaces`) into an embedded store,
//! starts `meshscope serve` on it, and opens the console `--runs` times, each in a fresh
//! browser session. A run's figure is the time from the start of navigation until the map
//! is drawn with every name (the page's `meshscope:map-drawn` mark, set in the frame after
//! the drawing), with its parts: the topology's answer, the layout and the drawing. Then
//! the page zooms 30 times, a frame apart, and the frames' durations are reported.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::Value;

use super::query::{self, Ingest, QueryArgs};
use super::server::Server;
use crate::browser::Driver;
use crate::error::{During, Error, Result};

/// Options of `meshscope bench console`.
#[derive(Args, Debug, Clone)]
pub struct ConsoleArgs {
    /// Services in the generated mesh (each calls two others).
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    /// Namespaces the services are spread over.
    #[arg(long, default_value_t = 1)]
    pub namespaces: usize,
    /// Page loads timed, each in a new browser session.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The server binary (default: this executable).
    #[arg(long)]
    pub server: Option<PathBuf>,
    /// Extra view state for the page's address, e.g. `focus=svc-0001.ns01&depth=2`.
    #[arg(long, default_value = "")]
    pub view: String,
    /// Browser window width and height.
    #[arg(long, default_value = "1600x1000")]
    pub window: String,
    /// Write a screenshot of the last run here.
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
}

/// What one page load measured (milliseconds from the start of navigation).
struct Load {
    drawn: f64,
    /// The page and its scripts ready (`DOMContentLoaded` handled).
    ready: f64,
    /// The topology asked, its first byte, its last byte.
    asked: f64,
    answered: f64,
    received: f64,
    bytes: u64,
    topology: f64,
    layout: f64,
    draw: f64,
    nodes: u64,
    edges: u64,
    names: u64,
}

fn number(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// The median and the maximum.
fn median_max(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() - 1])
}

pub async fn run(args: ConsoleArgs) -> Result<()> {
    if args.services < 2 || args.runs < 1 || args.namespaces < 1 {
        return Err(Error::Check(
            "--services must be at least 2, --runs and --namespaces at least 1".into(),
        ));
    }
    let (width, height) = args
        .window
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .ok_or_else(|| Error::Check(format!("--window {:?}: want WIDTHxHEIGHT", args.window)))?;
    let dir = std::env::temp_dir().join(format!("meshscope-bench-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(crate::error::io(format!("creating {}", dir.display())))?;
    let end = (crate::now_nanos() / 1_000_000_000).div_euclid(60) * 60;
    let data = QueryArgs {
        services: args.services,
        hours: 1,
        runs: 1,
        server: args.server.clone(),
        clickhouse_url: None,
        clickhouse_database: String::new(),
        instances: 2,
        endpoints: 3,
        namespaces: args.namespaces,
        ingest: Ingest::Store,
        keep_data: None,
    };
    let rows = query::load(&dir, &data, end)
        .await
        .during("writing the rollups")?;
    let env = [("MESHSCOPE__STORE__RETENTION_DAYS", "2".to_string())];
    let server = Server::start_in(args.server.as_ref(), dir, &env, false).await?;
    eprintln!(
        "{rows} rollup rows for {} services; server {}",
        args.services, server.http
    );
    let driver = Driver::start().await?;
    let url = format!(
        "{}/?window=1h{}{}",
        server.http,
        if args.view.is_empty() { "" } else { "&" },
        args.view
    );
    let mut loads = Vec::new();
    let mut frames = None;
    for run in 0..args.runs {
        let page = driver.session(width, height).await?;
        let started = Instant::now();
        page.goto(&url).await?;
        let marks = page
            .wait(
                "the map drawn",
                "const d = performance.getEntriesByName('meshscope:map-drawn')[0];
                 const t = performance.getEntriesByName('meshscope:topology-loaded')[0];
                 const nav = performance.getEntriesByType('navigation')[0];
                 const api = performance.getEntriesByType('resource').find(r => r.name.includes('/api/v1/topology'));
                 return d && t && {drawn: d.startTime, topology: t.startTime, layout: d.detail.layoutMs,
                   draw: d.detail.drawMs, nodes: d.detail.nodes, edges: d.detail.edges,
                   names: document.querySelectorAll('#map .node text.name').length,
                   ready: nav.domContentLoadedEventEnd, asked: api.startTime,
                   answered: api.responseStart, received: api.responseEnd,
                   bytes: api.encodedBodySize};",
            )
            .await?;
        let load = Load {
            drawn: number(&marks, "drawn"),
            ready: number(&marks, "ready"),
            asked: number(&marks, "asked"),
            answered: number(&marks, "answered"),
            received: number(&marks, "received"),
            bytes: marks["bytes"].as_u64().unwrap_or(0),
            topology: number(&marks, "topology"),
            layout: number(&marks, "layout"),
            draw: number(&marks, "draw"),
            nodes: marks["nodes"].as_u64().unwrap_or(0),
            edges: marks["edges"].as_u64().unwrap_or(0),
            names: marks["names"].as_u64().unwrap_or(0),
        };
        eprintln!(
            "run {}: drawn {:.0} ms after navigation (page ready {:.0}, topology asked {:.0}, first byte {:.0}, last byte {:.0} ({} KB), parsed {:.0}, layout {:.0} ms, drawing {:.0} ms); {} nodes, {} edges, {} names; {:.1} s wall",
            run + 1,
            load.drawn,
            load.ready,
            load.asked,
            load.answered,
            load.received,
            load.bytes / 1000,
            load.topology,
            load.layout,
            load.draw,
            load.nodes,
            load.edges,
            load.names,
            started.elapsed().as_secs_f64()
        );
        if run + 1 == args.runs {
            frames = Some(
                page.js(
                    "return new Promise((resolve) => {
                       const times = []; let last = performance.now(); let n = 0;
                       const step = (ts) => {
                         times.push(ts - last); last = ts;
                         if (n++ < 30) {
                           document.getElementById(n % 2 ? 'zoom-in' : 'zoom-out').click();
                           requestAnimationFrame(step);
                         } else resolve(times.slice(1));
                       };
                       requestAnimationFrame(step);
                     });",
                    vec![],
                )
                .await?,
            );
            if let Some(path) = &args.screenshot {
                page.screenshot(path).await?;
                eprintln!("screenshot: {}", path.display());
            }
        }
        page.close().await;
        loads.push(load);
    }
    server.stop().await;
    let (drawn, drawn_max) = median_max(loads.iter().map(|l| l.drawn).collect());
    let (topology, _) = median_max(loads.iter().map(|l| l.topology).collect());
    let (layout, _) = median_max(loads.iter().map(|l| l.layout).collect());
    let (draw, _) = median_max(loads.iter().map(|l| l.draw).collect());
    let last = loads.last().ok_or_else(|| Error::Check("no run".into()))?;
    println!(
        "console, {} services in {} namespaces: {} nodes and {} edges drawn, {} names; first render median {drawn:.0} ms (max {drawn_max:.0}) over {} runs: topology answered at {topology:.0} ms, layout {layout:.0} ms, drawing {draw:.0} ms",
        args.services, args.namespaces, last.nodes, last.edges, last.names, args.runs
    );
    if let Some(Value::Array(f)) = frames {
        let f: Vec<f64> = f.iter().filter_map(Value::as_f64).collect();
        if !f.is_empty() {
            let avg = f.iter().sum::<f64>() / f.len() as f64;
            let (_, max) = median_max(f.clone());
            println!(
                "zooming: {} frames, {avg:.1} ms each on average, longest {max:.1} ms",
                f.len()
            );
        }
    }
    Ok(())
}
