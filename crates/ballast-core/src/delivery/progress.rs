//! What a delivery under way tells the operator: the bytes sent to each
//! host so far, summed up in one line at most once a period. Every host's
//! load reports several times a second; a line per report would bury the
//! rest of a deploy's output, a line per period reads like a progress bar.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Up to this many hosts are named one by one; more are summed up.
const NAMED: usize = 4;

/// Bytes sent to each host still receiving, and when a line was last due.
#[derive(Debug)]
pub struct Progress {
    every: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    sent: BTreeMap<String, u64>,
    last_line: Option<Instant>,
}

impl Progress {
    /// A line at most once every `every`.
    pub fn new(every: Duration) -> Progress {
        Progress {
            every,
            state: Mutex::new(State::default()),
        }
    }

    /// Records that `host` has been sent `bytes` so far; returns the line
    /// to show when one is due.
    pub fn record(&self, host: &str, bytes: u64, now: Instant) -> Option<String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.sent.insert(host.to_string(), bytes);
        let due = match state.last_line {
            None => true,
            Some(at) => now.duration_since(at) >= self.every,
        };
        if !due {
            return None;
        }
        state.last_line = Some(now);
        Some(line(&state.sent))
    }

    /// `host` has its image: it leaves the line.
    pub fn done(&self, host: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.sent.remove(host);
    }
}

fn line(sent: &BTreeMap<String, u64>) -> String {
    if sent.len() <= NAMED {
        let each: Vec<String> = sent
            .iter()
            .map(|(host, bytes)| format!("{host} {}", human_bytes(*bytes)))
            .collect();
        return format!("sending the image: {}", each.join(", "));
    }
    let total: u64 = sent.values().sum();
    let (slowest, least) = sent
        .iter()
        .min_by_key(|(_, bytes)| **bytes)
        .expect("more hosts than named");
    format!(
        "sending the image: {} to {} hosts, the least so far {} ({slowest})",
        human_bytes(total),
        sent.len(),
        human_bytes(*least)
    )
}

/// Bytes in binary units, one decimal: `1.5 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_line_at_most_once_a_period_naming_each_of_a_few_hosts() {
        let p = Progress::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(
            p.record("h1", 3 * MIB, t0).as_deref(),
            Some("sending the image: h1 3.0 MiB")
        );
        assert_eq!(p.record("h2", MIB, t0 + Duration::from_millis(500)), None);
        assert_eq!(
            p.record("h1", 5 * MIB / 2, t0 + Duration::from_secs(1))
                .as_deref(),
            Some("sending the image: h1 2.5 MiB, h2 1.0 MiB")
        );
        p.done("h1");
        assert_eq!(
            p.record("h2", 2 * MIB, t0 + Duration::from_secs(2))
                .as_deref(),
            Some("sending the image: h2 2.0 MiB")
        );
    }

    #[test]
    fn many_hosts_are_summed_up_with_the_one_furthest_behind() {
        let p = Progress::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for (i, host) in ["h1", "h2", "h3", "h4", "h5"].iter().enumerate() {
            p.record(host, (i as u64 + 1) * MIB, t0);
        }
        assert_eq!(
            p.record("h1", 4 * MIB, t0 + Duration::from_secs(1))
                .as_deref(),
            Some("sending the image: 18.0 MiB to 5 hosts, the least so far 2.0 MiB (h2)")
        );
    }

    #[test]
    fn bytes_read_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(456 * MIB), "456.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
