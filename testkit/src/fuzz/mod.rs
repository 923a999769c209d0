//! `meshscope fuzz`: a fuzzing driver on stable Rust. It feeds every decoder that reads
//! outside input the mutants of a seed corpus, each run under `catch_unwind`, and counts
//! inputs, refusals and panics. No coverage feedback (that needs nightly or an
//! instrumented build): mutants that a decoder accepts join the corpus, so the mutation
//! goes deeper into the shapes that decode. Mutations are structure-aware ([`mutate`]:
//! protobuf fields and lengths, JSON nesting and numbers, PromQL tokens, file headers and
//! footers) and deterministic for a seed, so a campaign can be repeated exactly.
//!
//! A panic is a finding: its input is written to the crashes directory and the command
//! fails. An abort (stack overflow, allocation failure) ends the process, which the
//! campaign reports as a failure as well.
//!
//! [`targets`] runs each input through the code the servers run: the ALS stream's message
//! decode and entries into calls, the OTLP/HTTP handler (protobuf and JSON) in memory, the
//! Prometheus API handlers (`query`, `query_range`, `series` and `labels` with `match[]`)
//! in memory over an empty store, the ClickHouse spool file parser, and the Parquet file
//! decoder on the store's own files.

pub mod mutate;
mod targets;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use tracing::{info, warn};

use crate::error::{Error, Result, io};
use mutate::{Mutator, Rng, Shape};
pub use targets::Target;

/// The decoders `meshscope fuzz` can drive.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetName {
    /// Envoy ALS `StreamAccessLogsMessage`s (protobuf, Struct and FlatBuffers peers).
    Als,
    /// OTLP/HTTP export requests in protobuf.
    OtlpProtobuf,
    /// OTLP/HTTP export requests in JSON.
    OtlpJson,
    /// PromQL `query` text and `match[]` selectors through the parsing path (bounds,
    /// parser, depth), without HTTP.
    Promql,
    /// PromQL through the whole Prometheus API in memory (`query`, `query_range`,
    /// `series` and `labels` with `match[]`), evaluated over an empty store.
    PrometheusApi,
    /// The ClickHouse write spool's files.
    Spool,
    /// The Parquet store's files.
    Parquet,
}

impl TargetName {
    pub const ALL: [TargetName; 7] = [
        TargetName::Als,
        TargetName::OtlpProtobuf,
        TargetName::OtlpJson,
        TargetName::Promql,
        TargetName::PrometheusApi,
        TargetName::Spool,
        TargetName::Parquet,
    ];
}

/// Options of `meshscope fuzz`.
#[derive(Args, Debug, Clone)]
pub struct FuzzArgs {
    /// Decoders to drive (repeatable; default: all, one after another).
    #[arg(long, value_enum)]
    pub target: Vec<TargetName>,
    /// Inputs per decoder.
    #[arg(long, default_value_t = 1_000_000)]
    pub inputs: u64,
    /// The campaign's seed (the same seed gives the same inputs).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Extra seed inputs: files under DIR/<target>/ (e.g. `fuzz/corpus`, which holds the
    /// shared Envoy fixtures encoded as protobuf).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Where inputs that made a decoder panic are written.
    #[arg(long, default_value = "fuzz-crashes")]
    pub crashes: PathBuf,
    /// Largest input in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    pub max_len: usize,
}

/// What a decoder made of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Decoded (and, where it goes on, turned into calls or answered 2xx).
    Accepted,
    /// Refused with an error, as hostile input should be.
    Refused,
}

/// One decoder's campaign figures.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: TargetName,
    pub inputs: u64,
    pub accepted: u64,
    pub panics: u64,
    /// Panics inside the decoder's code that it caught itself and answered as a refusal.
    pub caught: u64,
    pub seconds: f64,
    pub corpus: usize,
}

impl Report {
    /// Inputs per second.
    pub fn rate(&self) -> f64 {
        self.inputs as f64 / self.seconds.max(1e-9)
    }
}

/// Most corpus entries kept per decoder.
const MAX_CORPUS: usize = 4096;

/// Most inputs saved per decoder: the first of each kind (escaped or caught) and panic
/// location.
const MAX_SAVED: usize = 100;

/// Runs the campaign `args` describe; fails if any input made a decoder panic. Runs on a
/// thread with the stack the PromQL parser gets in the server.
pub fn run(args: FuzzArgs) -> Result<()> {
    std::thread::Builder::new()
        .name("fuzz".into())
        .stack_size(ui_api::prom::PARSE_STACK_BYTES)
        .spawn(move || run_here(args))
        .map_err(io("starting the fuzzing thread"))?
        .join()
        .unwrap_or_else(|_| Err(Error::Check("the fuzzing driver panicked".into())))
}

fn run_here(args: FuzzArgs) -> Result<()> {
    let targets = if args.target.is_empty() {
        TargetName::ALL.to_vec()
    } else {
        args.target.clone()
    };
    let mut reports = Vec::new();
    for name in targets {
        let extra = match &args.corpus {
            Some(dir) => read_corpus(&dir.join(dir_name(name)))?,
            None => Vec::new(),
        };
        let mut target = Target::new(name)?;
        reports.push(campaign(&mut target, name, extra, &args)?);
    }
    println!("target           inputs      inputs/s  accepted  corpus  panics  caught");
    for r in &reports {
        println!(
            "{:<15} {:>10} {:>10.0} {:>8.1}% {:>7} {:>7} {:>7}",
            dir_name(r.target),
            r.inputs,
            r.rate(),
            100.0 * r.accepted as f64 / r.inputs.max(1) as f64,
            r.corpus,
            r.panics,
            r.caught
        );
    }
    let panics: u64 = reports.iter().map(|r| r.panics).sum();
    if panics > 0 {
        return Err(Error::Check(format!(
            "{panics} inputs made a decoder panic; they are in {}",
            args.crashes.display()
        )));
    }
    Ok(())
}

/// The corpus folder name of a target.
pub fn dir_name(name: TargetName) -> &'static str {
    match name {
        TargetName::Als => "als",
        TargetName::OtlpProtobuf => "otlp-protobuf",
        TargetName::OtlpJson => "otlp-json",
        TargetName::Promql => "promql",
        TargetName::PrometheusApi => "prometheus-api",
        TargetName::Spool => "spool",
        TargetName::Parquet => "parquet",
    }
}

fn read_corpus(dir: &Path) -> Result<Vec<Vec<u8>>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(io(format!("reading {}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths.into_iter().filter(|p| p.is_file()) {
        out.push(std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?);
    }
    Ok(out)
}

fn shape(name: TargetName) -> Shape {
    match name {
        TargetName::Als | TargetName::OtlpProtobuf => Shape::Protobuf,
        TargetName::OtlpJson => Shape::Json,
        TargetName::Promql | TargetName::PrometheusApi => Shape::Text,
        TargetName::Spool | TargetName::Parquet => Shape::Binary,
    }
}

/// What a campaign drives: a decoder with its seeds.
trait Fuzzed {
    fn seeds(&mut self) -> Result<Vec<Vec<u8>>>;
    fn run(&mut self, input: &[u8]) -> Outcome;
}

impl Fuzzed for Target {
    fn seeds(&mut self) -> Result<Vec<Vec<u8>>> {
        Target::seeds(self)
    }

    fn run(&mut self, input: &[u8]) -> Outcome {
        Target::run(self, input)
    }
}

/// Feeds `target` `args.inputs` mutants; panics are caught, counted and saved.
fn campaign(
    target: &mut impl Fuzzed,
    name: TargetName,
    extra: Vec<Vec<u8>>,
    args: &FuzzArgs,
) -> Result<Report> {
    let mut corpus = target.seeds()?;
    corpus.extend(extra);
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let seeds = corpus.len();
    let mutator = Mutator::new(shape(name), args.max_len);
    let mut rng = Rng::new(args.seed ^ (name as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut input = Vec::new();
    let (mut accepted, mut panics, mut caught) = (0u64, 0u64, 0u64);
    let mut saved = std::collections::HashSet::new();
    let started = Instant::now();
    let mut progress = Instant::now();
    info!(
        target = dir_name(name),
        seeds,
        inputs = args.inputs,
        "fuzzing"
    );
    // The seeds first, unchanged; then mutants.
    let quiet = QuietPanics::install();
    for i in 0..args.inputs {
        let i_usize = usize::try_from(i).unwrap_or(usize::MAX);
        if i_usize < seeds {
            input.clear();
            input.extend_from_slice(&corpus[i_usize]);
        } else {
            let a = rng.below(corpus.len());
            let b = rng.below(corpus.len());
            mutator.mutate(&mut rng, &corpus[a], &corpus[b], &mut input);
        }
        let before = quiet.count();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.run(&input)));
        // A panic the served code caught itself (a task's JoinError, a parser guarded
        // by catch_unwind) is answered as a refusal; it is counted apart and saved.
        let inside = quiet.count() > before;
        match outcome {
            Ok(Outcome::Accepted) => {
                accepted += 1;
                if corpus.len() < MAX_CORPUS && rng.chance(16) {
                    corpus.push(input.clone());
                }
            }
            Ok(Outcome::Refused) => {}
            Err(_) => panics += 1,
        }
        let escaped = outcome.is_err();
        caught += u64::from(inside && !escaped);
        if inside {
            let (location, message) = quiet.last();
            let kind = if escaped { "panic" } else { "caught" };
            if saved.len() < MAX_SAVED && saved.insert((kind, location)) {
                save_crash(&args.crashes, name, kind, &input, &message)?;
            }
        }
        if progress.elapsed() >= Duration::from_secs(10) {
            progress = Instant::now();
            let done = i + 1;
            info!(
                target = dir_name(name),
                inputs = done,
                per_second = (done as f64 / started.elapsed().as_secs_f64()) as u64,
                accepted,
                corpus = corpus.len(),
                panics,
                caught,
                "fuzzing"
            );
        }
    }
    drop(quiet);
    Ok(Report {
        target: name,
        inputs: args.inputs,
        accepted,
        panics,
        caught,
        seconds: started.elapsed().as_secs_f64(),
        corpus: corpus.len(),
    })
}

fn save_crash(dir: &Path, name: TargetName, kind: &str, input: &[u8], message: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    let path = dir.join(format!("{kind}-{}-{hash:016x}", dir_name(name)));
    std::fs::write(&path, input).map_err(io(format!("writing {}", path.display())))?;
    warn!(target = dir_name(name), kind, path = %path.display(), %message, "a decoder panicked");
    Ok(())
}

/// The previous panic hook, as `take_hook` hands it back.
type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// What the quiet hook keeps of the panics it sees.
#[derive(Default)]
struct Seen {
    count: u64,
    location: String,
    message: String,
}

/// While installed, panics (on any thread) are counted and recorded instead of printed;
/// the campaign saves each kind once, with its input. Dropping it puts the previous hook
/// back.
struct QuietPanics {
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    previous: Option<Hook>,
}

impl QuietPanics {
    fn install() -> QuietPanics {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
        let keep = seen.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let mut seen = keep.lock().unwrap_or_else(|e| e.into_inner());
            seen.count += 1;
            seen.location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            seen.message = info.to_string();
        }));
        QuietPanics {
            seen,
            previous: Some(previous),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Panics seen so far.
    fn count(&self) -> u64 {
        self.lock().count
    }

    /// Where the last panic happened, and its message.
    fn last(&self) -> (String, String) {
        let seen = self.lock();
        (seen.location.clone(), seen.message.clone())
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        // Changing the hook while unwinding would abort the process.
        if let Some(previous) = self.previous.take()
            && !std::thread::panicking()
        {
            std::panic::set_hook(previous);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Panics on any input holding the byte 0xAB; accepts inputs starting with `{`.
    struct Fragile;

    impl Fuzzed for Fragile {
        fn seeds(&mut self) -> Result<Vec<Vec<u8>>> {
            Ok(vec![b"{\"a\":1}".to_vec()])
        }

        fn run(&mut self, input: &[u8]) -> Outcome {
            assert!(!input.contains(&0xAB), "0xAB found");
            if input.first() == Some(&b'{') {
                Outcome::Accepted
            } else {
                Outcome::Refused
            }
        }
    }

    #[test]
    fn panics_are_caught_counted_and_saved() {
        let crashes = tempfile::tempdir().expect("tempdir");
        let args = FuzzArgs {
            target: vec![TargetName::OtlpJson],
            inputs: 20_000,
            seed: 3,
            corpus: None,
            crashes: crashes.path().to_path_buf(),
            max_len: 4096,
        };
        let report =
            campaign(&mut Fragile, TargetName::OtlpJson, Vec::new(), &args).expect("campaign");
        assert_eq!(report.inputs, 20_000);
        assert!(report.panics > 0, "no mutant held 0xAB: {report:?}");
        assert!(report.accepted > 0 && report.corpus > 1, "{report:?}");
        let saved: Vec<Vec<u8>> = std::fs::read_dir(crashes.path())
            .expect("crashes")
            .flatten()
            .map(|e| std::fs::read(e.path()).expect("crash file"))
            .collect();
        // One file per kind and location: the assertion's.
        assert_eq!(saved.len(), 1, "{report:?}");
        assert!(saved.iter().all(|input| input.contains(&0xAB)));
        // The same seed gives the same campaign.
        let again =
            campaign(&mut Fragile, TargetName::OtlpJson, Vec::new(), &args).expect("campaign");
        assert_eq!(
            (again.accepted, again.panics),
            (report.accepted, report.panics)
        );
    }
}
