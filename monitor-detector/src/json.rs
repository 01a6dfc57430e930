//! An [`Event`] in a trace file: one flat JSON object, the header fields
//! then `ev` (the kind) then the payload fields, each spelled as the
//! catalogue's field kinds say ([`monitor_common::event::Fields`]).
//!
//! Two readers give the same result. [`parse_event_line`] is a scanner for the
//! lines the monitor writes (a flat object beginning `{"type":"event",`, no
//! escapes in strings, the kind before the payload): it copies nothing and
//! allocates nothing, which makes `monitor analyze` several times faster than
//! a generic reader. Anything else (other key orders, escapes, whitespace,
//! errors) returns `None`, and the caller falls back to serde (the
//! `Deserialize` impl below), which accepts any valid JSON spelling and
//! produces the error messages. A property test holds the two to the same
//! output.
//!
//! Absent header fields are an error except `cgroup_id` (added with wire
//! version 2) and `memcg_id` (wire version 3, written last, after the
//! payload); absent payload fields read as 0; unknown fields are ignored,
//! so newer traces stay readable.

use std::{borrow::Cow, fmt, fmt::Write as _};

use monitor_common::{
    catalogue::{Data, EventId},
    event::{BadValue, Kind, Token, Value, fixed_str, kind::Hex},
    scan,
};
use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, MapAccess, Visitor},
    ser::SerializeMap,
};

use crate::event::{Event, ProbeRef, c_str};

/// Header fields in the order they are written (`memcg_id` after the
/// payload); all but `cgroup_id` and `memcg_id` required.
const HEADER: [&str; 13] = [
    "t",
    "cpu",
    "pid",
    "tgid",
    "comm",
    "task_flags",
    "mm",
    "mm_gen",
    "seq",
    "hdr_flags",
    "cgroup_id",
    "probe",
    "memcg_id",
];
const REQUIRED: u16 = ((1 << HEADER.len()) - 1) & !(1 << 10) & !(1 << 12);

/// Sets header field `i` of `ev` from `t`; `None` if the value does not fit.
fn set_header(ev: &mut Event, i: usize, t: Token<'_>) -> Option<()> {
    fn num<T: TryFrom<u64>>(t: Token<'_>) -> Option<T> {
        let Token::Num(s) = t else { return None };
        T::try_from(s.parse::<u64>().ok()?).ok()
    }
    match i {
        0 => ev.t = num(t)?,
        1 => ev.cpu = num(t)?,
        2 => ev.pid = num(t)?,
        3 => ev.tgid = num(t)?,
        4 => {
            let Token::Str(s) = t else { return None };
            ev.comm = fixed_str(s);
        }
        5 => ev.task_flags = num(t)?,
        6 => Hex::set(&mut ev.mm, t)?,
        7 => ev.mm_gen = num(t)?,
        8 => ev.seq = num(t)?,
        9 => ev.hdr_flags = num(t)?,
        10 => ev.cgroup_id = num(t)?,
        11 => {
            let Token::Str(s) = t else { return None };
            ev.probe = ProbeRef::from_name(s);
        }
        12 => ev.memcg_id = num(t)?,
        _ => return None,
    }
    Some(())
}

fn header_index(key: &str) -> Option<usize> {
    // A match (length, then bytes) rather than a scan of `HEADER`: this runs
    // for every field of every line `monitor analyze` reads.
    Some(match key {
        "t" => 0,
        "cpu" => 1,
        "pid" => 2,
        "tgid" => 3,
        "comm" => 4,
        "task_flags" => 5,
        "mm" => 6,
        "mm_gen" => 7,
        "seq" => 8,
        "hdr_flags" => 9,
        "cgroup_id" => 10,
        "probe" => 11,
        "memcg_id" => 12,
        _ => return None,
    })
}

/// Writes `s` as a JSON string (the escapes serde_json uses).
fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_value(out: &mut String, v: Value<'_>) {
    let _ = match v {
        Value::Unsigned(n) => write!(out, "{n}"),
        Value::Signed(n) => write!(out, "{n}"),
        Value::Hex(n) => write!(out, "\"{n:#x}\""),
        Value::Bool(b) => write!(out, "{b}"),
        Value::Str(s) => {
            push_str(out, &String::from_utf8_lossy(s));
            Ok(())
        }
        Value::Name(s) => write!(out, "\"{s}\""),
        Value::Null => write!(out, "null"),
    };
}

/// Appends `ev` as JSON object members (without braces), in the order the
/// `Serialize` impl writes them.
pub fn write_members(ev: &Event, out: &mut String) {
    let _ = write!(
        out,
        "\"t\":{},\"cpu\":{},\"pid\":{},\"tgid\":{},\"comm\":",
        ev.t, ev.cpu, ev.pid, ev.tgid
    );
    push_str(out, &ev.comm());
    let _ = write!(
        out,
        ",\"task_flags\":{},\"mm\":\"{:#x}\",\"mm_gen\":{},\"seq\":{},\"hdr_flags\":{},\
         \"cgroup_id\":{},\"probe\":",
        ev.task_flags, ev.mm, ev.mm_gen, ev.seq, ev.hdr_flags, ev.cgroup_id
    );
    push_str(out, &ev.probe.name());
    let _ = write!(out, ",\"ev\":\"{}\"", ev.kind());
    ev.data.fields().for_each(&mut |name, v| {
        out.push_str(",\"");
        out.push_str(name);
        out.push_str("\":");
        push_value(out, v);
    });
    let _ = write!(out, ",\"memcg_id\":{}", ev.memcg_id);
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct V<'a>(Value<'a>);
        impl Serialize for V<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self.0 {
                    Value::Unsigned(n) => s.serialize_u64(n),
                    Value::Signed(n) => s.serialize_i64(n),
                    Value::Hex(n) => s.serialize_str(&format!("{n:#x}")),
                    Value::Bool(b) => s.serialize_bool(b),
                    Value::Str(b) => s.serialize_str(&String::from_utf8_lossy(b)),
                    Value::Name(n) => s.serialize_str(n),
                    Value::Null => s.serialize_unit(),
                }
            }
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("t", &self.t)?;
        m.serialize_entry("cpu", &self.cpu)?;
        m.serialize_entry("pid", &self.pid)?;
        m.serialize_entry("tgid", &self.tgid)?;
        m.serialize_entry("comm", &self.comm())?;
        m.serialize_entry("task_flags", &self.task_flags)?;
        m.serialize_entry("mm", &format!("{:#x}", self.mm))?;
        m.serialize_entry("mm_gen", &self.mm_gen)?;
        m.serialize_entry("seq", &self.seq)?;
        m.serialize_entry("hdr_flags", &self.hdr_flags)?;
        m.serialize_entry("cgroup_id", &self.cgroup_id)?;
        m.serialize_entry("probe", &self.probe.name())?;
        m.serialize_entry("ev", self.kind())?;
        let mut err = None;
        self.data.fields().for_each(&mut |name, v| {
            if err.is_none() {
                err = m.serialize_entry(name, &V(v)).err();
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        m.serialize_entry("memcg_id", &self.memcg_id)?;
        m.end()
    }
}

/// A JSON scalar read by serde, kept until the field it belongs to is known.
enum Scalar<'de> {
    Num(String),
    Str(Cow<'de, str>),
    Bool(bool),
    Null,
}

impl Scalar<'_> {
    fn token(&self) -> Token<'_> {
        match self {
            Scalar::Num(s) => Token::Num(s),
            Scalar::Str(s) => Token::Str(s),
            Scalar::Bool(b) => Token::Bool(*b),
            Scalar::Null => Token::Null,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, string, boolean or null")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Num(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Num(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Num(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A map key, borrowed when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_identifier(V)
    }
}

fn bad<E: de::Error>(b: BadValue) -> E {
    E::custom(format_args!("field `{}`: expected {}", b.field, b.expected))
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Event;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
                let mut ev = Event::zeroed(EventId::MarkVictim);
                let mut seen: u16 = 0;
                let mut kind = None;
                let mut pending: Vec<(String, Scalar<'de>)> = Vec::new();
                while let Some(Key(key)) = map.next_key()? {
                    let value: Scalar<'de> = map.next_value()?;
                    if let Some(i) = header_index(&key) {
                        set_header(&mut ev, i, value.token()).ok_or_else(|| {
                            de::Error::custom(format_args!("field `{key}`: bad value"))
                        })?;
                        seen |= 1 << i;
                    } else if key == "ev" {
                        let Token::Str(name) = value.token() else {
                            return Err(de::Error::custom("field `ev`: expected a string"));
                        };
                        let id = EventId::from_name(name).ok_or_else(|| {
                            de::Error::custom(format_args!(
                                "unknown event kind `{name}` (a newer monitor's trace, or damage)"
                            ))
                        })?;
                        kind = Some(id);
                        ev.data = Data::zeroed(id);
                    } else if kind.is_some() {
                        ev.data.fields_mut().set(&key, value.token()).map_err(bad)?;
                    } else {
                        pending.push((key.into_owned(), value));
                    }
                }
                if kind.is_none() {
                    return Err(de::Error::missing_field("ev"));
                }
                for (key, value) in &pending {
                    ev.data.fields_mut().set(key, value.token()).map_err(bad)?;
                }
                if seen & REQUIRED != REQUIRED {
                    let missing = (0..HEADER.len())
                        .find(|i| REQUIRED & !seen & (1 << i) != 0)
                        .map_or("t", |i| HEADER[i]);
                    return Err(de::Error::missing_field(missing));
                }
                Ok(ev)
            }
        }
        d.deserialize_map(V)
    }
}

/// A cursor over one line for [`parse_event_line`].
struct Scan<'a> {
    text: &'a str,
    s: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }

    /// A string without escapes.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let len = self.s[start..]
            .iter()
            .position(|b| *b == b'"' || *b == b'\\' || *b < 0x20)?;
        self.i = start + len;
        self.eat(b'"')?;
        // Both ends are ASCII quotes of a `&str`: character boundaries.
        self.text.get(start..start + len)
    }

    /// A JSON integer (`-?(0|[1-9][0-9]*)`, no fraction or exponent).
    fn integer(&mut self) -> Option<&'a str> {
        let start = self.i;
        let _ = self.eat(b'-');
        let digits = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let n = self.i - digits;
        if n == 0 || (n > 1 && self.s[digits] == b'0') {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.text.get(start..self.i)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.s[self.i..]
            .starts_with(word)
            .then(|| self.i += word.len())
    }

    /// The value of the header field `"key":` that the writer puts at the
    /// cursor, read straight from the bytes by `read` (which returns the
    /// value and the position after it), and the `,` after it. Only then is
    /// the cursor moved: on `None` it stays at the key, for the general loop.
    #[inline(always)]
    fn fixed<T>(
        &mut self,
        key: &[u8],
        read: impl FnOnce(&[u8], usize) -> Option<(T, usize)>,
    ) -> Option<T> {
        let at = self.i + key.len();
        if !self.s.get(self.i..at)?.eq(key) {
            return None;
        }
        let (v, end) = read(self.s, at)?;
        (*self.s.get(end)? == b',').then(|| {
            self.i = end + 1;
            v
        })
    }

    fn token(&mut self) -> Option<Token<'a>> {
        Some(match self.peek()? {
            b'"' => Token::Str(self.string()?),
            b't' => self.literal(b"true").map(|()| Token::Bool(true))?,
            b'f' => self.literal(b"false").map(|()| Token::Bool(false))?,
            b'n' => self.literal(b"null").map(|()| Token::Null)?,
            _ => Token::Num(self.integer()?),
        })
    }
}

/// An unsigned integer that fits `T`.
#[inline(always)]
fn dec<T: TryFrom<u64>>(s: &[u8], at: usize) -> Option<(T, usize)> {
    let (v, end) = scan::unsigned(s, at)?;
    Some((T::try_from(v).ok()?, end))
}

/// The header the writer puts first, in its order, up to and including
/// `ev`: each value read straight from the bytes, no key looked up by name.
/// Stops (`None`) at the first field spelled otherwise, with what it read
/// set in `ev`/`seen` and the cursor at that field's key, where the general
/// loop goes on: the result is the general loop's either way.
#[inline(always)]
fn writer_header(sc: &mut Scan<'_>, ev: &mut Event, seen: &mut u16) -> Option<()> {
    macro_rules! num {
        ($key:literal, $bit:literal, $field:ident) => {
            ev.$field = sc.fixed($key, dec)?;
            *seen |= 1 << $bit;
        };
    }
    num!(b"\"t\":", 0, t);
    num!(b"\"cpu\":", 1, cpu);
    num!(b"\"pid\":", 2, pid);
    num!(b"\"tgid\":", 3, tgid);
    let text = sc.text;
    let comm = sc.fixed(b"\"comm\":", scan::plain_str)?;
    ev.comm = fixed_str(&text[comm]);
    *seen |= 1 << 4;
    num!(b"\"task_flags\":", 5, task_flags);
    ev.mm = sc.fixed(b"\"mm\":", scan::hex_str)?;
    *seen |= 1 << 6;
    num!(b"\"mm_gen\":", 7, mm_gen);
    num!(b"\"seq\":", 8, seq);
    num!(b"\"hdr_flags\":", 9, hdr_flags);
    num!(b"\"cgroup_id\":", 10, cgroup_id);
    let probe = sc.fixed(b"\"probe\":", scan::plain_str)?;
    ev.probe = ProbeRef::from_name(&text[probe]);
    *seen |= 1 << 11;
    let id = sc.fixed(b"\"ev\":", |s, at| {
        let (name, end) = scan::plain_str(s, at)?;
        Some((EventId::from_name(&text[name])?, end))
    })?;
    ev.data = Data::zeroed(id);
    Some(())
}

/// The line's [`Event`] if it is an event line as the monitor writes them;
/// `None` means "not sure": parse it with serde instead.
pub fn parse_event_line(line: &str) -> Option<Event> {
    const PREFIX: &[u8] = b"{\"type\":\"event\",";
    let s = line.as_bytes();
    if !s.starts_with(PREFIX) {
        return None;
    }
    let mut sc = Scan {
        text: line,
        s,
        i: PREFIX.len(),
    };
    let mut ev = Event::zeroed(EventId::MarkVictim);
    let mut seen: u16 = 0;
    // The writer's header order first (what every line the monitor wrote
    // has), then the general loop for the payload and anything else.
    let mut kind = writer_header(&mut sc, &mut ev, &mut seen).is_some();
    if kind {
        sc.i = ev.data.fields_mut().read_members(s, sc.i);
        // The writer's last member, then the end of the line.
        if let Some((memcg_id, end)) = scan::key(s, sc.i, "memcg_id").and_then(|v| dec(s, v))
            && s.get(end) == Some(&b'}')
            && s[end + 1..].iter().all(u8::is_ascii_whitespace)
            && seen & REQUIRED == REQUIRED
        {
            ev.memcg_id = memcg_id;
            return Some(ev);
        }
    }
    let mut at = 0;
    loop {
        let key = sc.string()?;
        sc.eat(b':')?;
        let t = sc.token()?;
        if let Some(i) = header_index(key) {
            set_header(&mut ev, i, t)?;
            seen |= 1 << i;
        } else if key == "ev" {
            let Token::Str(name) = t else { return None };
            ev.data = Data::zeroed(EventId::from_name(name)?);
            kind = true;
            at = 0;
        } else if kind {
            ev.data.fields_mut().set_next(&mut at, key, t).ok()?;
        } else if key != "type" {
            return None;
        }
        match sc.peek()? {
            b',' => sc.i += 1,
            b'}' => {
                sc.i += 1;
                break;
            }
            _ => return None,
        }
    }
    let rest_blank = s[sc.i..].iter().all(|b| b.is_ascii_whitespace());
    (kind && rest_blank && seen & REQUIRED == REQUIRED).then_some(ev)
}

/// Writes `{"type":"event",…}` for `ev` (what [`parse_event_line`] reads).
pub fn event_line(ev: &Event) -> String {
    let mut out = String::with_capacity(320);
    out.push_str("{\"type\":\"event\",");
    write_members(ev, &mut out);
    out.push('}');
    out
}

/// The text of a kernel string field for humans (`comm`, filenames).
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    c_str(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer-order reader sets a payload field where the general loop
    /// would set a header field of the same name; no payload may have one.
    #[test]
    fn no_payload_field_is_named_like_a_header_field() {
        for id in EventId::ALL {
            for name in Data::zeroed(*id).fields().names() {
                assert!(
                    header_index(name).is_none() && !matches!(*name, "ev" | "type"),
                    "{id:?}: {name}"
                );
            }
        }
    }
}
