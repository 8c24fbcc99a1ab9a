//! diffusers `Transformer2DModel` as used by SD1.5: `GN → proj_in (1×1 conv) →
//! BasicTransformerBlock (self-attn, cross-attn to the text, GEGLU FF) → proj_out` + input.

use super::nn::{GegluFeedForward, Linear, Loader, MultiHeadAttention, Norm, Tokens};
use crate::gpu::{Batch, Tensor};
use crate::ops::NormDomain;
use crate::Result;

/// `norm1 → attn1 (self)`, `norm2 → attn2 (cross)`, `norm3 → ff`, each with a residual.
pub struct BasicTransformerBlock {
    norm1: Norm,
    attn1: MultiHeadAttention,
    norm2: Norm,
    attn2: MultiHeadAttention,
    norm3: Norm,
    ff: GegluFeedForward,
}

const LN_EPS: f32 = 1e-5;

impl BasicTransformerBlock {
    fn load(l: &Loader<'_>, dim: usize, context_dim: usize, heads: usize) -> Result<BasicTransformerBlock> {
        let (a1, a2, ff) = (l.child("attn1"), l.child("attn2"), l.child("ff"));
        Ok(BasicTransformerBlock {
            norm1: l.norm("norm1", dim)?,
            attn1: MultiHeadAttention::load(&l.at(&a1), dim, dim, heads, false)?,
            norm2: l.norm("norm2", dim)?,
            attn2: MultiHeadAttention::load(&l.at(&a2), dim, context_dim, heads, false)?,
            norm3: l.norm("norm3", dim)?,
            ff: GegluFeedForward::load(&l.at(&ff), dim)?,
        })
    }

    fn forward(&self, bt: &mut Batch<'_>, x: &Tensor, context: &Tensor, kv_div: usize) -> Result<Tensor> {
        // Scoped so each normalised copy and residual is dropped as soon as it is consumed
        // (the memory plan counts on it).
        let x1 = {
            let n = self.norm1.layer(bt, LN_EPS, x)?;
            self.attn1.self_attention(bt, &n, Tokens::Rows { causal: false }, Some(x))?
        };
        let x2 = {
            let n = self.norm2.layer(bt, LN_EPS, &x1)?;
            self.attn2.cross_attention(bt, &n, context, kv_div, Some(&x1))?
        };
        drop(x1);
        let n = self.norm3.layer(bt, LN_EPS, &x2)?;
        self.ff.run(bt, &n, &x2)
    }
}

pub struct Transformer2DModel {
    norm: Norm,
    proj_in: Linear,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Linear,
    groups: usize,
}

impl Transformer2DModel {
    pub fn load(l: &Loader<'_>, dim: usize, context_dim: usize, heads: usize, groups: usize, layers: usize, linear_projection: bool) -> Result<Transformer2DModel> {
        let proj = |name: &str| if linear_projection { l.linear(name, dim, dim, true) } else { l.pointwise(name, dim, dim) };
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let p = l.child(&format!("transformer_blocks.{i}"));
            blocks.push(BasicTransformerBlock::load(&l.at(&p), dim, context_dim, heads)?);
        }
        Ok(Transformer2DModel { norm: l.norm("norm", dim)?, proj_in: proj("proj_in")?, blocks, proj_out: proj("proj_out")?, groups })
    }

    /// `x [N, H, W, C]`, `context [N / kv_div, L, D]` (one text embedding per video).
    pub fn forward(&self, bt: &mut Batch<'_>, x: &Tensor, context: &Tensor, kv_div: usize) -> Result<Tensor> {
        let d = x.dims().to_vec();
        let tokens = [d[0], d[1] * d[2], d[3]];
        let mut h = {
            let n = self.norm.group(bt, self.groups, 1e-6, NormDomain::PerImage, false, x)?;
            let n = n.reshape(tokens.to_vec()).ok_or_else(|| crate::Error::input("transformer input", format!("{x:?}")))?;
            self.proj_in.run(bt, &n, None)?
        };
        for b in &self.blocks {
            h = b.forward(bt, &h, context, kv_div)?;
        }
        let residual = x.reshape(tokens.to_vec()).ok_or_else(|| crate::Error::input("transformer input", format!("{x:?}")))?;
        let out = self.proj_out.run(bt, &h, Some(&residual))?;
        out.reshape(d).ok_or_else(|| crate::Error::input("transformer output", "reshape"))
    }
}
