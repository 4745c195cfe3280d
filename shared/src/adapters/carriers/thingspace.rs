//! Verizon ThingSpace Connectivity Management adapter (being written).
