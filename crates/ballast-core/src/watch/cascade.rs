//! Cascade protection: watch never acts on more than `watch.max_share` of a
//! role's hosts at once. A host counts as acted on from the restart until
//! the restart is done and its container healthy again (or watch gives up
//! on it): a fleet that falls over host after host is not restarted all
//! together into the same failure.

/// How many of a role's `hosts` may be acted on at once with a share of
/// `percent`: rounded down, at least one.
pub fn cap(hosts: usize, percent: u32) -> usize {
    (hosts * percent as usize / 100).max(1)
}

/// Of `wanted` hosts (in order of preference), those that may be acted on
/// now, with `busy` hosts of the role already acted on: the rest wait.
pub fn allow<T: Clone>(wanted: &[T], busy: usize, cap: usize) -> (Vec<T>, Vec<T>) {
    let free = cap.saturating_sub(busy);
    let n = free.min(wanted.len());
    (wanted[..n].to_vec(), wanted[n..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_a_share_rounded_down_at_least_one() {
        assert_eq!(cap(1, 34), 1);
        assert_eq!(cap(2, 34), 1);
        assert_eq!(cap(3, 34), 1);
        assert_eq!(cap(6, 34), 2);
        assert_eq!(cap(10, 34), 3);
        assert_eq!(cap(10, 100), 10);
        assert_eq!(cap(200, 34), 68);
    }

    #[test]
    fn hosts_past_the_cap_wait_for_the_busy_ones() {
        let wanted = ["a", "b", "c", "d"];
        assert_eq!(allow(&wanted, 0, 2), (vec!["a", "b"], vec!["c", "d"]));
        assert_eq!(allow(&wanted, 1, 2), (vec!["a"], vec!["b", "c", "d"]));
        assert_eq!(allow(&wanted, 3, 2), (vec![], wanted.to_vec()));
        assert_eq!(allow(&wanted[..1], 0, 3), (vec!["a"], vec![]));
    }
}
