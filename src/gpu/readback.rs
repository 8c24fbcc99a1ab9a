//! Reading results back to the CPU — asynchronous on every target.
//!
//! In the browser a blocking wait would deadlock the event loop (and `device.poll` is a
//! no-op there), so readback is `map_async` + an awaited oneshot channel. Natively the
//! device is polled until the map callback has fired.

use futures_channel::oneshot;

use super::context::Gpu;
use super::error::{GpuError, GpuResult};
use super::tensor::{DType, Tensor};

/// Largest staging buffer [`Gpu::read_many`] maps at once (a larger tensor gets its own).
pub const READ_STAGING_BYTES: u64 = 64 << 20;

impl Gpu {
    /// Wait until all submitted work has finished.
    pub async fn sync(&self) -> GpuResult<()> {
        let (tx, rx) = oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        self.poll_wait()?;
        // A lost device may drop the callback without calling it; `check` says why.
        let done = rx.await;
        self.check()?;
        done.map_err(|_| GpuError::Readback("queue completion callback dropped".into()))
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn poll_wait(&self) -> GpuResult<()> {
        match self.device.poll(wgpu::PollType::wait_indefinitely()) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.check()?;
                Err(GpuError::Readback(e.to_string()))
            }
        }
    }

    #[cfg(target_arch = "wasm32")]
    fn poll_wait(&self) -> GpuResult<()> {
        // The browser drives callbacks from its event loop.
        Ok(())
    }

    /// Copy a tensor's bytes to the CPU.
    pub async fn read_bytes(&self, t: &Tensor) -> GpuResult<Vec<u8>> {
        let mut all = self.read_many(&[t]).await?;
        all.pop().ok_or_else(|| GpuError::Readback("no data read".into()))
    }

    /// Copy several tensors' bytes to the CPU, packing consecutive tensors into staging
    /// buffers of up to [`READ_STAGING_BYTES`] (one map per staging buffer rather than per
    /// tensor: offloading a model reads hundreds of them).
    pub async fn read_many(&self, tensors: &[&Tensor]) -> GpuResult<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(tensors.len());
        let mut start = 0;
        while start < tensors.len() {
            let mut end = start;
            let mut total = 0u64;
            while end < tensors.len() {
                let padded = tensors[end].size_bytes().max(4).next_multiple_of(4);
                if end > start && total + padded > READ_STAGING_BYTES {
                    break;
                }
                total += padded;
                end += 1;
            }
            out.extend(self.read_group(&tensors[start..end], total).await?);
            start = end;
        }
        Ok(out)
    }

    async fn read_group(&self, tensors: &[&Tensor], total: u64) -> GpuResult<Vec<Vec<u8>>> {
        self.check()?;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: total.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut batch = self.batch("readback");
        let mut at = 0u64;
        let mut spans = Vec::with_capacity(tensors.len());
        for t in tensors {
            let len = t.size_bytes();
            let padded = len.max(4).next_multiple_of(4);
            batch.encoder().copy_buffer_to_buffer(t.buffer().raw(), t.device_offset(), &staging, at, padded.min(t.buffer().size() - t.offset()));
            spans.push((at as usize, len as usize));
            at += padded;
        }
        batch.submit()?;
        self.map_read(&staging, |bytes| spans.iter().map(|&(at, len)| bytes[at..at + len].to_vec()).collect()).await
    }

    /// `read` applied to the contents of a `MAP_READ` buffer once the work writing it has
    /// finished (the mapped bytes are not copied first).
    pub(crate) async fn map_read<R>(&self, staging: &wgpu::Buffer, read: impl FnOnce(&[u8]) -> R) -> GpuResult<R> {
        let (tx, rx) = oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.poll_wait()?;
        let mapped = rx.await;
        self.check()?;
        match mapped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GpuError::Readback(e.to_string())),
            Err(_) => return Err(GpuError::Readback("map callback dropped".into())),
        }
        let out = read(&staging.slice(..).get_mapped_range().map_err(|e| GpuError::Readback(e.to_string()))?);
        staging.unmap();
        Ok(out)
    }

    /// Read a tensor as f32 values (f16 storage is widened).
    pub async fn read_f32(&self, t: &Tensor) -> GpuResult<Vec<f32>> {
        let bytes = self.read_bytes(t).await?;
        let n = t.numel() as usize;
        match t.dtype() {
            DType::F32 => Ok(bytemuck::pod_collect_to_vec::<u8, f32>(&bytes)),
            DType::F16 => {
                let halves: Vec<half::f16> = bytemuck::pod_collect_to_vec(&bytes);
                Ok(halves[..n].iter().map(|h| h.to_f32()).collect())
            }
            other => Err(GpuError::shape("read_f32", format!("cannot read {other} tensor {t:?} as f32"))),
        }
    }
}
