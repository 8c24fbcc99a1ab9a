//! Reading results back to the CPU — asynchronous on every target.
//!
//! In the browser a blocking wait would deadlock the event loop (and `device.poll` is a
//! no-op there), so readback is `map_async` + an awaited oneshot channel. Natively the
//! device is polled until the map callback has fired.

use futures_channel::oneshot;

use super::context::Gpu;
use super::error::{GpuError, GpuResult};
use super::tensor::{DType, Tensor};

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
        self.check()?;
        let len = t.size_bytes();
        let padded = len.max(4).next_multiple_of(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: padded,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut batch = self.batch("readback");
        batch.encoder().copy_buffer_to_buffer(t.buffer().raw(), t.offset(), &staging, 0, padded.min(t.buffer().size() - t.offset()));
        batch.submit()?;

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
        let bytes = {
            let view = staging.slice(..).get_mapped_range().map_err(|e| GpuError::Readback(e.to_string()))?;
            view[..len as usize].to_vec()
        };
        staging.unmap();
        Ok(bytes)
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
