//! ballast-proxy (being written).
