//! Weight matrices as views into the model file, and the (quantized) matrix multiplications over them.
//!
//! A [`Weight`] is `rows × cols` in GGUF order (each row contiguous, `cols` elements). [`Acts`] holds a batch of
//! activation rows quantized to the weight type's `vec_dot_type`, so all rows of a batch are quantized once and reused
//! by every weight that reads them. [`matmul`] splits the weight's rows over the thread pool; each task reads its
//! rows once and multiplies them with every activation row (weight row in L1, activations in L2).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::pool::{ThreadPool, split};
use crate::quant::packed_32::{self, Packed32};
use crate::quant::packed_float::{self, PackedFloat};
use crate::quant::packed_iq4xs::{self, PackedIq4Xs};
use crate::quant::packed_q4k::{self, PackedQ4K};
use crate::quant::packed_q5_0::{self, PackedQ5_0};
use crate::quant::packed_q6k::{self, PackedQ6K};
use crate::quant::{self, GgmlType};
use lar_formats::gguf::{Gguf, TensorInfo};

/// A 2-D weight inside the memory-mapped file.
#[derive(Clone)]
pub struct Weight {
    pub name: String,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    file: Arc<Gguf>,
    offset: usize,
    size: usize,
    /// The rows repacked for this CPU's kernels ([`Weight::pack`]); the file's bytes stay the embedding source.
    packed: Option<Arc<Packed>>,
}

/// A weight repacked for a kernel of this CPU.
pub enum Packed {
    Float(PackedFloat),
    /// Q4_0, IQ4_NL, MXFP4, Q8_0.
    B32(Packed32),
    Iq4Xs(PackedIq4Xs),
    Q4K(PackedQ4K),
    Q5_0(PackedQ5_0),
    Q6K(PackedQ6K),
}

impl Packed {
    /// Packs `w` where this CPU has a kernel for its type and shape, in panels of 16 rows: F16, BF16 and F32 on
    /// AVX2 and above; IQ4_NL, IQ4_XS, Q4_0, Q4_K, Q5_0, Q6_K and Q8_0 with AVX-512 VNNI.
    fn new(w: &Weight) -> Option<Self> {
        let level = quant::simd_level();
        if !level.avx2() || std::env::var("LAR_PACK").as_deref() == Ok("0") {
            return None;
        }
        let float = matches!(w.ty, GgmlType::F16 | GgmlType::BF16 | GgmlType::F32);
        if !float && level != quant::SimdLevel::Avx512Vnni {
            return None;
        }
        match w.ty {
            GgmlType::F16 | GgmlType::BF16 | GgmlType::F32
                if PackedFloat::fits(w.ty, w.rows, w.cols) =>
            {
                Some(Self::Float(PackedFloat::pack(
                    w.ty,
                    w.data(),
                    w.rows,
                    w.cols,
                )))
            }
            GgmlType::IQ4_NL | GgmlType::Q4_0 | GgmlType::Q8_0
                if Packed32::fits(w.ty, w.rows, w.cols) =>
            {
                Some(Self::B32(Packed32::pack(w.ty, w.data(), w.rows, w.cols)))
            }
            GgmlType::MXFP4
                if Packed32::fits(w.ty, w.rows, w.cols)
                    && packed_32::mxfp4_scales_fit(w.data()) =>
            {
                Some(Self::B32(Packed32::pack(w.ty, w.data(), w.rows, w.cols)))
            }
            GgmlType::IQ4_XS if PackedIq4Xs::fits(w.rows, w.cols) => {
                Some(Self::Iq4Xs(PackedIq4Xs::pack(w.data(), w.rows, w.cols)))
            }
            GgmlType::Q4_K if PackedQ4K::fits(w.rows, w.cols) => {
                Some(Self::Q4K(PackedQ4K::pack(w.data(), w.rows, w.cols)))
            }
            GgmlType::Q5_0 if PackedQ5_0::fits(w.rows, w.cols) => {
                Some(Self::Q5_0(PackedQ5_0::pack(w.data(), w.rows, w.cols)))
            }
            GgmlType::Q6_K if PackedQ6K::fits(w.rows, w.cols) => {
                Some(Self::Q6K(PackedQ6K::pack(w.data(), w.rows, w.cols)))
            }
            _ => None,
        }
    }

    /// Whether the product with `x` goes to the AMX Q4_K kernel, which copies the activation rows into tiles
    /// first.
    fn tiles_acts(&self, x: &Acts) -> bool {
        matches!(self, Self::Q4K(_))
            && x.n_rows >= quant::amx_q4k::MIN_ROWS
            && quant::amx::int8_available()
    }

    /// `out[t·ldo + r]` for the rows of `panels` (of 16 rows) and every activation row of `x`.
    ///
    /// # Safety
    /// As [`packed_q4k::matmul`]: the outputs are valid and written by no one else meanwhile.
    unsafe fn matmul(&self, panels: std::ops::Range<usize>, x: &Acts, out: *mut f32, ldo: usize) {
        // SAFETY: packed weights exist only where the CPU has their tier's instructions (Packed::new: AVX2 for the
        // floats, AVX-512 VNNI for the others), split activations only where it has AMX; the caller's.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            match self {
                Self::Float(w)
                    if matches!(w.ty, GgmlType::F16 | GgmlType::BF16) && x.split.is_some() =>
                {
                    let s = x.split.as_ref().expect("matched");
                    quant::amx::matmul(w, panels, s, out, ldo)
                }
                Self::Float(w) if quant::simd_level() != quant::SimdLevel::Avx512Vnni => {
                    packed_float::matmul_avx2(w, panels, x.n_rows, |t| x.row(t), out, ldo)
                }
                Self::Float(w) => packed_float::matmul(w, panels, x.n_rows, |t| x.row(t), out, ldo),
                Self::B32(w) => packed_32::matmul(w, panels, x.n_rows, |t| x.row(t), out, ldo),
                Self::Iq4Xs(w) => packed_iq4xs::matmul(w, panels, x.n_rows, |t| x.row(t), out, ldo),
                Self::Q4K(w) if self.tiles_acts(x) => {
                    quant::amx_q4k::matmul(w, panels, &x.data, x.n_rows, out, ldo)
                }
                Self::Q4K(w) => packed_q4k::matmul(w, panels, x.n_rows, |t| x.row(t), out, ldo),
                Self::Q5_0(w) => packed_q5_0::matmul(w, panels, x.n_rows, |t| x.row(t), out, ldo),
                Self::Q6K(w) => packed_q6k::matmul(w, panels, x.n_rows, |t| x.row(t), out, ldo),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (panels, x, out, ldo);
    }
}

impl std::fmt::Debug for Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Weight({} {} {}x{})",
            self.name,
            self.ty.name(),
            self.rows,
            self.cols
        )
    }
}

impl Weight {
    /// The tensor `name`, which must be `[cols, rows]` in GGUF order.
    pub fn load(file: &Arc<Gguf>, name: &str, rows: usize, cols: usize) -> Result<Self> {
        let info = file
            .tensor(name)
            .ok_or_else(|| Error::MissingTensor(name.into()))?;
        Self::from_info(file, info, rows, cols)
    }

    fn from_info(file: &Arc<Gguf>, info: &TensorInfo, rows: usize, cols: usize) -> Result<Self> {
        let ok = match info.dims.as_slice() {
            [c, r] => *c == cols && *r == rows,
            [c] => *c == cols && rows == 1,
            _ => false,
        };
        if !ok {
            return Err(Error::BadShape {
                name: info.name.clone(),
                got: info.dims.clone(),
                want: vec![cols, rows],
            });
        }
        if info.ty == GgmlType::Q8_1 || info.ty == GgmlType::Q8_K {
            return Err(Error::Unsupported(format!(
                "tensor '{}' has type {}, which is for activations",
                info.name,
                info.ty.name()
            )));
        }
        Ok(Self {
            name: info.name.clone(),
            ty: info.ty,
            rows,
            cols,
            file: file.clone(),
            offset: info.offset,
            size: info.size,
            packed: None,
        })
    }

    /// Repacks the weight for the fastest kernels this CPU has, where there are any ([`Packed`]), and gives the
    /// file's pages of it back to the OS: the packed copy replaces them in memory. `LAR_PACK=0` keeps the file's
    /// layout.
    pub fn pack(&mut self) {
        if self.packed.is_none()
            && let Some(p) = Packed::new(self)
        {
            self.packed = Some(Arc::new(p));
            self.file.release(self.offset, self.size);
        }
    }

    /// Gives the file's pages of a packed weight back to the OS again, after something read its rows from the file
    /// ([`Weight::dequantize_row`]: training's transposed product), so the packed copy stays its only resident
    /// form; a later read faults them in from the page cache. Nothing for a weight that is not packed.
    pub fn release_file_pages(&self) {
        if self.packed.is_some() {
            self.file.release(self.offset, self.size);
        }
    }

    /// Whether [`Weight::pack`] repacked it.
    pub fn is_packed(&self) -> bool {
        self.packed.is_some()
    }

    pub fn data(&self) -> &[u8] {
        self.file.raw(self.offset, self.size)
    }

    /// Rows `start..start + count` as a weight of their own (a view: fused matrices are split this way).
    pub fn rows_view(&self, start: usize, count: usize) -> Weight {
        assert!(start + count <= self.rows, "row view out of range");
        assert!(self.packed.is_none(), "views are taken before packing");
        let rb = self.row_bytes();
        Weight {
            name: format!("{}[{start}..{}]", self.name, start + count),
            rows: count,
            offset: self.offset + start * rb,
            size: count * rb,
            ..self.clone()
        }
    }

    pub fn row_bytes(&self) -> usize {
        self.ty.row_bytes(self.cols)
    }

    /// Row `r`, dequantized into `out` (`cols` elements). Used for embedding lookups.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let rb = self.row_bytes();
        quant::dequantize(self.ty, &self.data()[r * rb..(r + 1) * rb], out);
    }
}

/// Reads a 1-D f32 (or f16/bf16) tensor of `n` elements, e.g. a norm weight.
pub fn load_vector(file: &Gguf, name: &str, n: usize) -> Result<Vec<f32>> {
    let info = file
        .tensor(name)
        .ok_or_else(|| Error::MissingTensor(name.into()))?;
    if info.dims != [n] {
        return Err(Error::BadShape {
            name: name.into(),
            got: info.dims.clone(),
            want: vec![n],
        });
    }
    let mut out = vec![0f32; n];
    quant::dequantize(info.ty, file.tensor_data(info), &mut out);
    Ok(out)
}

/// A batch of activation rows quantized for one `vec_dot_type`.
#[derive(Default)]
pub struct Acts {
    pub row_bytes: usize,
    pub n_rows: usize,
    pub data: Vec<u8>,
    /// F32 rows split into BF16 `hi + lo` for the AMX product of F16/BF16 weights: where the CPU has AMX, the
    /// batch has at least [`quant::amx::MIN_ROWS`] rows, and an F16/BF16 weight asked for these rows.
    pub split: Option<quant::amx::SplitActs>,
}

impl Acts {
    /// Quantizes `n_rows` rows of `cols` from `x` to `ty`, rows shared out over `pool` when there are many.
    pub fn quantize(
        &mut self,
        ty: GgmlType,
        x: &[f32],
        n_rows: usize,
        cols: usize,
        pool: &ThreadPool,
    ) {
        let rb = ty.row_bytes(cols);
        self.n_rows = n_rows;
        self.row_bytes = rb;
        self.data.clear();
        self.data.resize(n_rows * rb, 0);
        let out = SyncPtr(self.data.as_mut_ptr());
        let tasks = if n_rows < 8 { 1 } else { pool.n_threads() };
        pool.run(tasks, &|task| {
            let mut buf = Vec::with_capacity(rb);
            for r in split(n_rows, tasks, task) {
                buf.clear();
                quant::quantize_act(ty, &x[r * cols..(r + 1) * cols], &mut buf);
                assert_eq!(buf.len(), rb, "activation row size");
                // SAFETY: row r's bytes are written by this task only, inside the buffer sized above.
                unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), out.get().add(r * rb), rb) };
            }
        });
        self.split = None;
    }

    /// Adds the BF16 `hi + lo` split of `x` (the rows these were quantized from) that the AMX product of F16/BF16
    /// weights reads, where the CPU has AMX and the batch has enough rows; once.
    fn split_for_amx(&mut self, x: &[f32], cols: usize, pool: &ThreadPool) {
        if self.split.is_none() && self.n_rows >= quant::amx::MIN_ROWS && quant::amx::available() {
            let mut s = quant::amx::SplitActs::default();
            s.fill(x, self.n_rows, cols, pool);
            self.split = Some(s);
        }
    }

    pub fn row(&self, r: usize) -> &[u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }
}

/// The same input quantized for each activation type it is needed in (Q8_0, Q8_1, Q8_K, F32), on demand.
pub struct ActSet<'a> {
    x: &'a [f32],
    n_rows: usize,
    cols: usize,
    pool: &'a ThreadPool,
    by_type: Vec<(GgmlType, Acts)>,
}

impl<'a> ActSet<'a> {
    pub fn new(x: &'a [f32], n_rows: usize, cols: usize, pool: &'a ThreadPool) -> Self {
        Self {
            x,
            n_rows,
            cols,
            pool,
            by_type: Vec::with_capacity(2),
        }
    }

    /// Quantizes the input for each of `ws` (once per distinct activation type).
    pub fn prepare(&mut self, ws: &[&Weight]) {
        for w in ws {
            self.for_weight(w);
        }
    }

    /// The input as quantized for `w`; [`ActSet::prepare`] must have seen a weight of its activation type.
    pub fn get(&self, w: &Weight) -> &Acts {
        let ty = w.ty.vec_dot_type();
        &self
            .by_type
            .iter()
            .find(|(t, _)| *t == ty)
            .expect("ActSet::prepare was called for this weight")
            .1
    }

    pub fn for_weight(&mut self, w: &Weight) -> &Acts {
        let ty = w.ty.vec_dot_type();
        let i = match self.by_type.iter().position(|(t, _)| *t == ty) {
            Some(i) => i,
            None => {
                let mut a = Acts::default();
                a.quantize(ty, self.x, self.n_rows, self.cols, self.pool);
                self.by_type.push((ty, a));
                self.by_type.len() - 1
            }
        };
        let a = &mut self.by_type[i].1;
        // Only F16/BF16 weights read the split (F32 weights share the F32 rows but not the AMX product).
        if matches!(w.ty, GgmlType::F16 | GgmlType::BF16) {
            a.split_for_amx(self.x, self.cols, self.pool);
        }
        &self.by_type[i].1
    }
}

/// A raw pointer that tasks may share to write disjoint parts of one output buffer.
pub struct SyncPtr<T>(pub *mut T);

impl<T> Clone for SyncPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper rather than the raw field).
    pub fn get(&self) -> *mut T {
        self.0
    }
}
// SAFETY: every user writes disjoint index ranges and the buffer outlives the parallel loop.
unsafe impl<T: Send> Send for SyncPtr<T> {}
unsafe impl<T: Send> Sync for SyncPtr<T> {}

/// Runs a block-of-rows kernel over groups of `T` activation rows from token `*i` while a whole group fits before
/// `end`, handing each result to `put(token, row within the block, value)`; leaves `*i` at the first token left.
#[allow(clippy::too_many_arguments)]
fn groups<const T: usize>(
    kernel: quant::RowsFn<T>,
    cols: usize,
    w: &[u8],
    rb: usize,
    x: &Acts,
    i: &mut usize,
    end: usize,
    put: impl Fn(usize, usize, f32),
) {
    let mut res = [[0f32; T]; ROW_BLOCK];
    let res = &mut res[..w.len() / rb];
    while *i + T <= end {
        let xs = std::array::from_fn(|k| x.row(*i + k));
        kernel(cols, w, rb, xs, res);
        for (r, v) in res.iter().enumerate() {
            for (k, &vk) in v.iter().enumerate() {
                put(*i + k, r, vk);
            }
        }
        *i += T;
    }
}

/// Activation rows per tile: with the task's weight rows, a tile stays in L2 while every row visits it.
const TOKEN_TILE: usize = 64;
/// Activation rows from which unpacking a codebook type's row block once pays ([`quant::Expanded`]).
const EXPAND_MIN_TOKENS: usize = 16;
/// Weight rows per block (at most ~200 KB of the largest row types at 4096 columns: in L2).
const ROW_BLOCK: usize = 64;

/// `out[t * w.rows + r] = dot(w.row(r), x.row(t))` for every row `r` and activation row `t`.
pub fn matmul(w: &Weight, x: &Acts, out: &mut [f32], pool: &ThreadPool) {
    matmul_many(&mut [(w, x, out)], pool);
}

/// Several independent matmuls (e.g. Q, K and V of one input) as one parallel loop: one hand-out of work instead
/// of one per matrix. Tasks are row ranges of the matrices laid end to end.
pub fn matmul_many(jobs: &mut [(&Weight, &Acts, &mut [f32])], pool: &ThreadPool) {
    struct Job<'a> {
        w: &'a Weight,
        x: &'a Acts,
        out: SyncPtr<f32>,
        dot: quant::DotFn,
        rows4: Option<quant::Rows4Fn>,
        rows8: Option<quant::Rows8Fn>,
        rows1: Option<quant::RowsFn<1>>,
        expanded: Option<quant::Expanded>,
        packed: Option<&'a Packed>,
        /// First task of this job, and how many it has.
        first: usize,
        tasks: usize,
    }
    let mut plan = Vec::with_capacity(jobs.len());
    let mut total = 0;
    for (w, x, out) in jobs.iter_mut() {
        assert!(out.len() >= x.n_rows * w.rows, "matmul output too small");
        // Enough tasks to balance, few enough that each is worth handing out.
        let work = w.rows * x.n_rows * w.cols;
        let units = if w.packed.is_some() {
            w.rows / packed_q4k::NR
        } else {
            w.rows
        };
        // The AMX Q4_K product tiles every activation row once per task: one task per thread.
        let per_thread = if w.packed.as_deref().is_some_and(|p| p.tiles_acts(x)) {
            1
        } else {
            4
        };
        let tasks = if work < 1 << 14 {
            1
        } else {
            (pool.n_threads() * per_thread).min(units)
        };
        plan.push(Job {
            w,
            x,
            out: SyncPtr(out.as_mut_ptr()),
            dot: quant::dot_fn(w.ty),
            rows4: quant::rows4_fn(w.ty),
            rows8: quant::rows8_fn(w.ty),
            rows1: quant::rows1_fn(w.ty),
            expanded: quant::expanded(w.ty),
            packed: w.packed.as_deref(),
            first: total,
            tasks,
        });
        total += tasks;
    }
    pool.run(total, &|task| {
        let j = plan
            .iter()
            .rev()
            .find(|j| j.first <= task)
            .expect("task 0 belongs to the first job");
        let (rows, cols, n) = (j.w.rows, j.w.cols, j.x.n_rows);
        if let Some(pw) = j.packed {
            let panels = split(rows / packed_q4k::NR, j.tasks, task - j.first);
            // SAFETY: tasks write disjoint panels' columns of every activation row, inside `out` (asserted above).
            unsafe { pw.matmul(panels, j.x, j.out.get(), rows) };
            return;
        }
        let (data, rb, x, p) = (j.w.data(), j.w.row_bytes(), j.x, j.out);
        // SAFETY: (i, r) pairs are disjoint across tasks; indices are in bounds (asserted above).
        let put = |i: usize, r: usize, v: f32| unsafe { *p.0.add(i * rows + r) = v };
        let my_rows = split(rows, j.tasks, task - j.first);
        // The codebook types' rows unpacked once per row block and tile (when the tile has enough activation rows
        // to pay for it), then the groups run over the unpacked rows.
        let expanded = j.expanded.filter(|_| n >= EXPAND_MIN_TOKENS);
        let erb = expanded.map_or(0, |e| e.row_bytes(cols));
        let mut scratch = vec![
            0u8;
            if expanded.is_some() {
                ROW_BLOCK * erb
            } else {
                0
            }
        ];
        for tile in (0..n).step_by(TOKEN_TILE) {
            let tile_end = (tile + TOKEN_TILE).min(n);
            // A block of weight rows stays in L2 while each group of four or eight activation rows (in L1) passes
            // over it: a weight row is 4-9x fewer bytes than the activation rows it meets, so it is the one to
            // stream. Rows left over after the groups go one at a time.
            let mut block = my_rows.start;
            while block < my_rows.end {
                let block_end = (block + ROW_BLOCK).min(my_rows.end);
                let w = &data[block * rb..block_end * rb];
                let mut i = tile;
                if let Some(e) = expanded.filter(|_| tile_end - tile >= EXPAND_MIN_TOKENS) {
                    let xw = &mut scratch[..(block_end - block) * erb];
                    for (src, dst) in w.chunks_exact(rb).zip(xw.chunks_exact_mut(erb)) {
                        e.expand(cols, src, dst);
                    }
                    if let Some(rows8) = e.rows8 {
                        groups(rows8, cols, xw, erb, x, &mut i, tile_end, |t, r, v| {
                            put(t, block + r, v)
                        });
                    }
                    groups(e.rows4, cols, xw, erb, x, &mut i, tile_end, |t, r, v| {
                        put(t, block + r, v)
                    });
                }
                if let Some(rows8) = j.rows8 {
                    groups(rows8, cols, w, rb, x, &mut i, tile_end, |t, r, v| {
                        put(t, block + r, v)
                    });
                }
                if let Some(rows4) = j.rows4 {
                    groups(rows4, cols, w, rb, x, &mut i, tile_end, |t, r, v| {
                        put(t, block + r, v)
                    });
                }
                if let Some(rows1) = j.rows1 {
                    groups(rows1, cols, w, rb, x, &mut i, tile_end, |t, r, v| {
                        put(t, block + r, v)
                    });
                }
                for i in i..tile_end {
                    for r in block..block_end {
                        put(i, r, (j.dot)(cols, &data[r * rb..(r + 1) * rb], x.row(i)));
                    }
                }
                block = block_end;
            }
        }
    });
}
