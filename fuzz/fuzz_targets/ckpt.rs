#![no_main]
//! See `animatediff_wgpu::load::fuzz_entry::ckpt`: Ok or a typed error, never a panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = animatediff_wgpu::load::fuzz_entry::ckpt(data);
});
