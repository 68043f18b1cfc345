//! llava
