//! Models whose weights need not stay on the device (memory levers, issue 5): the text
//! encoder is only used to encode the prompts, the VAE decoder only at the end of a
//! generation. [`Offloadable`] loads such a model while recording every device weight the
//! [`Loader`] creates (in creation order); [`Offloadable::offload`] reads them back once into a
//! host copy of the exact device bytes (packed q8/q4 words and f16 scales included) and drops
//! the device model; [`Offloadable::ensure`] rebuilds it by running the same load function
//! against a [`Replay`] of that copy, so it allocates the same buffers in the same order
//! (the memory plan replays them too) and computes bit-identical results.
//!
//! Why a host copy of the device bytes rather than re-reading the source: the source may be a
//! Blob, a download or a LoRA-merged view, and re-reading means converting and quantizing
//! again; the copy is one `write_buffer` per tensor, independent of where the weights came
//! from, and costs host memory equal to the model's device bytes (SD1.5 text encoder int8
//! 164 MB / f16 246 MB, VAE decoder f32 198 MB). The copy is made on the first offload only.
//! A copy of f32 weights can be restored in f16 (the VAE's f16 lever): the values are
//! rounded exactly as an f16 load from the source rounds them.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex, MutexGuard};

use super::nn::{Loader, Weight};
use super::quant_policy::QuantPolicy;
use crate::gpu::{DType, Gpu, Shape, Tensor};
use crate::load::{MapSource, WeightSource};
use crate::ops::QuantizedWeight;
use crate::quant::QuantizedMatrix;
use crate::{Error, Result};

/// A device weight as the loader created it.
#[derive(Clone)]
pub enum DeviceWeight {
    Dense(Tensor),
    Quant(QuantizedWeight),
}

/// The device weights a [`Loader`] created, in order.
#[derive(Default)]
pub struct Recorder {
    items: RefCell<Vec<DeviceWeight>>,
}

impl Recorder {
    pub(crate) fn push(&self, w: DeviceWeight) {
        self.items.borrow_mut().push(w);
    }

    pub(crate) fn push_weight(&self, w: &Weight) {
        self.push(match w {
            Weight::Dense(t) => DeviceWeight::Dense(t.clone()),
            Weight::Quant(q) => DeviceWeight::Quant(q.clone()),
        });
    }

    fn take(&self) -> Vec<DeviceWeight> {
        std::mem::take(&mut self.items.borrow_mut())
    }
}

/// One device weight's bytes on the host.
pub enum HostWeight {
    Dense { shape: Shape, dtype: DType, bytes: Vec<u8>, label: String },
    Quant { shape: Shape, matrix: QuantizedMatrix, label: String },
}

impl HostWeight {
    pub fn bytes(&self) -> usize {
        match self {
            HostWeight::Dense { bytes, .. } => bytes.len(),
            HostWeight::Quant { matrix, .. } => matrix.words.len() * 4 + (matrix.scales.len() + matrix.mins.len()) * 2,
        }
    }
}

/// Read `weights` back into host copies (one staging map per 64 MiB).
pub async fn capture(gpu: &Gpu, weights: &[DeviceWeight]) -> Result<Vec<HostWeight>> {
    let mut tensors: Vec<&Tensor> = Vec::new();
    for w in weights {
        match w {
            DeviceWeight::Dense(t) => tensors.push(t),
            DeviceWeight::Quant(q) => {
                tensors.push(&q.words);
                tensors.push(&q.scales);
                tensors.extend(q.mins.as_ref());
            }
        }
    }
    let mut bytes = gpu.read_many(&tensors).await?.into_iter();
    let mut next = || bytes.next().ok_or_else(|| Error::input("offload", "fewer tensors read back than recorded"));
    let halves = |b: Vec<u8>, t: &Tensor| -> Vec<half::f16> {
        let mut v: Vec<half::f16> = bytemuck::pod_collect_to_vec(&b);
        v.truncate(t.numel() as usize);
        v
    };
    let mut out = Vec::with_capacity(weights.len());
    for w in weights {
        out.push(match w {
            DeviceWeight::Dense(t) => HostWeight::Dense { shape: t.shape().clone(), dtype: t.dtype(), bytes: next()?, label: t.buffer().label().to_string() },
            DeviceWeight::Quant(q) => {
                let n = q.shape.dim(-1).unwrap_or(0);
                let k = (q.shape.numel() as usize).checked_div(n).unwrap_or(0);
                let words = bytemuck::pod_collect_to_vec(&next()?);
                let scales = halves(next()?, &q.scales);
                let mins = match &q.mins {
                    Some(m) => halves(next()?, m),
                    None => Vec::new(),
                };
                HostWeight::Quant { shape: q.shape.clone(), matrix: QuantizedMatrix { k, n, format: q.format, words, scales, mins }, label: q.words.buffer().label().to_string() }
            }
        });
    }
    Ok(out)
}

/// Host copies handed out in order to a replaying [`Loader`] instead of reading its source.
pub struct Replay {
    items: Arc<Vec<HostWeight>>,
    next: Cell<usize>,
}

impl Replay {
    pub fn new(items: Arc<Vec<HostWeight>>) -> Replay {
        Replay { items, next: Cell::new(0) }
    }

    fn pop(&self, shape: &[usize]) -> Result<&HostWeight> {
        let i = self.next.get();
        self.next.set(i + 1);
        let item = self.items.get(i).ok_or_else(|| Error::input("offloaded weights", format!("the model asked for weight {i} {shape:?}; the copy holds {}", self.items.len())))?;
        let have = match item {
            HostWeight::Dense { shape, .. } | HostWeight::Quant { shape, .. } => shape,
        };
        if have.dims() != shape {
            return Err(Error::input("offloaded weights", format!("weight {i} is {have}, the model asked for {shape:?}")));
        }
        Ok(item)
    }

    fn upload_dense(gpu: &Gpu, shape: &Shape, have: DType, bytes: &[u8], label: &str, dtype: DType) -> Result<Tensor> {
        if have == dtype {
            return Ok(gpu.upload_weight_bytes(bytes, shape.clone(), dtype, label)?);
        }
        if have == DType::F32 && dtype == DType::F16 {
            let values: Vec<f32> = bytemuck::pod_collect_to_vec(bytes);
            return Ok(gpu.upload_weight_f32_as(&values, shape.clone(), dtype, label)?);
        }
        Err(Error::input("offloaded weights", format!("`{label}` was copied as {have} and cannot be restored as {dtype}")))
    }

    /// The next weight as a dense tensor in `dtype` (a loader's vectors, embeddings).
    pub(crate) fn dense(&self, gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Tensor> {
        match self.pop(shape)? {
            HostWeight::Dense { shape, dtype: have, bytes, label } => Self::upload_dense(gpu, shape, *have, bytes, label, dtype),
            HostWeight::Quant { label, .. } => Err(Error::input("offloaded weights", format!("`{label}` is quantized where the model expects a dense tensor"))),
        }
    }

    /// The next weight as a GEMM weight (dense in `dtype`, or packed as it was).
    pub(crate) fn gemm(&self, gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Weight> {
        match self.pop(shape)? {
            HostWeight::Dense { shape, dtype: have, bytes, label } => Ok(Weight::Dense(Self::upload_dense(gpu, shape, *have, bytes, label, dtype)?)),
            HostWeight::Quant { shape, matrix, label } => Ok(Weight::Quant(QuantizedWeight::upload(gpu, matrix, shape.clone(), label)?)),
        }
    }

    fn finish(&self) -> Result<()> {
        let used = self.next.get();
        if used != self.items.len() {
            return Err(Error::input("offloaded weights", format!("the model used {used} of {} copied weights", self.items.len())));
        }
        Ok(())
    }
}

/// Builds a model from a loader (the model's own load function).
pub type Build<M> = Box<dyn Fn(&Loader<'_>) -> Result<M> + Send + Sync>;

struct Resident<M> {
    model: M,
    dtype: DType,
    /// Its device weights in load order while no host copy exists (for making one).
    recorded: Vec<DeviceWeight>,
}

struct Slot<M> {
    resident: Option<Resident<M>>,
    host: Option<Arc<Vec<HostWeight>>>,
}

/// A model that can leave the device between uses (see the module docs).
pub struct Offloadable<M> {
    name: &'static str,
    /// The storage type it was loaded in.
    dtype: DType,
    build: Build<M>,
    slot: Mutex<Slot<M>>,
}

impl<M> Offloadable<M> {
    /// Load the model from `src` (quantized per `policy`) with `build`, recording its weights.
    pub fn load(gpu: &Gpu, src: &dyn WeightSource, dtype: DType, policy: Option<&QuantPolicy>, name: &'static str, build: Build<M>) -> Result<Offloadable<M>> {
        let rec = Recorder::default();
        let model = build(&Loader::new(gpu, src, dtype).with_quant(policy).recording(&rec))?;
        let resident = Resident { model, dtype, recorded: rec.take() };
        Ok(Offloadable { name, dtype, build, slot: Mutex::new(Slot { resident: Some(resident), host: None }) })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Slot<M>>> {
        self.slot.lock().map_err(|_| Error::input(self.name, "a previous call panicked while using this model"))
    }

    /// The storage type the model is resident in, `None` when offloaded.
    pub fn resident(&self) -> Result<Option<DType>> {
        Ok(self.lock()?.resident.as_ref().map(|r| r.dtype))
    }

    /// Bytes of the host copy (0 before the first offload).
    pub fn host_bytes(&self) -> Result<usize> {
        Ok(self.lock()?.host.as_ref().map_or(0, |h| h.iter().map(HostWeight::bytes).sum()))
    }

    /// Drop the device weights (reading them back into the host copy the first time).
    pub async fn offload(&self, gpu: &Gpu) -> Result<()> {
        let pending = {
            let mut slot = self.lock()?;
            if slot.resident.is_none() {
                return Ok(());
            }
            if slot.host.is_some() {
                slot.resident = None;
                return Ok(());
            }
            slot.resident.as_ref().map(|r| r.recorded.clone()).unwrap_or_default()
        };
        let host = capture(gpu, &pending).await?;
        drop(pending);
        let mut slot = self.lock()?;
        slot.host = Some(Arc::new(host));
        slot.resident = None;
        Ok(())
    }

    /// Make the model resident in `dtype`: restored from the host copy when offloaded, and
    /// rebuilt when resident in another storage type.
    pub async fn ensure(&self, gpu: &Gpu, dtype: DType) -> Result<()> {
        match self.resident()? {
            Some(d) if d == dtype => return Ok(()),
            Some(_) => self.offload(gpu).await?,
            None => {}
        }
        let mut slot = self.lock()?;
        let host = slot.host.clone().ok_or_else(|| Error::input(self.name, "offloaded without a host copy"))?;
        let replay = Replay::new(host);
        let empty = MapSource::default();
        let model = (self.build)(&Loader::new(gpu, &empty, dtype).replaying(&replay))?;
        replay.finish()?;
        slot.resident = Some(Resident { model, dtype, recorded: Vec::new() });
        Ok(())
    }

    /// [`Offloadable::ensure`] in the storage type the model was loaded in.
    pub async fn restore(&self, gpu: &Gpu) -> Result<()> {
        self.ensure(gpu, self.dtype).await
    }

    /// Run `f` on the resident model (an error when it is offloaded: call
    /// [`Offloadable::ensure`] first).
    pub fn with<R>(&self, f: impl FnOnce(&M) -> Result<R>) -> Result<R> {
        let slot = self.lock()?;
        match &slot.resident {
            Some(r) => f(&r.model),
            None => Err(Error::input(self.name, "the model is offloaded (Offloadable::ensure restores it)")),
        }
    }

    /// [`Offloadable::with`] for async work on the model (the VAE decode with cancel points):
    /// the model stays borrowed, so neither `offload` nor `ensure` may run meanwhile.
    // The lock is held across the awaits on purpose: the awaited work is this model's own GPU
    // work on the caller's task; another thread using the same model waits for it.
    #[allow(clippy::await_holding_lock)]
    pub async fn with_async<R>(&self, f: impl AsyncFnOnce(&M) -> Result<R>) -> Result<R> {
        let slot = self.lock()?;
        match &slot.resident {
            Some(r) => f(&r.model).await,
            None => Err(Error::input(self.name, "the model is offloaded (Offloadable::ensure restores it)")),
        }
    }
}
