//! Benchmark-only support for `bench/gateway-http`: the statistics the load
//! driver reports. The programs themselves are `bench-upstream` (a fast MCP
//! server) and `bench-drive` (the load driver); nothing here is part of
//! Warden.

/// The latency distribution and rate of one measured run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Median round trip, in microseconds.
    pub p50_us: f64,
    /// 99th percentile round trip, in microseconds.
    pub p99_us: f64,
    /// 99.9th percentile round trip, in microseconds.
    pub p999_us: f64,
    /// Round trips completed per second of wall time, all clients together.
    pub per_sec: f64,
}

impl Summary {
    /// Summarises round-trip times in nanoseconds (sorted in place) that
    /// took `wall_secs` of wall time in all. `None` when there are none.
    pub fn of(latencies_ns: &mut [u64], wall_secs: f64) -> Option<Summary> {
        latencies_ns.sort_unstable();
        let micros = |q| percentile(latencies_ns, q).map(|ns| ns as f64 / 1_000.0);
        Some(Summary {
            p50_us: micros(0.50)?,
            p99_us: micros(0.99)?,
            p999_us: micros(0.999)?,
            per_sec: latencies_ns.len() as f64 / wall_secs,
        })
    }
}

/// The nearest-rank percentile `q` (0 < q ≤ 1) of `sorted`.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied()
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => sorted.get(middle).copied(),
        _ => Some((sorted.get(middle - 1)? + sorted.get(middle)?) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.50), Some(50));
        assert_eq!(percentile(&sorted, 0.99), Some(99));
        assert_eq!(percentile(&sorted, 0.999), Some(100));
        assert_eq!(percentile(&[7], 0.5), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn summary_is_in_microseconds_and_counts_all_clients() {
        let mut latencies = vec![3_000, 1_000, 2_000, 4_000];
        let summary = Summary::of(&mut latencies, 0.5).unwrap();
        assert_eq!(summary.p50_us, 2.0);
        assert_eq!(summary.p99_us, 4.0);
        assert_eq!(summary.per_sec, 8.0);
        assert_eq!(Summary::of(&mut [], 1.0), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
