//! What other crates' tests share: the numeric bound check that reports what it measured
//! ([`within`], [`max_abs_diff`], [`cpu_path`], from `kernels::testing`), and a Hugging Face Hub
//! stand-in ([`FakeHub`]) that serves a local directory over HTTP on 127.0.0.1 with
//! the Hub's URL layout (`/{repo}/resolve/{revision}/{file}`, `repo` being `owner/name` for
//! models and `datasets/owner/name` for datasets) and the headers `hf-hub` reads (`etag`,
//! `x-repo-commit`, `content-range`), so that the real download code runs without a network.

pub use kernels::testing::{cpu_path, max_abs_diff, within};

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running fake Hub; it serves until the process ends.
#[derive(Debug, Clone)]
pub struct FakeHub {
    pub endpoint: String,
    requests: Arc<AtomicUsize>,
}

impl FakeHub {
    /// Serves `root`, where `root/{repo}/{file}` answers `/{repo}/resolve/{revision}/{file}`.
    pub fn serve(root: impl AsRef<Path>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let root = root.as_ref().to_path_buf();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                let root = root.clone();
                std::thread::spawn(move || {
                    let _ = answer(stream, &root);
                });
            }
        });
        Ok(Self { endpoint, requests })
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn answer(stream: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // `bytes=START-` or `bytes=START-END` (inclusive); hf-hub probes with `bytes=0-0` for the size.
    let mut range: Option<(usize, Option<usize>)> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = value
                .trim()
                .strip_prefix("bytes=")
                .and_then(|r| r.split_once('-'))
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok())));
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let file = resolve(root, path);
    let mut stream = stream;
    let Some(body) = file.and_then(|f| std::fs::read(f).ok()) else {
        let msg = b"Entry not found";
        write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nX-Error-Code: EntryNotFound\r\nConnection: close\r\n\r\n",
            msg.len()
        )?;
        return stream.write_all(msg);
    };
    let size = body.len();
    let (start, last) = range.unwrap_or((0, None));
    let start = start.min(size);
    let end = last.map_or(size, |l| (l + 1).min(size)).max(start);
    let part = &body[start..end];
    write!(
        stream,
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {}-{}/{}\r\nETag: \"{:x}\"\r\nX-Repo-Commit: {COMMIT}\r\nConnection: close\r\n\r\n",
        part.len(),
        start,
        (start + part.len()).saturating_sub(1),
        size,
        checksum(&body),
    )?;
    stream.write_all(part)
}

/// The revision every file is served at.
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

/// `/{repo...}/resolve/{revision}/{file...}` to `root/{repo...}/{file...}`.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let url_path = url_path.split('?').next()?;
    let (repo, rest) = url_path.trim_start_matches('/').split_once("/resolve/")?;
    let (_revision, file) = rest.split_once('/')?;
    if repo.split('/').chain(file.split('/')).any(|s| s == ".." || s.is_empty()) {
        return None;
    }
    Some(root.join(repo).join(file))
}
