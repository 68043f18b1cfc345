//! The compute boundary between model code and hardware.

pub mod cpu;
