//! clip
