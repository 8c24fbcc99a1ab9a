//! burn-wgpu as the performance peer for `animatediff bench kernels --peer`
//! (feature `burn-peer`). To be implemented.
