//! Readers of the JSON values the trace-file writer spells, straight from
//! the bytes of a line (no tokenising first, no allocation): what the fast
//! path of `monitor analyze` uses, field by field
//! ([`crate::event::Kind::read`]). Each returns the value and the position
//! after it, or `None` for any other spelling, which the general reader
//! then judges (so these may be strict: they never decide that a line is
//! bad).

/// An unsigned JSON integer (`0|[1-9][0-9]*`) at `at`.
#[inline(always)]
pub fn unsigned(s: &[u8], at: usize) -> Option<(u64, usize)> {
    let digit = |j: usize| s.get(j).map(|b| b.wrapping_sub(b'0')).filter(|d| *d <= 9);
    let first = digit(at)?;
    if first == 0 {
        // `0` alone; `01` is not JSON.
        return digit(at + 1).is_none().then_some((0, at + 1));
    }
    let mut v = u64::from(first);
    let mut j = at + 1;
    // 19 digits always fit: no overflow checks for those.
    let fits = s.len().min(at + 19);
    while j < fits {
        let d = s[j].wrapping_sub(b'0');
        if d > 9 {
            return Some((v, j));
        }
        v = v * 10 + u64::from(d);
        j += 1;
    }
    while let Some(d) = digit(j) {
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
        j += 1;
    }
    Some((v, j))
}

/// A JSON integer (`-?(0|[1-9][0-9]*)`) at `at` that fits an `i64`.
#[inline(always)]
pub fn signed(s: &[u8], at: usize) -> Option<(i64, usize)> {
    if s.get(at) == Some(&b'-') {
        let (v, end) = unsigned(s, at + 1)?;
        Some((0i64.checked_sub_unsigned(v)?, end))
    } else {
        let (v, end) = unsigned(s, at)?;
        Some((i64::try_from(v).ok()?, end))
    }
}

/// Bytes that end a plain string: `"`, `\\` and control characters.
const STOPS: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// A string without escapes or control characters at `at` (its opening
/// quote): the range of its contents.
#[inline(always)]
pub fn plain_str(s: &[u8], at: usize) -> Option<(core::ops::Range<usize>, usize)> {
    if *s.get(at)? != b'"' {
        return None;
    }
    let start = at + 1;
    let len = s
        .get(start..)?
        .iter()
        .position(|b| STOPS[usize::from(*b)])?;
    let end = start + len;
    (s[end] == b'"').then_some((start..end, end + 1))
}

/// Hex digit values by byte; [`QUOTE`] for `"`, [`BAD`] for the rest.
const HEX: [u8; 256] = {
    let mut t = [BAD; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t[b'"' as usize] = QUOTE;
    t
};
const QUOTE: u8 = 0xfe;
const BAD: u8 = 0xff;

/// `"0x…"` with 1 to 16 hex digits.
#[inline(always)]
pub fn hex_str(s: &[u8], at: usize) -> Option<(u64, usize)> {
    if s.get(at..at + 3)? != b"\"0x" {
        return None;
    }
    let start = at + 3;
    let mut j = start;
    let mut v: u64 = 0;
    loop {
        let d = HEX[usize::from(*s.get(j)?)];
        if d > 15 {
            // More than 16 digits shifted some out: not ours to judge.
            let digits = j - start;
            return (d == QUOTE && (1..=16).contains(&digits)).then_some((v, j + 1));
        }
        v = v << 4 | u64::from(d);
        j += 1;
    }
}

/// `true`, `false` or `null` at `at`.
#[inline(always)]
pub fn literal(s: &[u8], at: usize) -> Option<(Option<bool>, usize)> {
    let rest = s.get(at..)?;
    if rest.starts_with(b"true") {
        Some((Some(true), at + 4))
    } else if rest.starts_with(b"false") {
        Some((Some(false), at + 5))
    } else if rest.starts_with(b"null") {
        Some((None, at + 4))
    } else {
        None
    }
}

/// The member `"name":` at `at`: the position of its value.
#[inline(always)]
pub fn key(s: &[u8], at: usize, name: &str) -> Option<usize> {
    let n = name.len();
    let value = at + n + 3;
    let k = s.get(at..value)?;
    (k[0] == b'"' && &k[1..=n] == name.as_bytes() && k[n + 1] == b'"' && k[n + 2] == b':')
        .then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_take_only_the_writers_spelling() {
        assert_eq!(unsigned(b"0,", 0), Some((0, 1)));
        assert_eq!(unsigned(b"18446744073709551615}", 0), Some((u64::MAX, 20)));
        assert_eq!(unsigned(b"18446744073709551616", 0), None);
        assert_eq!(unsigned(b"01", 0), None);
        assert_eq!(unsigned(b"0", 0), Some((0, 1)));
        assert_eq!(unsigned(b"7", 0), Some((7, 1)));
        assert_eq!(
            unsigned(b"1234567890123456789", 0),
            Some((1_234_567_890_123_456_789, 19))
        );
        assert_eq!(
            unsigned(b"12345678901234567890,", 0),
            Some((12_345_678_901_234_567_890, 20))
        );
        assert_eq!(unsigned(b"x", 0), None);
        assert_eq!(plain_str(b"\"a\x01\"", 0), None);
        assert_eq!(plain_str(b"\"\"", 0), Some((1..1, 2)));
        assert_eq!(plain_str(b"\"ab", 0), None);
        assert_eq!(unsigned(b"-1", 0), None);
        assert_eq!(signed(b"-9223372036854775808,", 0), Some((i64::MIN, 20)));
        assert_eq!(signed(b"9223372036854775808", 0), None);
        assert_eq!(signed(b"-0", 0), Some((0, 2)));
        assert_eq!(hex_str(b"\"0xffffffffffffffff\"", 0), Some((u64::MAX, 20)));
        assert_eq!(hex_str(b"\"0x1ffffffffffffffff\"", 0), None);
        assert_eq!(hex_str(b"\"0x\"", 0), None);
        assert_eq!(hex_str(b"\"0x+1\"", 0), None);
        assert_eq!(hex_str(b"\"0x00000000000000001\"", 0), None);
        assert_eq!(hex_str(b"\"0xAbC\",", 0), Some((0xabc, 7)));
        assert_eq!(hex_str(b"\"0x12", 0), None);
        for v in [
            0u64,
            1,
            0xf,
            0x10,
            0xdead_beef,
            0xffff_8880_1234_5678,
            u64::MAX,
        ] {
            let text = format!("\"{v:#x}\"");
            assert_eq!(hex_str(text.as_bytes(), 0), Some((v, text.len())), "{text}");
        }
        assert_eq!(plain_str(b"\"a\\\"\"", 0), None);
        assert_eq!(plain_str(b"\"ab\",", 0), Some((1..3, 4)));
        assert_eq!(literal(b"null,", 0), Some((None, 4)));
        assert_eq!(key(b"\"ret\":1", 0, "ret"), Some(6));
        assert_eq!(key(b"\"rets\":1", 0, "ret"), None);
    }
}
