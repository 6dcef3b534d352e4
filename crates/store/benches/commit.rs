//! Binding upserts per second through `Location::commit` (each commit = one REGISTER's
//! UpsertBinding, acknowledged only once durable), with 1, 16 and 256 concurrent committers,
//! for `Synchronous::Full` and `Synchronous::Normal`.
//!
//! `cargo bench -p switchboard-store --bench commit`; criterion reports elements/s = upserts/s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchboard_model::Change;
use switchboard_store::{Location, SqliteOptions, SqliteStore, Synchronous, battery};

/// Distinct bindings cycled through, so the table reaches a steady size.
const DEVICES: u64 = 10_000;

fn commit_throughput(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    for (label, synchronous) in [("full", Synchronous::Full), ("normal", Synchronous::Normal)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(
            dir.path(),
            SqliteOptions {
                synchronous,
                ..SqliteOptions::default()
            },
        )
        .expect("open");
        let template = battery::binding(
            "bench-account",
            "bench-device",
            "c:sip:bench@192.0.2.1",
            1_800_000_000_000,
        );
        let counter = Arc::new(AtomicU64::new(0));
        let mut group = criterion.benchmark_group(format!("commit_upsert/{label}"));
        group.throughput(Throughput::Elements(1));
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(4));
        for committers in [1_u64, 16, 256] {
            group.bench_with_input(
                BenchmarkId::from_parameter(committers),
                &committers,
                |bencher, &committers| {
                    bencher.iter_custom(|iterations| {
                        runtime.block_on(async {
                            let started = Instant::now();
                            let tasks: Vec<_> = (0..committers)
                                .map(|task| {
                                    // Spread `iterations` over the committers.
                                    let share = iterations / committers
                                        + u64::from(task < iterations % committers);
                                    let store = Arc::clone(&store);
                                    let counter = Arc::clone(&counter);
                                    let template = template.clone();
                                    tokio::spawn(async move {
                                        for _ in 0..share {
                                            let n = counter.fetch_add(1, Ordering::Relaxed);
                                            let mut binding = template.clone();
                                            binding.device_id =
                                                format!("bench-device-{}", n % DEVICES);
                                            binding.cseq =
                                                u32::try_from(n % u64::from(u32::MAX)).unwrap_or(0);
                                            store
                                                .commit(vec![Change::UpsertBinding(binding)])
                                                .await
                                                .expect("commit");
                                        }
                                    })
                                })
                                .collect();
                            for task in tasks {
                                task.await.expect("task");
                            }
                            started.elapsed()
                        })
                    });
                },
            );
        }
        group.finish();
        let stats = store.stats();
        eprintln!(
            "commit_upsert/{label}: {} batches in {} transactions ({:.1} batches/transaction)",
            stats.committed_batches,
            stats.commit_transactions,
            stats.committed_batches as f64 / stats.commit_transactions.max(1) as f64
        );
    }
}

criterion_group!(benches, commit_throughput);
criterion_main!(benches);
