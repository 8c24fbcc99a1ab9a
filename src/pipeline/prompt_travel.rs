//! Prompt travel: prompts keyed by frame index, one text embedding per frame interpolated
//! between keyframes (diffusers `AnimateDiffFreeNoiseMixin._encode_prompt_free_noise`).
//!
//! Semantics (diffusers, for keys sorted by frame): the last key's prompt is also keyed at
//! frame F − 1; every pair of consecutive keys `(s, e)` fills frames `s..=e` with
//! `interp(emb_s, emb_e, (f − s)/(e − s))`. Lerp is diffusers' default callback; slerp is
//! A1111's (`sd-webui-animatediff` `scripts/animatediff_prompt.py`): the whole `[77, D]`
//! embedding is one vector, lerp when `|cos| > 0.9995`. Frames before the first key hold the
//! first prompt (diffusers requires a key at 0).
//!
//! Written as CLI values: `N:text` keys frame N (`--prompt "0:a cat" --prompt "8:a dog"`); a
//! value without a `digits:` prefix is frame 0.

use crate::{Error, Result};

/// How embeddings between two keyframes are blended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interpolation {
    #[default]
    Lerp,
    Slerp,
}

impl Interpolation {
    pub fn parse(s: &str) -> Result<Interpolation> {
        match s {
            "lerp" | "linear" => Ok(Interpolation::Lerp),
            "slerp" => Ok(Interpolation::Slerp),
            _ => Err(Error::input("prompt interpolation", format!("`{s}`: expected lerp or slerp"))),
        }
    }
}

/// A prompt starting at `frame`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyframe {
    pub frame: usize,
    pub text: String,
}

/// `"N:text"` → frame N; anything else → frame 0 (so `"style: anime"` stays one prompt).
pub fn parse_keyframe(value: &str) -> Keyframe {
    if let Some((head, rest)) = value.split_once(':') {
        let head = head.trim();
        if !head.is_empty() && head.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(frame) = head.parse() {
                return Keyframe { frame, text: rest.trim_start().to_string() };
            }
        }
    }
    Keyframe { frame: 0, text: value.to_string() }
}

/// Parse several values (`parameter` names them in errors); duplicate frames are an error.
pub fn parse_keyframes(parameter: &str, values: &[String]) -> Result<Vec<Keyframe>> {
    let mut keys: Vec<Keyframe> = values.iter().map(|v| parse_keyframe(v)).collect();
    keys.sort_by_key(|k| k.frame);
    if let Some(w) = keys.windows(2).find(|w| w[0].frame == w[1].frame) {
        return Err(Error::input(parameter, format!("frame {} has two prompts", w[0].frame)));
    }
    Ok(keys)
}

/// Sorted, de-duplicated keys, each < `frames`.
pub fn check_keyframes(parameter: &str, keys: &[Keyframe], frames: usize) -> Result<()> {
    if keys.is_empty() {
        return Err(Error::input(parameter, "no prompt"));
    }
    for w in keys.windows(2) {
        if w[0].frame >= w[1].frame {
            return Err(Error::input(parameter, format!("keyframes must be distinct and sorted (frame {} then {})", w[0].frame, w[1].frame)));
        }
    }
    if let Some(k) = keys.iter().find(|k| k.frame >= frames) {
        return Err(Error::input(parameter, format!("keyframe {} is not below the {frames} frames", k.frame)));
    }
    Ok(())
}

/// For each frame: `(key a, key b, t)` = `interp(emb[a], emb[b], t)`, indices into `keys`.
pub fn frame_plan(keys: &[usize], frames: usize) -> Vec<(usize, usize, f64)> {
    let mut plan = vec![(0, 0, 0.0); frames];
    if keys.is_empty() || frames == 0 {
        return plan;
    }
    let last = keys.len() - 1;
    // diffusers: prompt[F − 1] = prompt[last key]
    let mut pts: Vec<(usize, usize)> = keys.iter().copied().enumerate().map(|(i, f)| (f, i)).collect();
    if keys[last] != frames - 1 {
        pts.push((frames - 1, last));
    }
    let first = pts[0].0.min(frames);
    plan[..first].fill((pts[0].1, pts[0].1, 0.0));
    if pts.len() == 1 {
        plan[frames - 1] = (pts[0].1, pts[0].1, 0.0);
    }
    for w in pts.windows(2) {
        let ((s, a), (e, b)) = (w[0], w[1]);
        let n = e - s;
        for (i, slot) in plan[s..=e].iter_mut().enumerate() {
            *slot = (a, b, i as f64 / n as f64);
        }
    }
    plan
}

/// Interpolate `emb [K, len]` (one row per key) to `[F, len]` along `plan`.
pub fn interpolate(emb: &[f32], len: usize, plan: &[(usize, usize, f64)], mode: Interpolation) -> Vec<f32> {
    let mut out = Vec::with_capacity(plan.len() * len);
    for &(a, b, t) in plan {
        let (x, y) = (&emb[a * len..(a + 1) * len], &emb[b * len..(b + 1) * len]);
        if a == b || t == 0.0 {
            out.extend_from_slice(x);
            continue;
        }
        match mode {
            Interpolation::Lerp => lerp_into(&mut out, x, y, t),
            Interpolation::Slerp => {
                let norm = |v: &[f32]| v.iter().map(|&e| f64::from(e) * f64::from(e)).sum::<f64>().sqrt();
                let (nx, ny) = (norm(x), norm(y));
                let dot = x.iter().zip(y).map(|(&p, &q)| f64::from(p) * f64::from(q)).sum::<f64>() / (nx * ny).max(f64::MIN_POSITIVE);
                if dot.abs() > 0.9995 {
                    lerp_into(&mut out, x, y, t);
                } else {
                    let omega = dot.acos();
                    let (s0, s1) = (((1.0 - t) * omega).sin() / omega.sin(), (t * omega).sin() / omega.sin());
                    out.extend(x.iter().zip(y).map(|(&p, &q)| (s0 * f64::from(p) + s1 * f64::from(q)) as f32));
                }
            }
        }
    }
    out
}

/// diffusers `_lerp`: `(1 − α)·start + α·end` in f32 with α rounded to f32 as torch does.
fn lerp_into(out: &mut Vec<f32>, x: &[f32], y: &[f32], t: f64) {
    let (ca, cb) = ((1.0 - t) as f32, t as f32);
    out.extend(x.iter().zip(y).map(|(&p, &q)| ca * p + cb * q));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_syntax() {
        assert_eq!(parse_keyframe("8: a dog"), Keyframe { frame: 8, text: "a dog".into() });
        assert_eq!(parse_keyframe("style: anime"), Keyframe { frame: 0, text: "style: anime".into() });
        assert_eq!(parse_keyframe("a cat"), Keyframe { frame: 0, text: "a cat".into() });
        assert!(parse_keyframes("prompt", &["0:a".into(), "0:b".into()]).is_err());
    }

    #[test]
    fn plan_matches_diffusers_segments() {
        // keys {0, 5}, 8 frames: 0..=5 from a to b, 5..=7 from b to b (the added key at 7).
        let p = frame_plan(&[0, 5], 8);
        assert_eq!(p[0], (0, 1, 0.0));
        assert_eq!(p[3], (0, 1, 0.6));
        assert_eq!(p[5], (1, 1, 0.0));
        assert_eq!(p[7], (1, 1, 1.0));
        // a first key after 0 holds its prompt before it
        assert_eq!(frame_plan(&[2], 4)[0], (0, 0, 0.0));
    }
}
