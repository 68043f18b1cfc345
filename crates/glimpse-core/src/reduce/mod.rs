//! Visual-token reduction: one small module per method and stage, behind the three
//! interfaces in [`stages`], composed by a [`plan::ReduceSpec`] parsed from the user's
//! `--reduce` string. Model code calls the interfaces and knows no method by name.

pub mod dynamic;
pub mod fastv;
pub mod knobs;
pub mod mustdrop;
pub mod plan;
pub mod rank;
pub mod report;
pub mod sequence;
pub mod sparsevlm;
pub mod stages;

pub use plan::{PositionMode, ReduceSpec, ReductionPlan};
pub use report::ReductionReport;
pub use sequence::{EncodedImage, Row, Sequence, VisionRef, VisionToken};
