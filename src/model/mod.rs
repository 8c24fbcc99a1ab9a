//! The networks, one file per diffusers module (names as in diffusers, so a diffusers reader
//! finds their way): CLIP text encoder, UNet2DConditionModel + motion modules
//! (UNetMotionModel), AutoencoderKL. Activations are channels-last on the GPU.

pub mod config;

pub use config::{ClipConfig, MotionConfig, UNetConfig, VaeConfig};
