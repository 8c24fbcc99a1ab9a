//! One Rust wrapper per WGSL kernel in `shaders/`: shape checks, parameter struct and
//! dispatch next to each other.

pub mod convert;
pub mod fill;
pub mod matmul;

pub use convert::convert;
pub use fill::fill;
pub use matmul::{linear, Linear};
