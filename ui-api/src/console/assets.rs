//! The console's files, embedded in the binary (no CDN: clusters are often air-gapped),
//! and [`VERSION`], a hash of them all that names the directory they are served under, so
//! browsers may keep them forever and a new binary's files are new addresses.

/// One embedded file.
pub struct Asset {
    /// Path under `ui-api/console/` and under `/ui/{VERSION}/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal => $content_type:literal),* $(,)?) => {
        /// Every file the console serves, `index.html` aside.
        pub const ASSETS: &[Asset] = &[$(Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $path)),
        }),*];
    };
}

#[cfg(test)]
const JS: &str = "text/javascript; charset=utf-8";
#[cfg(test)]
const CSS: &str = "text/css; charset=utf-8";

assets! {
    "console.css" => "text/css; charset=utf-8",
    "icon.svg" => "image/svg+xml",
    "js/api.js" => "text/javascript; charset=utf-8",
    "js/charts.js" => "text/javascript; charset=utf-8",
    "js/compare.js" => "text/javascript; charset=utf-8",
    "js/dom.js" => "text/javascript; charset=utf-8",
    "js/format.js" => "text/javascript; charset=utf-8",
    "js/graph.js" => "text/javascript; charset=utf-8",
    "js/health.js" => "text/javascript; charset=utf-8",
    "js/layout.js" => "text/javascript; charset=utf-8",
    "js/main.js" => "text/javascript; charset=utf-8",
    "js/map.js" => "text/javascript; charset=utf-8",
    "js/panel.js" => "text/javascript; charset=utf-8",
    "js/setup.js" => "text/javascript; charset=utf-8",
    "js/state.js" => "text/javascript; charset=utf-8",
    "js/table.js" => "text/javascript; charset=utf-8",
    "js/windows.js" => "text/javascript; charset=utf-8",
    "vendor/d3-dispatch.min.js" => "text/javascript; charset=utf-8",
    "vendor/d3-force.min.js" => "text/javascript; charset=utf-8",
    "vendor/d3-quadtree.min.js" => "text/javascript; charset=utf-8",
    "vendor/d3-timer.min.js" => "text/javascript; charset=utf-8",
    "vendor/uPlot.iife.min.js" => "text/javascript; charset=utf-8",
    "vendor/uPlot.min.css" => "text/css; charset=utf-8",
}

/// The page; `{{v}}` stands for [`VERSION`].
pub const INDEX: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/index.html"));

/// FNV-1a (64 bits) of every asset's path and body and of the page: computed by the
/// compiler, the same for every build of the same files.
pub const VERSION: u64 = {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < ASSETS.len() {
        h = fnv(h, ASSETS[i].path.as_bytes());
        h = fnv(h, ASSETS[i].body);
        i += 1;
    }
    fnv(h, INDEX.as_bytes())
};

const fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

/// The asset at `path`, if embedded.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every file under `console/js` and `console/vendor` (licences aside) is embedded,
    /// and every embedded file exists: a new module cannot be forgotten in the table.
    #[test]
    fn table_matches_the_console_directory() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut on_disk = vec!["console.css".to_string(), "icon.svg".to_string()];
        for dir in ["js", "vendor"] {
            for entry in std::fs::read_dir(root.join(dir)).expect("console dir") {
                let name = entry
                    .expect("entry")
                    .file_name()
                    .into_string()
                    .expect("utf-8");
                if !name.ends_with(".LICENSE") {
                    on_disk.push(format!("{dir}/{name}"));
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn content_types_follow_extensions() {
        for a in ASSETS {
            let want = match a.path.rsplit('.').next() {
                Some("js") => JS,
                Some("css") => CSS,
                Some("svg") => "image/svg+xml",
                other => panic!("unexpected extension {other:?}"),
            };
            assert_eq!(a.content_type, want, "{}", a.path);
        }
    }

    #[test]
    fn the_page_names_every_script_it_loads_under_the_version() {
        for src in INDEX.split("src=\"").skip(1) {
            let path = src.split('"').next().expect("quoted");
            let rest = path
                .strip_prefix("/ui/{{v}}/")
                .unwrap_or_else(|| panic!("{path} is not under /ui/{{{{v}}}}/"));
            assert!(find(rest).is_some(), "{rest} is not embedded");
        }
    }
}
