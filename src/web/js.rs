//! Small helpers shared by the wasm API: typed errors that become JS `Error`s with a `name`,
//! reading option objects, plain result objects, cancellation and yielding to the event loop.

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::gpu::GpuError;
use crate::load::LoadError;
use crate::Error;

/// An error for JS: `name` says what kind (JS code can branch on it), `message` says what went
/// wrong in plain words and, where there is one, what to do about it.
#[derive(Debug, Clone)]
pub struct WebError {
    pub name: &'static str,
    pub message: String,
}

impl WebError {
    pub fn new(name: &'static str, message: impl Into<String>) -> WebError {
        WebError { name, message: message.into() }
    }

    /// A bad option value (`param` is the option's JS name).
    pub fn input(param: &str, message: impl std::fmt::Display) -> WebError {
        WebError::new("InputError", format!("invalid {param}: {message}"))
    }

    pub fn aborted(what: &str) -> WebError {
        WebError::new("AbortError", format!("{what} was cancelled"))
    }

    pub fn state(message: impl Into<String>) -> WebError {
        WebError::new("InvalidStateError", message)
    }

    pub fn to_js(&self) -> JsValue {
        let e = js_sys::Error::new(&self.message);
        e.set_name(self.name);
        e.into()
    }

    /// A JS exception (from `fetch`, a `Blob` read, a callback) as a `WebError`, keeping its
    /// name when it is one of ours or an `AbortError`.
    pub fn from_js(context: &str, v: &JsValue) -> WebError {
        let name = Reflect::get(v, &"name".into()).ok().and_then(|n| n.as_string()).unwrap_or_default();
        let message = Reflect::get(v, &"message".into())
            .ok()
            .and_then(|m| m.as_string())
            .or_else(|| v.as_string())
            .unwrap_or_else(|| format!("{v:?}"));
        match name.as_str() {
            "AbortError" => WebError::new("AbortError", format!("{context} was cancelled")),
            "NetworkError" => WebError::new("NetworkError", message),
            // The model cache ran out of browser storage (www/cache.js).
            "QuotaError" => WebError::new("QuotaError", message),
            _ => WebError::new("Error", format!("{context}: {message}")),
        }
    }
}

impl From<Error> for WebError {
    fn from(e: Error) -> WebError {
        match e {
            Error::Input { .. } => WebError::new("InputError", e.to_string()),
            Error::Load(l) => l.into(),
            Error::Gpu(g) => g.into(),
            Error::Cancelled { during } => WebError::new("AbortError", format!("the generation was cancelled during {during}")),
            Error::Plan(crate::plan::PlanError::DoesNotFit { .. }) => WebError::new("OutOfMemoryError", e.to_string()),
            Error::Plan(crate::plan::PlanError::Input { what, .. }) => WebError::input(what, e),
        }
    }
}

impl From<LoadError> for WebError {
    fn from(e: LoadError) -> WebError {
        let fix = match &e {
            LoadError::Io { .. } => " (the file could not be read: was it moved, changed or deleted? pick it again)",
            LoadError::Corrupt { .. } => " (the file is damaged or incomplete: download it again)",
            LoadError::Unsupported { .. } => "",
            LoadError::MissingTensor { .. } | LoadError::Shape { .. } => {
                " (the file does not match this model: is it an SD1.5 model / an AnimateDiff motion module, and do the configs fit?)"
            }
            LoadError::DType { .. } | LoadError::Config { .. } => "",
        };
        WebError::new("LoadError", format!("bad or unsupported model file: {e}{fix}"))
    }
}

impl From<GpuError> for WebError {
    fn from(e: GpuError) -> WebError {
        match &e {
            GpuError::DeviceLost { .. } => WebError::new(
                "DeviceLostError",
                format!("{e}. The GPU was reset or ran out of memory (if it keeps happening: fewer frames, a smaller size, q4 weights or precision f16)"),
            ),
            GpuError::OutOfMemory { .. } => WebError::new(
                "OutOfMemoryError",
                format!("{e}: retry with fewer frames, a smaller width/height or precision f16, or close other GPU-heavy tabs"),
            ),
            GpuError::LimitExceeded { .. } | GpuError::GridTooLarge { .. } => WebError::new(
                "OutOfMemoryError",
                format!("{e}: this GPU's limits are too small for these settings; use fewer frames or a smaller width/height"),
            ),
            GpuError::NoAdapter(_) | GpuError::RequestDevice(_) => WebError::new(
                "NotSupportedError",
                format!("{e}. WebGPU needs Chrome/Edge 113+, Firefox 141+ (Windows) or Safari 26+, over https or localhost, with hardware acceleration on"),
            ),
            _ => WebError::new("GpuError", e.to_string()),
        }
    }
}

impl From<WebError> for JsValue {
    fn from(e: WebError) -> JsValue {
        e.to_js()
    }
}

pub type WebResult<T> = std::result::Result<T, WebError>;

/// A plain object from `(key, value)` pairs.
pub fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in fields {
        // Setting a property on a fresh plain object cannot fail.
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

/// `obj[key]`, `undefined` when absent or when `obj` is not an object.
pub fn get(obj: &JsValue, key: &str) -> JsValue {
    if !obj.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn absent(v: &JsValue) -> bool {
    v.is_undefined() || v.is_null()
}

/// Typed reads from a JS options object (`undefined`/`null` = not given).
pub struct Opts<'a>(pub &'a JsValue);

impl Opts<'_> {
    pub fn check_object(&self, what: &str) -> WebResult<()> {
        if absent(self.0) || (self.0.is_object() && !self.0.is_function() && !js_sys::Array::is_array(self.0)) {
            Ok(())
        } else {
            Err(WebError::input(what, "must be an object"))
        }
    }

    pub fn raw(&self, key: &str) -> Option<JsValue> {
        Some(get(self.0, key)).filter(|v| !absent(v))
    }

    pub fn string(&self, key: &str) -> WebResult<Option<String>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v.as_string().map(Some).ok_or_else(|| WebError::input(key, "must be a string")),
        }
    }

    pub fn boolean(&self, key: &str) -> WebResult<Option<bool>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| WebError::input(key, "must be true or false")),
        }
    }

    pub fn number(&self, key: &str) -> WebResult<Option<f64>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(WebError::input(key, format!("must be a finite number, got {}", describe(&v)))),
            },
        }
    }

    /// An integer in `min..=max`.
    pub fn integer(&self, key: &str, min: u64, max: u64) -> WebResult<Option<usize>> {
        match self.number(key)? {
            None => Ok(None),
            Some(x) if x.fract() == 0.0 && x >= min as f64 && x <= max as f64 => Ok(Some(x as usize)),
            Some(x) => Err(WebError::input(key, format!("must be a whole number from {min} to {max}, got {x}"))),
        }
    }

    pub fn function(&self, key: &str) -> WebResult<Option<Function>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v.dyn_into::<Function>().map(Some).map_err(|_| WebError::input(key, "must be a function")),
        }
    }

    /// One of `choices` (a string).
    pub fn choice(&self, key: &str, choices: &[&str]) -> WebResult<Option<String>> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) if choices.contains(&s.as_str()) => Ok(Some(s)),
            Some(s) => Err(WebError::input(key, format!("{s:?} is not one of {}", choices.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", ")))),
        }
    }

    pub fn signal(&self) -> WebResult<Option<web_sys::AbortSignal>> {
        match self.raw("signal") {
            None => Ok(None),
            Some(v) => v.dyn_into::<web_sys::AbortSignal>().map(Some).map_err(|_| WebError::input("signal", "must be an AbortSignal")),
        }
    }
}

/// A short description of a JS value for error messages.
pub fn describe(v: &JsValue) -> String {
    if let Some(s) = v.as_string() {
        let s: String = s.chars().take(40).collect();
        return format!("the string {s:?}");
    }
    if let Some(x) = v.as_f64() {
        return x.to_string();
    }
    v.js_typeof().as_string().unwrap_or_else(|| "a value".into())
}

pub fn aborted(signal: Option<&web_sys::AbortSignal>) -> bool {
    signal.is_some_and(|s| s.aborted())
}

/// Call a progress callback; an exception inside it is logged, never fatal.
pub fn report(cb: Option<&Function>, value: &JsValue) {
    if let Some(f) = cb {
        if let Err(e) = f.call1(&JsValue::NULL, value) {
            web_sys::console::warn_2(&"animatediff: onProgress threw".into(), &e);
        }
    }
}

/// Let the event loop run (messages such as a cancel request, progress delivery): a
/// `setTimeout(0)` macrotask, not just a microtask.
pub async fn yield_to_event_loop() {
    let global = js_sys::global();
    let set_timeout = Reflect::get(&global, &"setTimeout".into()).ok().and_then(|f| f.dyn_into::<Function>().ok());
    let Some(set_timeout) = set_timeout else { return };
    let p = Promise::new(&mut |resolve, _reject| {
        let _ = set_timeout.call2(&global, &resolve, &JsValue::from(0));
    });
    let _ = JsFuture::from(p).await;
}

/// `performance.now()` in milliseconds (0 where there is none).
pub fn now_ms() -> f64 {
    let perf = Reflect::get(&js_sys::global(), &"performance".into()).unwrap_or(JsValue::UNDEFINED);
    let now = Reflect::get(&perf, &"now".into()).ok().and_then(|f| f.dyn_into::<Function>().ok());
    now.and_then(|f| f.call0(&perf).ok()).and_then(|v| v.as_f64()).unwrap_or(0.0)
}
