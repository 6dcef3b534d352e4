//! Parse + validate + extract of a SIPp REGISTER with Digest credentials (the registrar's hot
//! path, see `tests/hot_path`), plus the parse alone and the response writer.

#[path = "../tests/hot_path/mod.rs"]
mod hot_path;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

fn register(c: &mut Criterion) {
    let buf = hot_path::SIPP_REGISTER;
    c.bench_function("parse_only", |b| {
        b.iter(|| switchboard_sip::parse(black_box(buf)).is_ok())
    });
    c.bench_function("parse_validate_extract_register", |b| {
        b.iter(|| hot_path::extract(black_box(buf)))
    });
    let mut out = Vec::with_capacity(4096);
    c.bench_function("parse_and_write_200", |b| {
        b.iter(|| hot_path::respond(black_box(buf), &mut out))
    });
}

criterion_group!(benches, register);
criterion_main!(benches);
