//! The networks, one file per diffusers module (names as in diffusers, so a diffusers reader
//! finds their way): CLIP text encoder, UNet2DConditionModel + motion modules
//! (UNetMotionModel), AutoencoderKL. Activations are channels-last on the GPU.

pub mod config;

pub use config::{ClipConfig, MotionConfig, UNetConfig, VaeConfig};
pub mod clip;
pub mod motion;
pub mod nn;
pub mod offload;
pub mod quant_policy;
pub mod resnet;
pub mod transformer_2d;
pub mod unet;
pub mod vae;

pub use clip::ClipTextModel;
pub use motion::{MotionModule, MotionNorm};
pub use unet::{UNet, UNetOptions};
pub use vae::{Decoder, Encoder};
