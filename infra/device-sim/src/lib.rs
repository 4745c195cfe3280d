//! Simulated devices (being written).
