//! Image delivery to hosts (being written).
