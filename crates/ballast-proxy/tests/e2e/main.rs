//! ballast-proxy's integration tests, as one test program: real proxies on
//! loopback (in this process, or as child processes for takeovers) in front
//! of tiny upstreams, one module per subject; [`common`] is their shared
//! harness. One program, not one per file, so the proxy and the harness
//! are compiled and linked once.

mod certs;
mod common;
mod counters;
mod early_answers;
mod handoff;
mod hardening;
mod routing;
mod slow_readers;
mod takeover;
mod tls;
