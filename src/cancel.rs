//! Cancellation: a run checks the caller's flag at cancel points — before and after text
//! encoding, after every denoising step, between the VAE decoder's blocks and frame chunks —
//! and stops with [`Error::Cancelled`] naming where.
//!
//! A cancel point first waits for the GPU work submitted so far: the CPU then never queues
//! more work than one block ahead of a cancel, so the rest of a long VAE decode is not run
//! after the user pressed Cancel; and in browsers that wait hands the event loop the cancel
//! message (a worker's `AbortSignal` only flips while the event loop runs). Without a check
//! (`None`) a cancel point costs nothing.

use crate::gpu::Gpu;
use crate::{Error, Result};

/// Is the run cancelled? Called at every cancel point; natively it may read a flag set by
/// another thread, in browsers an `AbortSignal`.
pub type CancelCheck<'a> = &'a dyn Fn() -> bool;

/// A cancel point after GPU work: wait for the submitted work (it runs either way), then ask
/// `cancel` once.
pub async fn point(gpu: &Gpu, cancel: Option<CancelCheck<'_>>, during: impl FnOnce() -> String) -> Result<()> {
    let Some(cancel) = cancel else { return Ok(()) };
    gpu.sync().await?;
    match cancel() {
        true => Err(Error::Cancelled { during: during() }),
        false => Ok(()),
    }
}

/// A cancel point with no GPU work to wait for.
pub fn check(cancel: Option<CancelCheck<'_>>, during: &str) -> Result<()> {
    match cancel {
        Some(c) if c() => Err(Error::Cancelled { during: during.to_string() }),
        _ => Ok(()),
    }
}
