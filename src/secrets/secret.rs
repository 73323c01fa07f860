//! [`Secret`]: a string that cannot be printed by accident.

use std::fmt;
use std::mem::MaybeUninit;
use std::sync::atomic::{compiler_fence, Ordering};

/// A plaintext secret (an ad platform access token).
///
/// `Debug` and `Display` print `[redacted]`, so a `Secret` inside a struct that gets logged with
/// `{:?}`, or formatted into an error, shows nothing. The value is reachable only through
/// [`Secret::expose`], which makes every use greppable. There is deliberately no `Serialize`,
/// `PartialEq` (non-constant-time) or `Deref<Target = str>` impl: each would be a way to leak it
/// without writing `expose`.
///
/// The buffer is overwritten with zeros on drop. That is best effort: copies made from
/// `expose()` (request bodies, header values) are outside its control, but it keeps the token from
/// lingering in freed heap memory that a later core dump or allocator reuse could reveal.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The plaintext. Call it at the last moment, where the value is actually sent.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(std::mem::take(&mut self.0).into_bytes());
    }
}

/// Overwrites a buffer (including its spare capacity) with zeros before it is freed.
///
/// Written here rather than pulling in `zeroize` as a direct dependency: it is the same technique
/// (volatile stores + a compiler fence, so the optimiser cannot remove them as dead stores to
/// memory about to be freed) in a dozen lines.
pub(crate) fn wipe(mut bytes: Vec<u8>) {
    zero_in_place(&mut bytes);
}

/// The zeroing part of [`wipe`], on a buffer that stays allocated (so a test can look at it).
fn zero_in_place(bytes: &mut Vec<u8>) {
    for byte in bytes.iter_mut() {
        // SAFETY: `byte` is a valid, aligned, exclusive reference into the vector's buffer.
        unsafe { std::ptr::write_volatile(byte, 0) };
    }
    // Decryption works in place and then truncates, so bytes past `len` (the tag) or bytes from
    // an earlier, longer use of the allocation may remain there.
    for byte in bytes.spare_capacity_mut() {
        // SAFETY: as above; writing an initialised value into a `MaybeUninit` slot is always valid.
        unsafe { std::ptr::write_volatile(byte, MaybeUninit::new(0)) };
    }
    compiler_fence(Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("EAABsecret-token");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:#?}", Some(&s)), "Some(\n    [redacted],\n)");
        assert_eq!(s.expose(), "EAABsecret-token");
        assert!(!s.is_empty());
        assert!(Secret::from(String::new()).is_empty());
    }

    #[test]
    fn clone_is_independent_of_the_original_drop() {
        let a = Secret::new("tok");
        let b = a.clone();
        drop(a);
        assert_eq!(b.expose(), "tok");
    }

    #[test]
    fn wipe_zeroes_contents_and_spare_capacity_and_handles_empty_buffers() {
        // A buffer that held a longer secret before being truncated: the tail is spare
        // capacity now, but the bytes are still in the allocation.
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(b"EAAsecret-token-in-spare-capacity");
        let written = v.len();
        v.truncate(3);
        zero_in_place(&mut v);
        assert_eq!(v, [0, 0, 0], "the contents");
        let spare = v.spare_capacity_mut();
        assert!(spare.len() >= written - 3);
        // SAFETY: zero_in_place wrote every spare slot, so all of them are initialised.
        let spare: Vec<u8> = spare.iter().map(|b| unsafe { b.assume_init() }).collect();
        assert!(
            spare.iter().all(|&b| b == 0),
            "the spare capacity: {spare:?}"
        );
        // And the consuming form accepts empty and unallocated buffers.
        wipe(v);
        wipe(Vec::new());
        wipe(Vec::with_capacity(16));
    }
}
