//! AT&T Telegence adapter (being written).
