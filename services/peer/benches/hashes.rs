//! Which hash to hash files and pieces with: each candidate's throughput on the same bytes, next
//! to `openssl dgst -sha256` of the same bytes in the same run (the machine is shared, so absolute
//! figures move; the ratio to openssl is what compares across runs and machines).
//!
//!     cargo bench -p p2p-peer --bench hashes [--features bench-aws-lc] -- [MiB] [rounds]
//!
//! SHA-256 candidates: `sha2` (runtime CPU detection: SHA-NI when present, else portable Rust),
//! `ring::digest`, `aws-lc-rs` (with the `bench-aws-lc` feature: it builds AWS-LC's C code),
//! the crate's own `share::digest::Sha256` (whatever it currently wraps), and `openssl dgst`
//! with SHA-NI masked (`OPENSSL_ia32cap`). Every one must produce openssl's digest, or the bench
//! fails. BLAKE3 candidates (the piece hash): the `blake3` crate by 1 MiB and by 256 KiB updates
//! (the wire's block size), which must agree with each other; its SIMD dispatch picks AVX-512,
//! AVX2, SSE4.1 or SSE2 at run time, capped at build time by the `bench-blake3-avx2`,
//! `bench-blake3-sse41` and `bench-blake3-portable` features. Last,
//! `share::pieces::hash_file`, the one pass that yields the whole-file digest and the manifest.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use p2p_peer::share::digest::{Digest, Sha256};
use p2p_peer::share::pieces;

/// The update size the share code uses when it hashes files.
const BLOCK: usize = 1 << 20;
/// The size of one block request on the wire.
const WIRE_BLOCK: usize = 256 << 10;

type Hasher = fn(&[u8]) -> Digest;

/// Which family a candidate belongs to: candidates of one family must agree on the digest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Sha256,
    Blake3,
}

fn by_blocks<H>(
    data: &[u8],
    mut h: H,
    update: impl Fn(&mut H, &[u8]),
    fin: impl Fn(H) -> Vec<u8>,
) -> Digest {
    for chunk in data.chunks(BLOCK) {
        update(&mut h, chunk);
    }
    let out = fin(h);
    let mut d = [0u8; 32];
    d.copy_from_slice(&out);
    Digest(d)
}

fn with_sha2(data: &[u8]) -> Digest {
    use sha2::Digest as _;
    by_blocks(
        data,
        sha2::Sha256::new(),
        |h, b| h.update(b),
        |h| h.finalize().to_vec(),
    )
}

fn with_ring(data: &[u8]) -> Digest {
    by_blocks(
        data,
        ring::digest::Context::new(&ring::digest::SHA256),
        |h, b| h.update(b),
        |h| h.finish().as_ref().to_vec(),
    )
}

#[cfg(feature = "bench-aws-lc")]
fn with_aws_lc(data: &[u8]) -> Digest {
    by_blocks(
        data,
        aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
        |h, b| h.update(b),
        |h| h.finish().as_ref().to_vec(),
    )
}

fn with_share(data: &[u8]) -> Digest {
    let mut h = Sha256::new();
    for chunk in data.chunks(BLOCK) {
        h.update(chunk);
    }
    h.finish()
}

fn blake3_by(data: &[u8], block: usize) -> Digest {
    let mut h = blake3::Hasher::new();
    for chunk in data.chunks(block) {
        h.update(chunk);
    }
    Digest(*h.finalize().as_bytes())
}

fn with_blake3(data: &[u8]) -> Digest {
    blake3_by(data, BLOCK)
}

fn with_blake3_wire(data: &[u8]) -> Digest {
    blake3_by(data, WIRE_BLOCK)
}

fn candidates() -> Vec<(&'static str, Family, Hasher)> {
    use Family::*;
    let mut c: Vec<(&'static str, Family, Hasher)> = vec![
        ("sha2 0.11", Sha256, with_sha2),
        ("ring", Sha256, with_ring),
    ];
    #[cfg(feature = "bench-aws-lc")]
    c.push(("aws-lc-rs", Sha256, with_aws_lc));
    c.push(("share::digest", Sha256, with_share));
    c.push(("blake3 (1 MiB updates)", Blake3, with_blake3));
    c.push(("blake3 (256 KiB updates)", Blake3, with_blake3_wire));
    c
}

/// The widest SIMD the blake3 build may use (its run-time detection picks the best below it).
fn blake3_cap() -> &'static str {
    if cfg!(feature = "bench-blake3-portable") {
        "portable"
    } else if cfg!(feature = "bench-blake3-sse41") {
        "sse4.1"
    } else if cfg!(feature = "bench-blake3-avx2") {
        "avx2"
    } else {
        "avx-512"
    }
}

/// `openssl dgst -sha256` of `path`; `mask_sha_ni` hides the SHA extensions from it.
fn openssl(
    path: &std::path::Path,
    mask_sha_ni: bool,
) -> Result<Digest, Box<dyn std::error::Error>> {
    let mut cmd = Command::new("openssl");
    cmd.args(["dgst", "-sha256", "-r"]).arg(path);
    if mask_sha_ni {
        // CPUID leaf 7 EBX bit 29 is SHA.
        cmd.env("OPENSSL_ia32cap", ":~0x20000000");
    }
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!("openssl failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.split_whitespace().next().unwrap_or_default();
    Ok(hex.parse()?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; numbers are ours.
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let mib = args.first().copied().unwrap_or(256);
    let rounds = args.get(1).copied().unwrap_or(5).max(1);
    let len = usize::try_from(mib << 20)?;

    let mut x = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..len / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    let mut file = tempfile::NamedTempFile::new()?;
    file.write_all(&data)?;
    file.flush()?;
    let path = file.path().to_path_buf();

    let cands = candidates();
    let names: Vec<&str> = cands
        .iter()
        .map(|c| c.0)
        .chain([
            "pieces::hash_file (one pass)",
            "openssl dgst, SHA-NI masked",
            "openssl dgst -sha256",
        ])
        .collect();
    let openssl_at = names.len() - 1;
    let mut mbps: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut ratio: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mb = len as f64 / 1e6;
    let mut expected: [Option<Digest>; 2] = [None, None];
    let mut check = |name: &str, family: Family, d: Digest| {
        let want = *expected[family as usize].get_or_insert(d);
        assert_eq!(d, want, "{name} disagrees");
    };

    eprintln!(
        "{mib} MiB, {rounds} rounds; cpu: {}; blake3 up to {}",
        cpu_flags(),
        blake3_cap()
    );
    for round in 0..rounds as usize {
        let mut secs = vec![0.0; names.len()];
        // Rotate the order so that no candidate always runs first (or after the file read).
        let n = names.len();
        for k in 0..n {
            let i = (k + round) % n;
            let t = Instant::now();
            if i < cands.len() {
                let d = (cands[i].2)(std::hint::black_box(&data));
                secs[i] = t.elapsed().as_secs_f64();
                check(names[i], cands[i].1, d);
            } else if i == cands.len() {
                let h = pieces::hash_file(&path)?;
                secs[i] = t.elapsed().as_secs_f64();
                check(names[i], Family::Sha256, h.sha256);
            } else {
                let d = openssl(&path, i != openssl_at)?;
                secs[i] = t.elapsed().as_secs_f64();
                check(names[i], Family::Sha256, d);
            }
        }
        for i in 0..n {
            mbps[i].push(mb / secs[i]);
            ratio[i].push(secs[openssl_at] / secs[i]);
        }
    }

    println!(
        "{:<30} {:>10} {:>10} {:>10} {:>12}",
        "implementation", "median", "min", "max", "x openssl"
    );
    for (i, name) in names.iter().enumerate() {
        let v = &mbps[i];
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        println!(
            "{name:<30} {:>7.0} MB/s {:>5.0} MB/s {:>5.0} MB/s {:>10.2}x",
            median(v.clone()),
            lo,
            hi,
            median(ratio[i].clone())
        );
    }
    Ok(())
}

/// The CPU features that decide which code paths the implementations take.
fn cpu_flags() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    [
        "sha_ni", "avx512f", "avx512vl", "avx2", "avx", "sse4_1", "ssse3", "bmi2",
    ]
    .iter()
    .filter(|f| flags.split_whitespace().any(|x| x == **f))
    .copied()
    .collect::<Vec<_>>()
    .join(" ")
}
