//! Proves that parsing a SIPp REGISTER, validating it, extracting everything the registrar needs
//! and writing the 200 OK into a reused buffer performs no heap allocation. Runs without the
//! test harness so that no other thread allocates while the region is measured.

mod hot_path;

use std::alloc::System;
use std::hint::black_box;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    let mut out = Vec::with_capacity(4096);
    // Warm up once outside the region (lazy statics in std, if any).
    assert!(
        hot_path::extract(hot_path::SIPP_REGISTER).is_some(),
        "the SIPp REGISTER must pass"
    );
    assert!(hot_path::respond(hot_path::SIPP_REGISTER, &mut out).is_some());

    let region = Region::new(GLOBAL);
    for _ in 0..100 {
        let extracted = hot_path::extract(black_box(hot_path::SIPP_REGISTER));
        black_box(extracted);
        black_box(hot_path::respond(
            black_box(hot_path::SIPP_REGISTER),
            &mut out,
        ));
    }
    let change = region.change();

    let extracted = hot_path::extract(hot_path::SIPP_REGISTER).expect("extracts");
    assert_eq!(extracted.username, "user000001");
    assert_eq!(extracted.realm, "bench.local");
    assert_eq!(extracted.algorithm, Some("MD5"));
    assert_eq!(
        (extracted.contact_count, extracted.expires),
        (1, Some(3600))
    );
    assert!(out.starts_with(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1234-1-0;received=127.0.0.1;rport=5090\r\n"));

    if change.allocations + change.reallocations != 0 {
        eprintln!("zero_alloc: {change:?}");
        println!("zero_alloc: 0 passed, 1 failed");
        std::process::exit(1);
    }
    println!("zero_alloc: 1 passed, 0 failed");
}
