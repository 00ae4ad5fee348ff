//! How fast, and how small, each `delivery.compression` makes a file (a
//! `docker save` tarball): the measurement behind `auto`'s choice of level.
//! `cargo run -p ballast-core --example compress_speed -- FILE` (flate2, as
//! every dependency, is optimized in the dev profile too).
#![allow(clippy::print_stdout, clippy::print_stderr)] // it prints what it measured

use std::io::{Read, Write};
use std::time::Instant;

use flate2::write::GzEncoder;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: compress_speed FILE (e.g. the tarball of `docker save IMAGE`)");
        std::process::exit(2);
    };
    let mut data = Vec::new();
    if let Err(e) = std::fs::File::open(&path).and_then(|mut f| f.read_to_end(&mut data)) {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    }
    println!("| compression | bytes out | of the input | seconds | MB/s in |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, level) in [("gzip-fast", 1), ("gzip", 6)] {
        let started = Instant::now();
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        gz.write_all(&data).expect("writing to memory");
        let out = gz.finish().expect("writing to memory");
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "| {name} (level {level}) | {} | {:.1}% | {seconds:.1} | {:.0} |",
            out.len(),
            100.0 * out.len() as f64 / data.len() as f64,
            data.len() as f64 / seconds / 1e6
        );
    }
}
