//! Fuzzing benchmark: proptest over every parser that takes untrusted input (tus headers,
//! `Upload-Metadata`, detection bodies, identifiers), many cases each.
//!
//! `cargo bench -p photosync-bench --bench fuzz`
//!
//! 100,000 cases per parser unless `PHOTOSYNC_FUZZ_CASES` says otherwise; the seed is fixed
//! unless `PHOTOSYNC_FUZZ_SEED` (a decimal u64) gives another. Prints, per parser, the cases
//! run, how many inputs were accepted and refused, the time taken and cases per second; then
//! any failed property with the minimal input proptest shrank it to, and exits non-zero.
//! See `photosync_bench::fuzz` for the inputs and the properties.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use photosync_bench::fuzz;

fn main() {
    let cases: u32 = std::env::var("PHOTOSYNC_FUZZ_CASES")
        .ok()
        .map(|s| s.trim().parse().expect("PHOTOSYNC_FUZZ_CASES is a number"))
        .unwrap_or(100_000);
    println!("fuzzing each parser with {cases} cases");
    let reports = fuzz::run(cases);

    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>8} {:>10}",
        "parser", "cases", "accepted", "refused", "seconds", "cases/s"
    );
    for r in &reports {
        let secs = r.elapsed.as_secs_f64();
        println!(
            "{:<28} {:>9} {:>9} {:>9} {:>8.2} {:>10.0}{}",
            r.parser,
            r.cases,
            r.accepted,
            r.refused,
            secs,
            r.cases as f64 / secs.max(1e-9),
            if r.passed() { "" } else { "  FAILED" }
        );
    }

    let failures: Vec<_> = reports
        .iter()
        .filter_map(|r| r.failure.as_deref())
        .collect();
    if failures.is_empty() {
        println!("all properties held");
    } else {
        for f in &failures {
            println!("\n{f}");
        }
        println!("\n{} of {} parsers failed", failures.len(), reports.len());
        std::process::exit(1);
    }
}
