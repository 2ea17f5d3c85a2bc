//! The loop shared by the kernels of weights repacked in panels of 16 rows ([`super::packed_q4k`],
//! [`super::packed_q5_0`], [`super::packed_q6k`], [`super::packed_float`], [`super::packed_32`],
//! [`super::packed_iq4xs`]): activation rows in tiles (kept in L2), per tile each row's
//! per-block side data computed once, panels in blocks of four (kept in L2 while the tile's rows visit them in groups
//! of 8, then 4, 2, 1, whose quants stay in L1). A kernel gives each (row, activation) the same operations whatever
//! group it is in, so results do not depend on batching.

/// Rows per panel.
pub const NR: usize = 16;
/// Panels per block.
const PANEL_BLOCK: usize = 4;
/// Activation rows per tile.
const TOKEN_TILE: usize = 64;

/// One 64-byte line of a packed weight (aligned, so no load splits a cache line).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line(pub [u8; 64]);

/// A packed weight's lines, zeroed, in their own anonymous mapping advised for transparent huge pages: decode
/// streams every weight once per token, and with 4 KB pages each 4 KB of it costs a TLB miss (the page walk sits
/// on the load's critical path).
pub(crate) struct Lines {
    map: memmap2::MmapMut,
    len: usize,
}

impl Lines {
    /// `len` zeroed lines.
    pub(crate) fn zeroed(len: usize) -> Self {
        let bytes = (len * 64).max(64);
        let map = match memmap2::MmapMut::map_anon(bytes) {
            Ok(m) => m,
            Err(e) => panic!("cannot map {bytes} bytes for a packed weight: {e}"),
        };
        #[cfg(target_os = "linux")]
        {
            // A hint: without it (THP off) the pages are 4 KB, as before.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        Self { map, len }
    }

    /// The lines as bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.map[..self.len * 64]
    }

    /// The lines as bytes, to fill.
    pub(crate) fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map[..self.len * 64]
    }
}

impl std::ops::Deref for Lines {
    type Target = [Line];
    fn deref(&self) -> &[Line] {
        // SAFETY: the mapping is page aligned (so 64-byte aligned), holds at least `len` lines, and any bytes are a
        // valid `Line`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr() as *const Line, self.len) }
    }
}

impl std::ops::DerefMut for Lines {
    fn deref_mut(&mut self) -> &mut [Line] {
        // SAFETY: as `deref`, and the mapping is ours alone.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr() as *mut Line, self.len) }
    }
}

/// Whether a `rows × cols` weight fits panels of [`NR`] rows and whole blocks of `block` elements.
pub fn fits(rows: usize, cols: usize, block: usize) -> bool {
    rows.is_multiple_of(NR) && cols.is_multiple_of(block) && rows > 0 && cols > 0
}

/// A packed weight's kernel.
pub(crate) trait PanelKernel {
    /// What a tile reads per activation row and block besides the row itself (e.g. the block's scale as f32).
    type Side: Copy + Default;
    /// Rows of the weight.
    fn rows(&self) -> usize;
    /// Side entries per activation row.
    fn side_len(&self) -> usize;
    /// Bytes of an activation row.
    fn act_bytes(&self) -> usize;
    /// Fills `out` (`side_len` entries) for activation row `y`.
    fn side(&self, y: &[u8], out: &mut [Self::Side]);
    /// Panel `p` against `T` activation rows `ys` (their side data from `side`, `side_len` per row): results to
    /// `out[t·ldo + 0..16]`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI; `p` is a panel of the weight, each `ys[t]` has `act_bytes`, `side` has `T·side_len`
    /// entries, `out` is writable at the 16 places of each of the `T` rows.
    #[cfg(target_arch = "x86_64")]
    unsafe fn tile<const T: usize>(
        &self,
        p: usize,
        ys: [*const u8; T],
        side: *const Self::Side,
        out: *mut f32,
        ldo: usize,
    );
}

/// A packed weight's kernel on AVX2 + FMA + F16C, for the kernels that have one: the same operations per
/// (row, activation) as [`PanelKernel::tile`], so the same bits, in groups of at most six activation rows (sixteen
/// ymm registers hold fewer accumulators than 32 zmm).
pub(crate) trait PanelKernelAvx2: PanelKernel {
    /// As [`PanelKernel::tile`], with `T` at most 6.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; otherwise as [`PanelKernel::tile`].
    #[cfg(target_arch = "x86_64")]
    unsafe fn tile_avx2<const T: usize>(
        &self,
        p: usize,
        ys: [*const u8; T],
        side: *const Self::Side,
        out: *mut f32,
        ldo: usize,
    );
}

/// The loop both tiers share: activation rows in tiles with their side data, panels in blocks, rows in groups of
/// the sizes given (largest first), each (panel, group) handed to `$tile`.
#[cfg(target_arch = "x86_64")]
macro_rules! drive {
    ($k:expr, $panels:expr, $n_acts:expr, $act:expr, $out:expr, $ldo:expr, $tile:ident, [$($n:literal),+]) => {{
        let (k, panels, n_acts, act, out, ldo) = ($k, $panels, $n_acts, $act, $out, $ldo);
        assert!(panels.end * NR <= k.rows(), "panels out of range");
        let sl = k.side_len();
        // Sized for the rows there are: decode multiplies one row, many times per token.
        let mut side = vec![Default::default(); n_acts.min(TOKEN_TILE) * sl];
        for t0 in (0..n_acts).step_by(TOKEN_TILE) {
            let rows: Vec<&[u8]> = (t0..(t0 + TOKEN_TILE).min(n_acts)).map(act).collect();
            for (t, y) in rows.iter().enumerate() {
                assert!(y.len() >= k.act_bytes(), "activation row too short");
                k.side(y, &mut side[t * sl..(t + 1) * sl]);
            }
            let mut pb = panels.start;
            while pb < panels.end {
                let pb_end = (pb + PANEL_BLOCK).min(panels.end);
                let mut t = 0;
                $(
                    while rows.len() - t >= $n {
                        for p in pb..pb_end {
                            // SAFETY: panel p is the weight's (asserted), rows t..t+n were checked above, the side
                            // data is theirs; the outputs are the caller's; the CPU is the caller's.
                            unsafe {
                                k.$tile::<$n>(
                                    p,
                                    std::array::from_fn(|i| rows[t + i].as_ptr()),
                                    side.as_ptr().add(t * sl),
                                    out.add((t0 + t) * ldo + p * NR),
                                    ldo,
                                )
                            };
                        }
                        t += $n;
                    }
                )+
                pb = pb_end;
            }
        }
    }};
}

/// `out[t·ldo + r] = dot(row r, activation t)` for the rows of `panels` and `n_acts` activation rows `act(t)`.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL/VNNI; `out` is valid for writes at `t·ldo + r` for every `t < n_acts` and row `r`
/// of `panels`, and no one else writes those places meanwhile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn matmul<'a, K: PanelKernel>(
    k: &K,
    panels: std::ops::Range<usize>,
    n_acts: usize,
    act: &dyn Fn(usize) -> &'a [u8],
    out: *mut f32,
    ldo: usize,
) {
    drive!(k, panels, n_acts, act, out, ldo, tile, [8, 4, 2, 1]);
}

/// As [`matmul`], on AVX2 + FMA + F16C with the kernel's [`PanelKernelAvx2::tile_avx2`], in groups of up to six
/// activation rows (the float panels hold two accumulators per row: twelve of the sixteen ymm registers).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; otherwise as [`matmul`].
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn matmul_avx2<'a, K: PanelKernelAvx2>(
    k: &K,
    panels: std::ops::Range<usize>,
    n_acts: usize,
    act: &dyn Fn(usize) -> &'a [u8],
    out: *mut f32,
    ldo: usize,
) {
    drive!(k, panels, n_acts, act, out, ldo, tile_avx2, [6, 4, 2, 1]);
}

/// What the three packed kernels' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::quant::tests::Rng;
    use crate::quant::{GgmlType, SimdLevel, quantize_act, simd_level};

    /// `n` random activation rows of `cols`, quantized to `ty`.
    pub(crate) fn acts(ty: GgmlType, n: usize, cols: usize, rng: &mut Rng) -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                let x: Vec<f32> = (0..cols).map(|_| rng.f32() * 3.0).collect();
                let mut a = Vec::new();
                quantize_act(ty, &x, &mut a);
                a
            })
            .collect()
    }

    /// `k` (packed from `data`, rows of `rb` bytes, `cols` wide) gives `twin`'s bits for every row and activation
    /// row of `act_ty`, whatever the grouping (1 to 70 activation rows: groups of 8, 4, 2, 1 and two tiles), with the
    /// panels split at `split` as two tasks would. Skipped without AVX-512 VNNI.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn kernel_gives_twin_bits<K: PanelKernel>(
        k: &K,
        data: &[u8],
        shape: (usize, usize, usize),
        act_ty: GgmlType,
        twin: fn(usize, &[u8], &[u8]) -> f32,
        rng: &mut Rng,
    ) {
        if simd_level() != SimdLevel::Avx512Vnni {
            eprintln!("skipped: no AVX-512 VNNI here");
            return;
        }
        // SAFETY: the CPU has VNNI (checked); the rest is `gives_twin_bits`'s.
        let run: Run = &|panels, n, act, out, ldo| unsafe { matmul(k, panels, n, act, out, ldo) };
        gives_twin_bits(k.rows(), run, data, shape, act_ty, twin, rng);
    }

    /// One tier's product: panels, activation rows, their reader, the output and its stride.
    pub(crate) type Run<'r> = &'r dyn for<'a> Fn(
        std::ops::Range<usize>,
        usize,
        &dyn Fn(usize) -> &'a [u8],
        *mut f32,
        usize,
    );

    /// `run` (one tier's product over `rows` rows packed from `data`) gives `twin`'s bits for 1 to 70 activation
    /// rows, the panels split at `split` as two tasks would.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn gives_twin_bits(
        rows: usize,
        run: Run,
        data: &[u8],
        (rb, cols, split): (usize, usize, usize),
        act_ty: GgmlType,
        twin: fn(usize, &[u8], &[u8]) -> f32,
        rng: &mut Rng,
    ) {
        for n in [1, 3, 7, 19, 70] {
            let ys = acts(act_ty, n, cols, rng);
            let ldo = rows + 5;
            let mut out = vec![f32::NAN; n * ldo];
            for panels in [0..split, split..rows / NR] {
                run(panels, n, &|t| &ys[t][..], out.as_mut_ptr(), ldo);
            }
            for (t, y) in ys.iter().enumerate() {
                for r in 0..rows {
                    let want = twin(cols, &data[r * rb..(r + 1) * rb], y);
                    assert_eq!(
                        out[t * ldo + r].to_bits(),
                        want.to_bits(),
                        "n {n} t {t} r {r}"
                    );
                }
            }
        }
    }
}
