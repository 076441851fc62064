//! The demo's artifact: a generated program image and the next release of
//! it, shaped like real ones so the delta between them is meaningful.
//!
//! The image has the parts of a linked binary: a header, machine code
//! (common x86-64 instruction shapes with call displacements), read-only
//! strings, data tables and compressed resources (random bytes). The next
//! release changes what a small release changes: a few functions rewritten,
//! a new function inserted (everything after it shifts), call displacements
//! past the insertion adjusted, a version string and some messages changed,
//! one resource replaced. Deterministic for a seed.

/// A small, fast, seeded generator (xorshift64*); not for secrets.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (`n` > 0).
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, out: &mut Vec<u8>, n: usize) {
        let mut left = n;
        while left > 0 {
            let word = self.next().to_le_bytes();
            let take = left.min(8);
            out.extend_from_slice(&word[..take]);
            left -= take;
        }
    }
}

/// Instruction shapes, as bytes; `0xE8` is a call whose 4-byte displacement
/// follows.
const CODE: [&[u8]; 16] = [
    &[0x55],                         // push rbp
    &[0x48, 0x89, 0xE5],             // mov rbp, rsp
    &[0x48, 0x83, 0xEC, 0x20],       // sub rsp, 32
    &[0x48, 0x8B, 0x45, 0xF8],       // mov rax, [rbp-8]
    &[0x48, 0x89, 0x7D, 0xF8],       // mov [rbp-8], rdi
    &[0x8B, 0x45, 0xFC],             // mov eax, [rbp-4]
    &[0x85, 0xC0],                   // test eax, eax
    &[0x74, 0x0A],                   // je +10
    &[0x31, 0xC0],                   // xor eax, eax
    &[0xC9],                         // leave
    &[0xC3],                         // ret
    &[0x0F, 0x1F, 0x44, 0x00, 0x00], // nop
    &[0x48, 0x8D, 0x3D],             // lea rdi, [rip+...] (disp follows)
    &[0x89, 0xC7],                   // mov edi, eax
    &[0x41, 0x54],                   // push r12
    &[0x5D],                         // pop rbp
];

const WORDS: [&str; 24] = [
    "receipt", "printer", "payment", "terminal", "scanner", "drawer", "loyalty", "tax", "config",
    "failed", "timeout", "retry", "invalid", "session", "barcode", "refund", "card", "network",
    "update", "ledger", "offline", "queue", "display", "total",
];

/// `len` bytes of machine code: functions of instruction shapes with calls
/// to earlier functions.
fn code(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        // One function: prologue, body, epilogue, padding to 16.
        out.extend_from_slice(&[0x55, 0x48, 0x89, 0xE5]);
        let body = 8 + rng.below(40);
        for _ in 0..body {
            if rng.below(6) == 0 {
                out.push(0xE8);
                let disp = -(rng.below(out.len().max(1)) as i32);
                out.extend_from_slice(&disp.to_le_bytes());
            } else {
                let shape = CODE[rng.below(CODE.len())];
                out.extend_from_slice(shape);
                if shape == [0x48, 0x8D, 0x3D] {
                    out.extend_from_slice(&(rng.below(1 << 20) as u32).to_le_bytes());
                }
            }
        }
        out.extend_from_slice(&[0xC9, 0xC3]);
        while out.len() % 16 != 0 {
            out.push(0xCC);
        }
    }
    out.truncate(len);
    out
}

/// `len` bytes of NUL-terminated messages.
fn strings(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        let n = 2 + rng.below(6);
        let words: Vec<&str> = (0..n).map(|_| WORDS[rng.below(WORDS.len())]).collect();
        out.extend_from_slice(words.join(" ").as_bytes());
        if rng.below(3) == 0 {
            out.extend_from_slice(b": %s (code %d)");
        }
        out.push(0);
    }
    out.truncate(len);
    out
}

/// `len` bytes of tables: slowly growing little-endian numbers.
fn tables(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut v = rng.next() as u32 & 0xFFFF;
    while out.len() < len {
        v = v.wrapping_add(rng.below(64) as u32);
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The two releases: `(older, newer)`, each about `len` bytes.
pub(super) fn releases(len: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng::new(seed);
    let len = len.max(64 << 10);
    let text_len = len * 45 / 100;
    let ro_len = len * 15 / 100;
    let data_len = len * 10 / 100;
    let res_len = len - text_len - ro_len - data_len - 4096;

    let mut header = b"\x7fELF\x02\x01\x01\0haifu-demo pos-app 2.3.0\0".to_vec();
    header.resize(4096, 0);
    let mut text = code(&mut rng, text_len);
    let mut ro = strings(&mut rng, ro_len);
    let data = tables(&mut rng, data_len);
    let mut res = Vec::with_capacity(res_len);
    rng.bytes(&mut res, res_len);
    let old: Vec<u8> = [&header[..], &text, &ro, &data, &res].concat();

    // The next release.
    let mut header2 = b"\x7fELF\x02\x01\x01\0haifu-demo pos-app 2.4.0\0".to_vec();
    header2.resize(4096, 0);
    // A few functions rewritten in place (about 1 in 200 16-byte spots).
    let spots = text.len() / 16 / 200;
    for _ in 0..spots {
        let at = rng.below(text.len().saturating_sub(32)) & !15;
        let fresh = code(&mut rng, 16);
        text[at..at + 16].copy_from_slice(&fresh);
    }
    // A new function in the middle: calls after it are re-linked.
    let insert_at = (text.len() / 2) & !15;
    let new_fn = code(&mut rng, 6 << 10);
    let shift = new_fn.len() as i32;
    let mut i = insert_at;
    while i + 5 <= text.len() {
        if text[i] == 0xE8 && rng.below(4) == 0 {
            let mut d = [0u8; 4];
            d.copy_from_slice(&text[i + 1..i + 5]);
            let disp = i32::from_le_bytes(d).wrapping_sub(shift);
            text[i + 1..i + 5].copy_from_slice(&disp.to_le_bytes());
            i += 5;
        } else {
            i += 1;
        }
    }
    text.splice(insert_at..insert_at, new_fn);
    // Some messages reworded, a few new ones.
    for _ in 0..(ro.len() / 4096).max(1) {
        let at = rng.below(ro.len().saturating_sub(64));
        let fresh = strings(&mut rng, 24);
        ro[at..at + 24].copy_from_slice(&fresh);
    }
    let extra = strings(&mut rng, 2 << 10);
    ro.extend_from_slice(&extra);
    // One resource (a 64 KiB image, say) replaced.
    let res_at = rng.below(res.len().saturating_sub(64 << 10));
    let mut fresh = Vec::with_capacity(64 << 10);
    rng.bytes(&mut fresh, (64 << 10).min(res.len()));
    let end = (res_at + fresh.len()).min(res.len());
    res[res_at..end].copy_from_slice(&fresh[..end - res_at]);
    let new: Vec<u8> = [&header2[..], &text, &ro, &data, &res].concat();
    (old, new)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_deterministic_sized_and_close() {
        let (a, b) = releases(1 << 20, 7);
        let (a2, b2) = releases(1 << 20, 7);
        assert_eq!((&a, &b), (&a2, &b2), "same seed, same bytes");
        assert_ne!(releases(1 << 20, 8).0, a, "another seed, other bytes");
        assert_eq!(a.len(), 1 << 20);
        assert!(b.len() > a.len() && b.len() < a.len() + (16 << 10));
        // Realistic: the delta is a small fraction, the code compresses.
        let opts = haifu_delta::MakeOptions::background();
        let d = haifu_delta::make(&a, &b, &opts).unwrap();
        assert!(
            d.len() * 10 < b.len() as u64,
            "delta {} of {}",
            d.len(),
            b.len()
        );
        assert!(d.len() > 1024, "the change is real: {}", d.len());
        let z = zstd::bulk::compress(&b, 3).unwrap();
        assert!(z.len() < b.len() * 9 / 10 && z.len() > b.len() / 4);
    }
}
