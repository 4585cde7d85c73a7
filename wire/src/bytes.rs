//! Big-endian loads and stores at fixed offsets, shared by every view.
//!
//! Each helper indexes one sub-slice of constant length, so after inlining
//! the compiler keeps a single bounds check per access, and none at all when
//! it can see that `new_checked` already proved the range. Keeping these in
//! one place means the views never spell out `try_into().unwrap()`, which the
//! house style bans on the packet path.

/// Reads the big-endian `u16` at `data[at..at + 2]`.
#[inline(always)]
pub(crate) fn get_u16(data: &[u8], at: usize) -> u16 {
    let b = &data[at..at + 2];
    u16::from_be_bytes([b[0], b[1]])
}

/// Reads the big-endian `u32` at `data[at..at + 4]`.
#[inline(always)]
pub(crate) fn get_u32(data: &[u8], at: usize) -> u32 {
    let b = &data[at..at + 4];
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Copies `N` bytes starting at `at` into an array (addresses, MACs).
#[inline(always)]
pub(crate) fn get_array<const N: usize>(data: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&data[at..at + N]);
    out
}

/// Writes `value` big-endian at `data[at..at + 2]`.
#[inline(always)]
pub(crate) fn set_u16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Writes `value` big-endian at `data[at..at + 4]`.
#[inline(always)]
pub(crate) fn set_u32(data: &mut [u8], at: usize, value: u32) {
    data[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

/// Copies an array of `N` bytes into `data[at..at + N]`.
#[inline(always)]
pub(crate) fn set_array<const N: usize>(data: &mut [u8], at: usize, value: &[u8; N]) {
    data[at..at + N].copy_from_slice(value);
}
