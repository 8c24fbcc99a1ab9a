//! Dispatch grids that respect `max_compute_workgroups_per_dimension` (65 535 on every
//! WebGPU device).
//!
//! Kernels are written against a *linear* workgroup index (see `shaders/common/grid.wgsl`):
//! `wg = wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y`, returning early when
//! `wg >= total`. The host folds any 1-D count into up to three dimensions, so a tensor with
//! millions of tiles never needs a multi-submit special case.

use super::error::{GpuError, GpuResult};

/// A workgroup grid `(x, y, z)` and the number of linear workgroups it must cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub x: u32,
    pub y: u32,
    pub z: u32,
    /// Linear workgroups actually needed (`x*y*z >= total`; the excess returns early).
    pub total: u64,
}

impl Grid {
    /// Fold `total` linear workgroups into a grid with every dimension ≤ `max_per_dim`.
    ///
    /// The excess (`x*y*z - total`) is kept below one row/plane so that idle workgroups stay
    /// a negligible fraction of the dispatch.
    pub fn linear(total: u64, max_per_dim: u32) -> GpuResult<Grid> {
        let max = u64::from(max_per_dim.max(1));
        if total == 0 {
            return Ok(Grid { x: 0, y: 1, z: 1, total });
        }
        let too_large = || GpuError::GridTooLarge { workgroups: total, max_per_dim };
        if total > max * max * max {
            return Err(too_large());
        }
        let x = total.min(max);
        let rows = total.div_ceil(x);
        let y = rows.min(max);
        let z = rows.div_ceil(y);
        if z > max {
            return Err(too_large());
        }
        // The casts are lossless: each value is ≤ max_per_dim (a u32).
        Ok(Grid { x: x as u32, y: y as u32, z: z as u32, total })
    }

    /// Grid for `elements` items processed `per_workgroup` at a time.
    pub fn for_elements(elements: u64, per_workgroup: u32, max_per_dim: u32) -> GpuResult<Grid> {
        Grid::linear(elements.div_ceil(u64::from(per_workgroup.max(1))), max_per_dim)
    }

    /// Number of workgroups launched (≥ `total`).
    pub fn launched(&self) -> u64 {
        u64::from(self.x) * u64::from(self.y) * u64::from(self.z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_grids_are_one_dimensional() {
        let g = Grid::linear(100, 65535).unwrap();
        assert_eq!((g.x, g.y, g.z), (100, 1, 1));
    }

    #[test]
    fn large_grids_fold_and_cover() {
        for &total in &[65_535u64, 65_536, 70_000, 65_535 * 65_535 + 1, 5_000_000_000] {
            let g = Grid::linear(total, 65_535).unwrap();
            assert!(g.x <= 65_535 && g.y <= 65_535 && g.z <= 65_535);
            assert!(g.launched() >= total, "{g:?} does not cover {total}");
            // Idle workgroups are less than one plane.
            assert!(g.launched() - total < u64::from(g.x) * u64::from(g.y), "{g:?}");
        }
    }

    #[test]
    fn impossible_grid_is_an_error() {
        let err = Grid::linear(10 * 10 * 10 + 1, 10).unwrap_err();
        assert!(matches!(err, GpuError::GridTooLarge { .. }));
    }

    #[test]
    fn empty_grid_launches_nothing() {
        assert_eq!(Grid::linear(0, 65535).unwrap().launched(), 0);
    }
}
