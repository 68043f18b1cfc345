//! Key/value cache, one per layer.
