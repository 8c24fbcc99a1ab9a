//! diffusers `ResnetBlock2D` (UNet and VAE): `GN → SiLU → conv3×3 (+ time embedding) →
//! GN → SiLU → conv3×3`, plus the (1×1-projected when channels change) input.

use super::nn::{Conv, Linear, Loader, Norm};
use crate::gpu::{Batch, Tensor};
use crate::ops::{self, Broadcast, Conv2d, NormDomain};
use crate::Result;

pub struct ResnetBlock2D {
    norm1: Norm,
    conv1: Conv,
    time_emb_proj: Option<Linear>,
    norm2: Norm,
    conv2: Conv,
    conv_shortcut: Option<Linear>,
    groups: usize,
    eps: f32,
}

impl ResnetBlock2D {
    /// `temb_dim`: the time embedding width (UNet), or `None` (VAE).
    pub fn load(l: &Loader<'_>, cin: usize, cout: usize, temb_dim: Option<usize>, groups: usize, eps: f32) -> Result<ResnetBlock2D> {
        Ok(ResnetBlock2D {
            norm1: l.norm("norm1", cin)?,
            conv1: l.conv("conv1", cin, cout, 3)?,
            time_emb_proj: temb_dim.map(|d| l.linear("time_emb_proj", d, cout, true)).transpose()?,
            norm2: l.norm("norm2", cout)?,
            conv2: l.conv("conv2", cout, cout, 3)?,
            conv_shortcut: if cin != cout { Some(l.pointwise("conv_shortcut", cin, cout)?) } else { None },
            groups,
            eps,
        })
    }

    /// `x [N, H, W, Cin]`; `temb_silu [N, temb_dim]` = SiLU of the time embedding (one row
    /// per image). `domain` selects per-image or joint-over-frames GroupNorm statistics.
    pub fn forward(&self, bt: &mut Batch<'_>, x: &Tensor, temb_silu: Option<&Tensor>, domain: NormDomain) -> Result<Tensor> {
        // Normalised copies are dropped once their convolution is recorded, so a batch flush
        // (gpu::Batch, memory plan) can release them while the block is still recording.
        let mut h = {
            let n = self.norm1.group(bt, self.groups, self.eps, domain, true, x)?;
            self.conv1.run(bt, Conv2d::SAME_3X3, &n, None)?
        };
        if let (Some(proj), Some(t)) = (&self.time_emb_proj, temb_silu) {
            let tp = proj.run(bt, t, None)?;
            let d = h.dims().to_vec();
            let sum = super::nn::alloc(bt.gpu(), &d, h.dtype(), "resnet.temb")?;
            ops::add(bt, &h, &tp, Broadcast::PerRow { positions: (d[1] * d[2]) as u32 }, &sum)?;
            h = sum;
        }
        let n = self.norm2.group(bt, self.groups, self.eps, domain, true, &h)?;
        drop(h);
        let shortcut = match &self.conv_shortcut {
            Some(s) => s.run(bt, x, None)?,
            None => x.clone(),
        };
        self.conv2.run(bt, Conv2d::SAME_3X3, &n, Some(&shortcut))
    }
}
