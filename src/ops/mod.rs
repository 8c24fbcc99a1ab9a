//! One Rust wrapper per WGSL kernel in `shaders/`: shape checks, parameter struct and
//! dispatch next to each other. Activations are channels-last (`[N, H, W, C]`, tokens
//! `[N, T, C]`); GEMM weights are K-major (`[in, out]`, conv `[KH, KW, Cin, Cout]`, see
//! [`weights`]).

pub mod attention;
pub mod binary;
pub mod concat;
pub mod conv2d;
pub mod convert;
pub mod embed;
pub mod fill;
pub mod matmul;
pub mod norm;
pub mod pad;
pub mod quantize;
pub mod unary;
pub(crate) mod util;
pub mod weights;

pub use attention::{attention, Attention, TokenLayout};
pub use binary::{add, axpby, mul, Broadcast};
pub use concat::concat;
pub use conv2d::{conv2d, Conv2d};
pub use convert::convert;
pub use embed::{embedding, sinusoidal_position_encoding, timestep_embedding, to_rgba8};
pub use fill::fill;
pub use matmul::{linear, linear_ex, Epilogue, Linear};
pub use norm::{group_norm, group_norm_scratch, layer_norm, GroupNorm, NormDomain};
pub use pad::pad_bottom_right;
pub use quantize::quantize_weight;
pub use unary::{clamp_affine, unary, Activation};
pub use weights::{conv_weight_from_torch, linear_weight_from_torch, QuantizedWeight, WeightRef};
