//! The on-disk spool: insert chunks ClickHouse has not taken yet, one file per batch, in
//! `<data_dir>/clickhouse-spool/`. A file is written to a temporary name, fsynced and
//! renamed (and the directory fsynced), so a file under its final name is always whole.
//! A `LOCK` file keeps two processes off one spool.
//!
//! File format: the line `meshscope-spool 1`, then per chunk a header line
//! `table \t token \t minute \t rows \t calls \t body-length` and the body bytes.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::schema::Table;
use crate::{Error, Result};

use super::chunk::Chunk;

const MAGIC: &str = "meshscope-spool 1\n";
const SUFFIX: &str = "spool";

/// The spool directory, locked by this process.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    _lock: fs::File,
    next: u64,
}

/// A spooled file: its path and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolFile {
    pub path: PathBuf,
    pub bytes: u64,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, what: &str) -> Error {
    Error::Schema(format!("spool file {}: {what}", path.display()))
}

impl Spool {
    /// Opens (creating) and locks `dir`; the files already in it, oldest first. Leftover
    /// temporary files of an interrupted write are removed.
    pub fn open(dir: &Path) -> Result<(Spool, Vec<SpoolFile>)> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = fs::File::create(&lock_path).map_err(io_err(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(Error::Locked(dir.to_path_buf()));
        }
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("tmp-") {
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            let Some(seq) = name
                .strip_suffix(&format!(".{SUFFIX}"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let bytes = entry.metadata().map_err(io_err(&path))?.len();
            files.push((seq, SpoolFile { path, bytes }));
        }
        files.sort_by_key(|(seq, _)| *seq);
        let next = files.last().map_or(0, |(seq, _)| seq + 1);
        Ok((
            Spool {
                dir: dir.to_path_buf(),
                _lock: lock,
                next,
            },
            files.into_iter().map(|(_, f)| f).collect(),
        ))
    }

    /// Writes `chunks` durably as one new file.
    pub fn write(&mut self, chunks: &[Chunk]) -> Result<SpoolFile> {
        let seq = self.next;
        self.next += 1;
        let tmp = self.dir.join(format!("tmp-{seq:020}"));
        let path = self.dir.join(format!("{seq:020}.{SUFFIX}"));
        let mut out = Vec::with_capacity(chunks.iter().map(|c| c.body.len() + 64).sum());
        out.extend_from_slice(MAGIC.as_bytes());
        for c in chunks {
            out.extend_from_slice(
                format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\n",
                    c.table.name(),
                    c.token,
                    c.minute,
                    c.rows,
                    c.calls,
                    c.body.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(&c.body);
        }
        let written = fs::File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(&out)?;
                f.sync_all()
            })
            .map_err(io_err(&tmp))
            .and_then(|()| fs::rename(&tmp, &path).map_err(io_err(&path)));
        if let Err(e) = written {
            // A full or read-only disk: leave no partial temp file behind.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        // The file is in place and will be sent: reporting an error now would make the
        // caller write its rows a second time.
        if let Err(e) = fs::File::open(&self.dir).and_then(|d| d.sync_all()) {
            tracing::warn!(error = %e, dir = %self.dir.display(), "fsync of the spool directory failed");
        }
        Ok(SpoolFile {
            path,
            bytes: out.len() as u64,
        })
    }
}

/// Reads a spool file back. Its chunks may have reached ClickHouse before (the process
/// stopped between the insert and the removal), so they are marked `attempted`.
pub fn read(path: &Path) -> Result<Vec<Chunk>> {
    let data = fs::read(path).map_err(io_err(path))?;
    parse(&data).map_err(|what| corrupt(path, what))
}

/// The chunks of a spool file's bytes, or what is wrong with them.
pub fn parse(data: &[u8]) -> std::result::Result<Vec<Chunk>, &'static str> {
    let rest = data
        .strip_prefix(MAGIC.as_bytes())
        .ok_or("not a meshscope spool file")?;
    let mut rest = Bytes::copy_from_slice(rest);
    let mut chunks = Vec::new();
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("truncated header")?;
        let header = rest.split_to(end + 1);
        let header = std::str::from_utf8(&header[..end]).map_err(|_| "header is not UTF-8")?;
        let f: Vec<&str> = header.split('\t').collect();
        let [table, token, minute, rows, calls, len] = f.as_slice() else {
            return Err("header field count");
        };
        let table = Table::ALL
            .into_iter()
            .find(|t| t.name() == *table)
            .ok_or("unknown table")?;
        let num = |s: &str| s.parse::<u64>().map_err(|_| "header number");
        let len = usize::try_from(num(len)?).map_err(|_| "length")?;
        if len > rest.len() {
            return Err("truncated body");
        }
        chunks.push(Chunk {
            table,
            token: (*token).to_string(),
            minute: minute.parse().map_err(|_| "header minute")?,
            rows: usize::try_from(num(rows)?).map_err(|_| "rows")?,
            calls: num(calls)?,
            body: rest.split_to(len),
            attempted: true,
        });
    }
    Ok(chunks)
}

/// Removes a spool file whose chunks are all in ClickHouse.
pub fn remove(path: &Path) -> Result<()> {
    fs::remove_file(path).map_err(io_err(path))
}

/// Moves an unreadable spool file aside (`.bad`) so it is kept for inspection but not
/// retried.
pub fn quarantine(path: &Path) -> Result<()> {
    let bad = path.with_extension("bad");
    fs::rename(path, &bad).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(token: &str, body: &str) -> Chunk {
        Chunk {
            table: Table::ServiceRelation,
            token: token.into(),
            minute: 1_700_000_040,
            rows: 2,
            calls: 7,
            body: Bytes::from(body.to_string()),
            attempted: false,
        }
    }

    #[test]
    fn files_round_trip_in_order_and_stay_locked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool_dir = dir.path().join("spool");
        let (mut spool, files) = Spool::open(&spool_dir).expect("open");
        assert!(files.is_empty());
        let a = spool
            .write(&[chunk("t1", "a\tb\n\\n\n"), chunk("t2", "")])
            .expect("write a");
        let b = spool.write(&[chunk("t3", "x\n")]).expect("write b");
        assert!(matches!(Spool::open(&spool_dir), Err(Error::Locked(_))));
        drop(spool);
        std::fs::write(spool_dir.join("tmp-00000000000000000009"), "torn").expect("tmp");
        let (_spool, files) = Spool::open(&spool_dir).expect("reopen");
        assert_eq!(files, vec![a.clone(), b]);
        assert!(!spool_dir.join("tmp-00000000000000000009").exists());
        let back = read(&a.path).expect("read");
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].token, "t1");
        assert_eq!(&back[0].body[..], b"a\tb\n\\n\n");
        assert_eq!((back[0].rows, back[0].calls), (2, 7));
        assert!(back.iter().all(|c| c.attempted));
        assert!(back[1].body.is_empty());
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path()).expect("open");
        let f = spool.write(&[chunk("t", "0123456789\n")]).expect("write");
        let whole = std::fs::read(&f.path).expect("read");
        for cut in [0, 5, MAGIC.len() + 3, whole.len() - 4] {
            std::fs::write(&f.path, &whole[..cut]).expect("truncate");
            assert!(read(&f.path).is_err(), "cut at {cut}");
        }
        std::fs::write(&f.path, b"meshscope-spool 1\nnope\tx\t1\t1\t1\t0\n").expect("write");
        assert!(read(&f.path).is_err());
        quarantine(&f.path).expect("quarantine");
        assert!(f.path.with_extension("bad").exists());
    }
}
