//! Video output: animated GIF (both targets) and PNG frames (native).
//!
//! Frames are RGB, `[F, H, W, 3]` row-major, either f32 in [0, 1] (the pipeline's decoded
//! output after `(x/2 + 0.5).clamp(0, 1)`) or u8. f32 → u8 is diffusers' `numpy_to_pil`:
//! `round(x·255)` with numpy's round-half-to-even.
//!
//! The GIF uses one **global** 256-colour palette: the exact colours if there are at most 256,
//! else learnt with NeuQuant (`color_quant`) on pixels sampled from every frame, so colours do not flicker between frames; no dithering (it shimmers
//! in animation). It loops forever, with a per-frame delay of `round(100 / fps)` centiseconds.

use std::borrow::Cow;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum GifError {
    #[error("no frames to encode")]
    Empty,
    #[error("frame buffer has {found} values, expected {frames}×{height}×{width}×3 = {expected}")]
    Length { frames: usize, height: usize, width: usize, expected: usize, found: usize },
    #[error("frame size {width}×{height} is not supported (1..=65535 per side)")]
    Size { width: usize, height: usize },
    #[error("fps must be a positive number, got {0}")]
    Fps(f32),
    #[error("GIF encoding failed: {0}")]
    Encode(String),
    #[cfg(not(target_arch = "wasm32"))]
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[cfg(not(target_arch = "wasm32"))]
    #[error("{path}: PNG encoding failed: {message}")]
    Png { path: String, message: String },
}

pub type GifResult<T> = Result<T, GifError>;

/// Largest number of pixels the palette is learnt from (sampled evenly over all frames).
const PALETTE_SAMPLE_PIXELS: usize = 1 << 19;
/// Smaller samples are repeated up to this many pixels before learning.
const PALETTE_MIN_SAMPLE: usize = 1 << 16;
/// NeuQuant sampling factor (1 = best, 30 = fastest) on that sample.
const NEUQUANT_SAMPLEFAC: i32 = 1;

/// f32 RGB in [0, 1] → u8, as diffusers' `numpy_to_pil` (`(x * 255).round()` in f32, half to
/// even); values outside [0, 1] (and NaN → 0) are clamped first.
pub fn frames_to_u8(frames: &[f32]) -> Vec<u8> {
    frames
        .iter()
        .map(|&x| {
            let x = if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) };
            (x * 255.0).round_ties_even() as u8
        })
        .collect()
}

fn check_layout(len: usize, frames: usize, height: usize, width: usize) -> GifResult<()> {
    if frames == 0 {
        return Err(GifError::Empty);
    }
    if width == 0 || height == 0 || width > u16::MAX as usize || height > u16::MAX as usize {
        return Err(GifError::Size { width, height });
    }
    let expected = frames
        .checked_mul(height)
        .and_then(|v| v.checked_mul(width))
        .and_then(|v| v.checked_mul(3))
        .ok_or(GifError::Size { width, height })?;
    if len != expected {
        return Err(GifError::Length { frames, height, width, expected, found: len });
    }
    Ok(())
}

/// GIF frame delay in centiseconds for `fps` (at least 2: browsers slow smaller delays down).
pub fn gif_delay_cs(fps: f32) -> GifResult<u16> {
    if !(fps.is_finite() && fps > 0.0) {
        return Err(GifError::Fps(fps));
    }
    Ok((100.0 / fps).round().clamp(2.0, u16::MAX as f32) as u16)
}

/// Encodes f32 RGB frames `[F, H, W, 3]` in [0, 1] as a looping animated GIF.
pub fn encode_gif_f32(frames: &[f32], num_frames: usize, height: usize, width: usize, fps: f32) -> GifResult<Vec<u8>> {
    check_layout(frames.len(), num_frames, height, width)?;
    encode_gif_u8(&frames_to_u8(frames), num_frames, height, width, fps)
}

/// Encodes u8 RGB frames `[F, H, W, 3]` as a looping animated GIF with a global palette.
pub fn encode_gif_u8(frames: &[u8], num_frames: usize, height: usize, width: usize, fps: f32) -> GifResult<Vec<u8>> {
    check_layout(frames.len(), num_frames, height, width)?;
    let delay = gif_delay_cs(fps)?;
    let enc_err = |e: ::gif::EncodingError| GifError::Encode(e.to_string());

    let palette = Palette::new(frames);
    // Colour → index cache (video frames repeat colours a lot; NeuQuant's search is not free).
    let mut cache: std::collections::HashMap<u32, u8> = std::collections::HashMap::new();
    let mut out = Vec::new();
    {
        let mut encoder = ::gif::Encoder::new(&mut out, width as u16, height as u16, &palette.rgb).map_err(enc_err)?;
        encoder.set_repeat(::gif::Repeat::Infinite).map_err(enc_err)?;
        let frame_len = height * width * 3;
        let mut indices = vec![0u8; height * width];
        for frame in frames.chunks_exact(frame_len) {
            for (idx, px) in indices.iter_mut().zip(frame.chunks_exact(3)) {
                let key = rgb_key(px);
                *idx = *cache.entry(key).or_insert_with(|| palette.index_of(key, px));
            }
            let f = ::gif::Frame {
                width: width as u16,
                height: height as u16,
                delay,
                buffer: Cow::Borrowed(&indices[..]),
                ..::gif::Frame::default()
            };
            encoder.write_frame(&f).map_err(enc_err)?;
        }
        encoder.into_inner().map_err(enc_err)?;
    }
    Ok(out)
}

fn rgb_key(px: &[u8]) -> u32 {
    (px[0] as u32) << 16 | (px[1] as u32) << 8 | px[2] as u32
}

/// The global palette: the exact colours when there are at most 256, else NeuQuant's.
struct Palette {
    rgb: Vec<u8>,
    exact: Option<std::collections::HashMap<u32, u8>>,
    quant: Option<color_quant::NeuQuant>,
}

impl Palette {
    fn new(frames: &[u8]) -> Self {
        let mut exact = std::collections::HashMap::new();
        for px in frames.chunks_exact(3) {
            let n = exact.len();
            exact.entry(rgb_key(px)).or_insert(n as u8);
            if exact.len() > 256 {
                break;
            }
        }
        if exact.len() <= 256 {
            let mut rgb = vec![0u8; 3 * exact.len().max(2)];
            for (&key, &i) in &exact {
                let i = i as usize * 3;
                rgb[i..i + 3].copy_from_slice(&[(key >> 16) as u8, (key >> 8) as u8, key as u8]);
            }
            return Self { rgb, exact: Some(exact), quant: None };
        }
        // Sample evenly over all frames; small inputs are repeated so NeuQuant gets enough
        // learning steps (it walks the sample with a prime stride).
        let total = frames.len() / 3;
        let stride = total.div_ceil(PALETTE_SAMPLE_PIXELS).max(1);
        let mut sample = Vec::with_capacity(4 * total.div_ceil(stride));
        for px in frames.chunks_exact(3).step_by(stride) {
            sample.extend_from_slice(&[px[0], px[1], px[2], 255]);
        }
        let base = sample.len();
        while sample.len() < 4 * PALETTE_MIN_SAMPLE {
            sample.extend_from_within(..base);
        }
        let quant = color_quant::NeuQuant::new(NEUQUANT_SAMPLEFAC, 256, &sample);
        Self { rgb: quant.color_map_rgb(), exact: None, quant: Some(quant) }
    }

    fn index_of(&self, key: u32, px: &[u8]) -> u8 {
        match (&self.exact, &self.quant) {
            (Some(exact), _) => exact.get(&key).copied().unwrap_or(0),
            (None, Some(q)) => q.index_of(&[px[0], px[1], px[2], 255]) as u8,
            (None, None) => 0,
        }
    }
}

/// Writes `bytes` to `path` (native).
#[cfg(not(target_arch = "wasm32"))]
pub fn write_file(path: &std::path::Path, bytes: &[u8]) -> GifResult<()> {
    std::fs::write(path, bytes).map_err(|source| GifError::Io { path: path.display().to_string(), source })
}

/// Writes each frame of u8 RGB `[F, H, W, 3]` as `dir/frame_0000.png`, … (creating `dir`);
/// returns the paths.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_png_frames(
    dir: &std::path::Path,
    frames: &[u8],
    num_frames: usize,
    height: usize,
    width: usize,
) -> GifResult<Vec<std::path::PathBuf>> {
    check_layout(frames.len(), num_frames, height, width)?;
    let io = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| GifError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let frame_len = height * width * 3;
    let mut paths = Vec::with_capacity(num_frames);
    for (i, frame) in frames.chunks_exact(frame_len).enumerate() {
        let path = dir.join(format!("frame_{i:04}.png"));
        let file = std::fs::File::create(&path).map_err(io(&path))?;
        let png_err =
            |e: png::EncodingError| GifError::Png { path: path.display().to_string(), message: e.to_string() };
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(png_err)?;
        writer.write_image_data(frame).map_err(png_err)?;
        writer.finish().map_err(png_err)?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(frames: usize, h: usize, w: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(frames * h * w * 3);
        for f in 0..frames {
            for y in 0..h {
                for x in 0..w {
                    v.push(x as f32 / (w - 1) as f32);
                    v.push(y as f32 / (h - 1) as f32);
                    v.push(f as f32 / frames as f32);
                }
            }
        }
        v
    }

    #[test]
    fn to_u8_matches_numpy_rounding() {
        assert_eq!(frames_to_u8(&[0.0, 1.0, 0.5, -3.0, 7.0, f32::NAN, 2.5 / 255.0]), vec![0, 255, 128, 0, 255, 0, 2]);
    }

    #[test]
    fn gif_round_trip() {
        let (f, h, w) = (3, 20, 24);
        let rgb = gradient(f, h, w);
        let bytes = encode_gif_f32(&rgb, f, h, w, 8.0).unwrap();
        assert_eq!(&bytes[..6], b"GIF89a");
        assert_eq!(*bytes.last().unwrap(), 0x3b);

        let mut opts = ::gif::DecodeOptions::new();
        opts.set_color_output(::gif::ColorOutput::RGBA);
        let mut dec = opts.read_info(&bytes[..]).unwrap();
        assert_eq!((dec.width(), dec.height()), (w as u16, h as u16));
        assert_eq!(dec.repeat(), ::gif::Repeat::Infinite);
        assert!(dec.global_palette().is_some());
        let expected = frames_to_u8(&rgb);
        let mut n = 0;
        let mut max_err = 0i32;
        let mut sum_err = 0i64;
        while let Some(frame) = dec.read_next_frame().unwrap() {
            assert_eq!(frame.delay, 13); // 100/8 = 12.5 → 13
            assert_eq!((frame.width, frame.height), (w as u16, h as u16));
            let src = &expected[n * h * w * 3..(n + 1) * h * w * 3];
            for (rgba, rgb) in frame.buffer.chunks_exact(4).zip(src.chunks_exact(3)) {
                for c in 0..3 {
                    let e = (rgba[c] as i32 - rgb[c] as i32).abs();
                    max_err = max_err.max(e);
                    sum_err += e as i64;
                }
            }
            n += 1;
        }
        assert_eq!(n, f);
        let mean = sum_err as f64 / (f * h * w * 3) as f64;
        eprintln!("palette error: max {max_err}, mean {mean:.2}");
        assert!(max_err <= 40 && mean < 6.0, "palette error: max {max_err}, mean {mean}");
    }

    #[test]
    fn few_colours_are_exact() {
        let colours = [[255u8, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]];
        let (f, h, w) = (2, 8, 8);
        let mut rgb = Vec::new();
        for i in 0..f * h * w {
            rgb.extend_from_slice(&colours[(i / 7) % 4]);
        }
        let bytes = encode_gif_u8(&rgb, f, h, w, 25.0).unwrap();
        let mut opts = ::gif::DecodeOptions::new();
        opts.set_color_output(::gif::ColorOutput::RGBA);
        let mut dec = opts.read_info(&bytes[..]).unwrap();
        let mut decoded = Vec::new();
        while let Some(frame) = dec.read_next_frame().unwrap() {
            assert_eq!(frame.delay, 4);
            decoded.extend(frame.buffer.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]));
        }
        let close = decoded.iter().zip(&rgb).all(|(a, b)| (*a as i32 - *b as i32).abs() <= 4);
        assert!(close);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(encode_gif_u8(&[], 0, 1, 1, 8.0), Err(GifError::Empty)));
        assert!(matches!(encode_gif_u8(&[0; 5], 1, 1, 2, 8.0), Err(GifError::Length { .. })));
        assert!(matches!(encode_gif_u8(&[0; 6], 1, 1, 2, 0.0), Err(GifError::Fps(_))));
        assert!(matches!(encode_gif_u8(&[0; 6], 1, 1, 2, f32::NAN), Err(GifError::Fps(_))));
        assert!(matches!(encode_gif_u8(&[], 1, 0, 2, 8.0), Err(GifError::Size { .. })));
        assert!(matches!(encode_gif_u8(&[], 1, 70000, 1, 8.0), Err(GifError::Size { .. })));
        assert!(matches!(encode_gif_u8(&[], usize::MAX, 65535, 65535, 8.0), Err(GifError::Size { .. })));
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn png_frames_written() {
        let dir = std::env::temp_dir().join(format!("animatediff-png-test-{}", std::process::id()));
        let rgb = frames_to_u8(&gradient(2, 4, 5));
        let paths = write_png_frames(&dir, &rgb, 2, 4, 5).unwrap();
        assert_eq!(paths.len(), 2);
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&paths[1]).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (5, 4));
        assert_eq!(&buf[..info.buffer_size()], &rgb[60..]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
