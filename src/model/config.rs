//! Model configurations, field names as in diffusers' `config.json` files. Parsing from
//! JSON and inference from tensor shapes (for single files without configs) live in
//! [`crate::load::config`].

/// diffusers `UNet2DConditionModel` (SD1.5 family).
#[derive(Debug, Clone, PartialEq)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// 320, 640, 1280, 1280 in SD1.5.
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    /// ResNet / `conv_norm_out` GroupNorm eps (1e-5).
    pub norm_eps: f32,
    /// Text embedding width (768 for SD1.5).
    pub cross_attention_dim: usize,
    /// Attention heads per level. diffusers' legacy `attention_head_dim` (8 for SD1.5) means
    /// the number of heads; `num_attention_heads`, when present, wins.
    pub attention_heads: Vec<usize>,
    /// Per level: does the down block have cross-attention transformers
    /// (`CrossAttnDownBlock2D`) or not (`DownBlock2D`)? Up blocks mirror it.
    pub down_block_attention: Vec<bool>,
    pub up_block_attention: Vec<bool>,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f32,
    /// Transformer blocks per attention (1 for SD1.5).
    pub transformer_layers_per_block: usize,
    /// `use_linear_projection` (false for SD1.5: 1×1 conv proj_in/proj_out).
    pub use_linear_projection: bool,
    pub sample_size: usize,
}

impl UNetConfig {
    /// Stable Diffusion 1.5.
    pub fn sd15() -> UNetConfig {
        UNetConfig {
            in_channels: 4,
            out_channels: 4,
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: 2,
            norm_num_groups: 32,
            norm_eps: 1e-5,
            cross_attention_dim: 768,
            attention_heads: vec![8; 4],
            down_block_attention: vec![true, true, true, false],
            up_block_attention: vec![false, true, true, true],
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            transformer_layers_per_block: 1,
            use_linear_projection: false,
            sample_size: 64,
        }
    }

    /// Time embedding width (4 × the first block's channels).
    pub fn time_embed_dim(&self) -> usize {
        self.block_out_channels.first().copied().unwrap_or(0) * 4
    }
}

/// diffusers `MotionAdapter` (original AnimateDiff motion modules after key renaming).
#[derive(Debug, Clone, PartialEq)]
pub struct MotionConfig {
    pub block_out_channels: Vec<usize>,
    /// Modules per down block (2); up blocks have one more.
    pub motion_layers_per_block: usize,
    pub motion_num_attention_heads: usize,
    pub motion_norm_num_groups: usize,
    /// Positional-encoding length: the most frames one pass can take (24 v1, 32 v2/v3).
    pub motion_max_seq_length: usize,
    pub use_motion_mid_block: bool,
}

impl MotionConfig {
    /// AnimateDiff v2 (`mm_sd_v15_v2`).
    pub fn sd15_v2() -> MotionConfig {
        MotionConfig {
            block_out_channels: vec![320, 640, 1280, 1280],
            motion_layers_per_block: 2,
            motion_num_attention_heads: 8,
            motion_norm_num_groups: 32,
            motion_max_seq_length: 32,
            use_motion_mid_block: true,
        }
    }
}

/// diffusers `AutoencoderKL`.
#[derive(Debug, Clone, PartialEq)]
pub struct VaeConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    pub scaling_factor: f32,
}

impl VaeConfig {
    pub fn sd15() -> VaeConfig {
        VaeConfig {
            in_channels: 3,
            out_channels: 3,
            latent_channels: 4,
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            norm_num_groups: 32,
            scaling_factor: 0.18215,
        }
    }
}

/// transformers `CLIPTextModel` config.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub layer_norm_eps: f32,
    /// `quick_gelu` for SD1.5 (also accepted: `gelu`).
    pub hidden_act: String,
}

impl ClipConfig {
    /// CLIP ViT-L/14 text tower (SD1.5).
    pub fn sd15() -> ClipConfig {
        ClipConfig {
            vocab_size: 49408,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 77,
            layer_norm_eps: 1e-5,
            hidden_act: "quick_gelu".into(),
        }
    }
}
