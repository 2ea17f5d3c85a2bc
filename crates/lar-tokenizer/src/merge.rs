//! The pair-merging loop shared by BPE and SentencePiece: symbols in a linked list, candidate pairs in a heap,
//! the best pair merged first (ties to the leftmost), stale candidates skipped. O(n log n) in the word length, so a
//! long run of punctuation or a base64 blob costs no more than its size.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Cand {
    /// Higher is merged first.
    priority: f64,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.priority
            .total_cmp(&o.priority)
            .then_with(|| o.left.cmp(&self.left))
    }
}

/// Splits `text` into UTF-8 characters, then merges adjacent pieces while `score(left, right)` gives a priority
/// (higher first). Returns the final pieces as byte ranges of `text`.
pub fn merge(text: &str, score: impl Fn(&str, &str) -> Option<f64>) -> Vec<std::ops::Range<usize>> {
    let mut syms: Vec<Sym> = Vec::new();
    for (i, (start, c)) in text.char_indices().enumerate() {
        syms.push(Sym {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: None,
        });
        if i > 0 {
            syms[i - 1].next = Some(i);
        }
    }
    let piece = |s: &Sym| &text[s.start..s.start + s.len];
    let mut heap = BinaryHeap::new();
    let push = |heap: &mut BinaryHeap<Cand>, syms: &[Sym], l: usize, r: usize| {
        if let Some(priority) = score(piece(&syms[l]), piece(&syms[r])) {
            heap.push(Cand {
                priority,
                left: l,
                right: r,
                len: syms[l].len + syms[r].len,
            });
        }
    };
    for i in 1..syms.len() {
        push(&mut heap, &syms, i - 1, i);
    }
    while let Some(c) = heap.pop() {
        let (l, r) = (syms[c.left], syms[c.right]);
        if l.len == 0 || r.len == 0 || l.next != Some(c.right) || l.len + r.len != c.len {
            continue;
        }
        syms[c.left].len += r.len;
        syms[c.right].len = 0;
        syms[c.left].next = r.next;
        if let Some(n) = r.next {
            syms[n].prev = Some(c.left);
        }
        if let Some(p) = syms[c.left].prev {
            push(&mut heap, &syms, p, c.left);
        }
        if let Some(n) = syms[c.left].next {
            push(&mut heap, &syms, c.left, n);
        }
    }
    let mut out = Vec::new();
    let mut i = if syms.is_empty() { None } else { Some(0) };
    while let Some(k) = i {
        out.push(syms[k].start..syms[k].start + syms[k].len);
        i = syms[k].next;
    }
    out
}
