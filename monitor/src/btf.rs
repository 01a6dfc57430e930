//! A small reader for the kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! The BPF programs cannot carry CO-RE relocations (Rust BPF emits none), so
//! every struct field they read is resolved here, from the running kernel's
//! BTF, and handed to them as an offset in `.rodata`. The same data answers the
//! hook planner's questions: does a function have a BTF `FUNC` record (fentry
//! needs one), and what is a tracepoint's `TP_PROTO` (tp_btf programs are
//! written for one prototype).
//!
//! Only what the monitor needs is decoded; everything else is skipped by size.
//! Malformed input is an error, never a panic.

use std::collections::HashMap;

use thiserror::Error;

const BTF_MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Error)]
pub enum BtfError {
    #[error("not BTF data (bad magic {0:#06x})")]
    BadMagic(u16),
    #[error("BTF data is truncated ({0})")]
    Truncated(&'static str),
    #[error("unsupported BTF type kind {kind} at type id {id}")]
    UnknownKind { kind: u32, id: u32 },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FieldError {
    #[error("struct {0} is not in the kernel's BTF")]
    NoStruct(String),
    #[error("{path}: no member {member:?} in {within}")]
    NoMember {
        path: String,
        member: String,
        within: String,
    },
    #[error("{0}: member is a bitfield")]
    Bitfield(String),
    #[error("{0}: malformed field path")]
    BadPath(String),
}

#[derive(Clone, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Bit offset; for bitfield members (kind_flag) the low 24 bits.
    bit_offset: u32,
    bitfield_size: u32,
}

#[derive(Clone, Debug)]
enum Ty {
    /// Struct or union.
    Composite {
        members: Vec<Member>,
        /// Size in bytes.
        size: u32,
    },
    /// Pointer, typedef, const, volatile, restrict, type tag: refers to `type_id`.
    Ref {
        kind: u32,
        type_id: u32,
    },
    Array {
        elem: u32,
        nelems: u32,
    },
    Func {
        proto: u32,
    },
    FuncProto {
        params: Vec<u32>,
    },
    /// Everything else (int, enum, float, var, datasec, …), kept by kind.
    Other {
        kind: u32,
    },
}

#[derive(Clone, Debug)]
struct TypeEntry {
    name_off: u32,
    ty: Ty,
}

/// Parsed BTF: types by id and an index of names.
pub struct Btf {
    strings: Vec<u8>,
    /// Index 0 is `void`.
    types: Vec<TypeEntry>,
    by_name: HashMap<String, Vec<u32>>,
    /// Enumerator constants (`memory_cgrp_id`), first definition wins.
    enumerators: HashMap<String, i64>,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    b.get(off..off + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl Btf {
    /// Parses raw BTF (as found in `/sys/kernel/btf/vmlinux`).
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let magic = u16_at(data, 0).ok_or(BtfError::Truncated("header"))?;
        if magic != BTF_MAGIC {
            return Err(BtfError::BadMagic(magic));
        }
        let hdr_len = u32_at(data, 4).ok_or(BtfError::Truncated("header"))? as usize;
        let type_off = u32_at(data, 8).ok_or(BtfError::Truncated("header"))? as usize;
        let type_len = u32_at(data, 12).ok_or(BtfError::Truncated("header"))? as usize;
        let str_off = u32_at(data, 16).ok_or(BtfError::Truncated("header"))? as usize;
        let str_len = u32_at(data, 20).ok_or(BtfError::Truncated("header"))? as usize;
        let types_start = hdr_len + type_off;
        let strings_start = hdr_len + str_off;
        let type_data = data
            .get(types_start..types_start + type_len)
            .ok_or(BtfError::Truncated("type section"))?;
        let strings = data
            .get(strings_start..strings_start + str_len)
            .ok_or(BtfError::Truncated("string section"))?
            .to_vec();

        let mut types = vec![TypeEntry {
            name_off: 0,
            ty: Ty::Other { kind: 0 },
        }];
        let mut enumerators: Vec<(u32, i64)> = Vec::new();
        let mut off = 0usize;
        while off < type_data.len() {
            let id = types.len() as u32;
            let trunc = BtfError::Truncated("type record");
            let name_off = u32_at(type_data, off).ok_or(BtfError::Truncated("type record"))?;
            let info = u32_at(type_data, off + 4).ok_or(BtfError::Truncated("type record"))?;
            let size_or_type = u32_at(type_data, off + 8).ok_or(trunc)?;
            off += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 != 0;
            let ty = match kind {
                KIND_INT => {
                    off += 4;
                    Ty::Other { kind }
                }
                KIND_PTR | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_TYPE_TAG => Ty::Ref {
                    kind,
                    type_id: size_or_type,
                },
                KIND_ARRAY => {
                    let elem = u32_at(type_data, off).ok_or(BtfError::Truncated("array"))?;
                    let nelems = u32_at(type_data, off + 8).ok_or(BtfError::Truncated("array"))?;
                    off += 12;
                    Ty::Array { elem, nelems }
                }
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let m_name = u32_at(type_data, off).ok_or(BtfError::Truncated("member"))?;
                        let m_type =
                            u32_at(type_data, off + 4).ok_or(BtfError::Truncated("member"))?;
                        let m_off =
                            u32_at(type_data, off + 8).ok_or(BtfError::Truncated("member"))?;
                        off += 12;
                        let (bit_offset, bitfield_size) = if kind_flag {
                            (m_off & 0x00ff_ffff, m_off >> 24)
                        } else {
                            (m_off, 0)
                        };
                        members.push(Member {
                            name_off: m_name,
                            type_id: m_type,
                            bit_offset,
                            bitfield_size,
                        });
                    }
                    Ty::Composite {
                        members,
                        size: size_or_type,
                    }
                }
                KIND_ENUM | KIND_ENUM64 => {
                    let size = if kind == KIND_ENUM { 8 } else { 12 };
                    for i in 0..vlen {
                        let at = off + size * i;
                        let name = u32_at(type_data, at).ok_or(BtfError::Truncated("enum"))?;
                        let lo = u32_at(type_data, at + 4).ok_or(BtfError::Truncated("enum"))?;
                        let value = if kind == KIND_ENUM {
                            // Signed unless kind_flag says unsigned (6.0+).
                            if kind_flag {
                                i64::from(lo)
                            } else {
                                i64::from(lo as i32)
                            }
                        } else {
                            let hi =
                                u32_at(type_data, at + 8).ok_or(BtfError::Truncated("enum"))?;
                            (u64::from(hi) << 32 | u64::from(lo)) as i64
                        };
                        enumerators.push((name, value));
                    }
                    off += size * vlen;
                    Ty::Other { kind }
                }
                KIND_FWD | KIND_FLOAT => Ty::Other { kind },
                KIND_FUNC => Ty::Func {
                    proto: size_or_type,
                },
                KIND_FUNC_PROTO => {
                    let mut params = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let p_type =
                            u32_at(type_data, off + 4).ok_or(BtfError::Truncated("param"))?;
                        off += 8;
                        params.push(p_type);
                    }
                    Ty::FuncProto { params }
                }
                KIND_VAR | KIND_DECL_TAG => {
                    off += 4;
                    Ty::Other { kind }
                }
                KIND_DATASEC => {
                    off += 12 * vlen;
                    Ty::Other { kind }
                }
                _ => return Err(BtfError::UnknownKind { kind, id }),
            };
            types.push(TypeEntry { name_off, ty });
        }

        let mut btf = Btf {
            strings,
            types,
            by_name: HashMap::new(),
            enumerators: HashMap::new(),
        };
        for (name, value) in enumerators {
            let name = btf.str_at(name).to_owned();
            if !name.is_empty() {
                btf.enumerators.entry(name).or_insert(value);
            }
        }
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
        for (id, t) in btf.types.iter().enumerate().skip(1) {
            if t.name_off != 0 {
                by_name
                    .entry(btf.str_at(t.name_off).to_owned())
                    .or_default()
                    .push(id as u32);
            }
        }
        btf.by_name = by_name;
        Ok(btf)
    }

    fn str_at(&self, off: u32) -> &str {
        let start = off as usize;
        let Some(rest) = self.strings.get(start..) else {
            return "";
        };
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn ty(&self, id: u32) -> Option<&TypeEntry> {
        self.types.get(id as usize)
    }

    /// Follows typedefs and qualifiers (not pointers) to the underlying type.
    fn strip(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.ty(id).map(|t| &t.ty) {
                Some(Ty::Ref { kind, type_id }) if *kind != KIND_PTR => id = *type_id,
                _ => break,
            }
        }
        id
    }

    fn named(&self, name: &str, want: impl Fn(&Ty) -> bool) -> Option<u32> {
        self.by_name
            .get(name)?
            .iter()
            .copied()
            .find(|id| self.ty(*id).is_some_and(|t| want(&t.ty)))
    }

    /// The struct (not a forward declaration) called `name`, with members.
    fn struct_id(&self, name: &str) -> Option<u32> {
        self.named(
            name,
            |t| matches!(t, Ty::Composite { members, .. } if !members.is_empty()),
        )
        .or_else(|| {
            // `typedef struct { pmdval_t pmd; } pmd_t;`: a typedef of an
            // anonymous struct (the page-table entry types).
            let id = self.named(
                name,
                |t| matches!(t, Ty::Ref { kind, .. } if *kind == KIND_TYPEDEF),
            )?;
            let target = self.strip(id);
            matches!(
                self.ty(target).map(|t| &t.ty),
                Some(Ty::Composite { members, .. }) if !members.is_empty()
            )
            .then_some(target)
        })
    }

    /// Finds member `name` in composite `id`, looking through anonymous
    /// struct/union members. Returns (bit offset from the start of `id`, type).
    fn find_member(&self, id: u32, name: &str, depth: u32) -> Option<(u32, &Member)> {
        if depth > 8 {
            return None;
        }
        let Some(Ty::Composite { members, .. }) = self.ty(self.strip(id)).map(|t| &t.ty) else {
            return None;
        };
        for m in members {
            if m.name_off != 0 && self.str_at(m.name_off) == name {
                return Some((m.bit_offset, m));
            }
        }
        for m in members.iter().filter(|m| m.name_off == 0) {
            if let Some((inner, found)) = self.find_member(m.type_id, name, depth + 1) {
                return Some((m.bit_offset + inner, found));
            }
        }
        None
    }

    /// Byte offset of a field path such as `task_struct.signal` or
    /// `vm_area_struct.vm_userfaultfd_ctx.ctx` (members of embedded structs; no
    /// pointer dereferences).
    pub fn field_offset(&self, path: &str) -> Result<u32, FieldError> {
        self.resolve(path).map(|(off, _)| off)
    }

    /// The value of enumerator `name` (a C enum constant such as
    /// `memory_cgrp_id`).
    pub fn enum_value(&self, name: &str) -> Option<i64> {
        self.enumerators.get(name).copied()
    }

    /// The element count of the array member at `path` (`css_set.subsys`).
    pub fn array_len(&self, path: &str) -> Option<u32> {
        let (_, id) = self.resolve(path).ok()?;
        match self.ty(self.strip(id))?.ty {
            Ty::Array { nelems, .. } => Some(nelems),
            _ => None,
        }
    }

    /// Byte offset and type of the member at `path`.
    fn resolve(&self, path: &str) -> Result<(u32, u32), FieldError> {
        let mut parts = path.split('.');
        let root = parts
            .next()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| FieldError::BadPath(path.to_owned()))?;
        let mut id = self
            .struct_id(root)
            .ok_or_else(|| FieldError::NoStruct(root.to_owned()))?;
        let mut within = root.to_owned();
        let mut bits = 0u32;
        let mut any = false;
        for member in parts {
            any = true;
            let (off, m) = self
                .find_member(id, member, 0)
                .ok_or_else(|| FieldError::NoMember {
                    path: path.to_owned(),
                    member: member.to_owned(),
                    within: within.clone(),
                })?;
            if m.bitfield_size != 0 || off % 8 != 0 {
                return Err(FieldError::Bitfield(path.to_owned()));
            }
            bits += off;
            id = m.type_id;
            within = member.to_owned();
        }
        if !any {
            return Err(FieldError::BadPath(path.to_owned()));
        }
        Ok((bits / 8, id))
    }

    /// Size in bytes of the struct (or union) called `name`.
    pub fn struct_size(&self, name: &str) -> Option<u32> {
        match self.ty(self.struct_id(name)?)?.ty {
            Ty::Composite { size, .. } => Some(size),
            _ => None,
        }
    }

    /// Names of every `FUNC` record (functions the kernel was built with).
    pub fn func_names(&self) -> impl Iterator<Item = &str> {
        self.types
            .iter()
            .filter(|t| matches!(t.ty, Ty::Func { .. }))
            .map(|t| self.str_at(t.name_off))
            .filter(|n| !n.is_empty())
    }

    /// Whether the kernel has a BTF `FUNC` record called `name` (a prerequisite
    /// for fentry/fexit; not sufficient: the function must also be traceable).
    pub fn has_func(&self, name: &str) -> bool {
        self.named(name, |t| matches!(t, Ty::Func { .. })).is_some()
    }

    /// Parameter count of function `name`'s prototype.
    pub fn func_param_count(&self, name: &str) -> Option<usize> {
        self.func_params(name).map(|p| p.len())
    }

    /// Parameter types of function `name` (C-like spellings), if it has a BTF
    /// `FUNC` record.
    pub fn func_params(&self, name: &str) -> Option<Vec<String>> {
        let id = self.named(name, |t| matches!(t, Ty::Func { .. }))?;
        let Ty::Func { proto } = self.ty(id)?.ty else {
            return None;
        };
        match &self.ty(proto)?.ty {
            Ty::FuncProto { params, .. } => {
                Some(params.iter().map(|p| self.type_name(*p, 0)).collect())
            }
            _ => None,
        }
    }

    /// The prototype of tracepoint `name` as tp_btf programs see it: the types
    /// of its `TP_PROTO` arguments, rendered as short C-like strings
    /// (`"struct task_struct *"`, `"int"`, `"unsigned long"`). `None` if the
    /// kernel has no such tracepoint (no `btf_trace_<name>` typedef).
    pub fn tracepoint_proto(&self, name: &str) -> Option<Vec<String>> {
        let id = self.named(
            &format!("btf_trace_{name}"),
            |t| matches!(t, Ty::Ref { kind, .. } if *kind == KIND_TYPEDEF),
        )?;
        // typedef -> pointer -> func_proto(void *, args...)
        let ptr = self.strip(id);
        let Ty::Ref {
            kind: KIND_PTR,
            type_id,
        } = self.ty(ptr)?.ty
        else {
            return None;
        };
        let Ty::FuncProto { params, .. } = &self.ty(self.strip(type_id))?.ty else {
            return None;
        };
        // The first parameter is the tracepoint's `void *__data`.
        Some(
            params
                .iter()
                .skip(1)
                .map(|p| self.type_name(*p, 0))
                .collect(),
        )
    }

    /// A short C-like spelling of a type, for prototype checks and messages.
    pub fn type_name(&self, id: u32, depth: u32) -> String {
        if depth > 8 {
            return "…".to_owned();
        }
        let Some(t) = self.ty(id) else {
            return "?".to_owned();
        };
        let name = self.str_at(t.name_off);
        match &t.ty {
            Ty::Ref {
                kind: KIND_PTR,
                type_id,
            } => format!("{} *", self.type_name(*type_id, depth + 1)),
            Ty::Ref {
                kind: KIND_CONST,
                type_id,
            } => format!("const {}", self.type_name(*type_id, depth + 1)),
            Ty::Ref { kind, type_id } if *kind != KIND_TYPEDEF => {
                self.type_name(*type_id, depth + 1)
            }
            Ty::Composite { .. } if name.is_empty() => "struct <anon>".to_owned(),
            Ty::Composite { .. } => format!("struct {name}"),
            Ty::Other { kind: KIND_FWD } => format!("struct {name}"),
            Ty::Other {
                kind: KIND_ENUM | KIND_ENUM64,
            } => format!("enum {name}"),
            Ty::Other { kind: 0 } if id == 0 => "void".to_owned(),
            Ty::Array { elem, .. } => format!("{}[]", self.type_name(*elem, depth + 1)),
            Ty::FuncProto { .. } => "fn".to_owned(),
            Ty::Other { kind: KIND_INT } => canonical_int(name),
            _ => name.to_owned(),
        }
    }

    /// Number of types (for diagnostics).
    pub fn type_count(&self) -> usize {
        self.types.len() - 1
    }
}

/// Spells a BTF integer name the way C programmers write it
/// (`long unsigned int` → `unsigned long`).
fn canonical_int(name: &str) -> String {
    let words: Vec<&str> = name.split_whitespace().collect();
    let unsigned = words.contains(&"unsigned");
    let longs = words.iter().filter(|w| **w == "long").count();
    let base = if words.contains(&"char") {
        "char"
    } else if words.contains(&"short") {
        "short"
    } else if longs == 2 {
        "long long"
    } else if longs == 1 {
        "long"
    } else if words.contains(&"int") || words.contains(&"unsigned") || words.contains(&"signed") {
        "int"
    } else {
        return name.to_owned();
    };
    match (unsigned, words.contains(&"signed") && base == "char") {
        (true, _) => format!("unsigned {base}"),
        (false, true) => "signed char".to_owned(),
        _ => base.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob from (name, info, size_or_type, extra words) records.
    struct Builder {
        strings: Vec<u8>,
        types: Vec<u8>,
    }

    impl Builder {
        fn new() -> Self {
            Builder {
                strings: vec![0],
                types: Vec::new(),
            }
        }

        fn s(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            off
        }

        fn ty(
            &mut self,
            name: &str,
            kind: u32,
            vlen: u32,
            kind_flag: bool,
            st: u32,
            extra: &[u32],
        ) {
            let name = self.s(name);
            let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
            for w in [name, info, st].iter().chain(extra) {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
        }

        fn build(self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.push(1); // version
            out.push(0); // flags
            out.extend_from_slice(&24u32.to_le_bytes()); // hdr_len
            out.extend_from_slice(&0u32.to_le_bytes()); // type_off
            out.extend_from_slice(&(self.types.len() as u32).to_le_bytes());
            out.extend_from_slice(&(self.types.len() as u32).to_le_bytes()); // str_off
            out.extend_from_slice(&(self.strings.len() as u32).to_le_bytes());
            out.extend(self.types);
            out.extend(self.strings);
            out
        }
    }

    /// id 1: unsigned long; 2: struct inner { long a; long flags }; 3: union (anon)
    /// { unsigned long vm_flags; unsigned long __vm_flags }; 4: struct vm_area_struct
    /// { long vm_start @0; struct inner nested @64; <anon union> @192 }; 5: ptr->4;
    /// 6: func_proto(void*, struct vm_area_struct *); 7: ptr->6; 8: typedef
    /// btf_trace_demo -> 7; 9: func demo_fn -> 6.
    fn sample() -> Btf {
        let mut b = Builder::new();
        b.ty("unsigned long", KIND_INT, 0, false, 8, &[64]);
        let a = b.s("a");
        let flags = b.s("flags");
        b.ty("inner", KIND_STRUCT, 2, false, 16, &[a, 1, 0, flags, 1, 64]);
        let vf = b.s("vm_flags");
        let pvf = b.s("__vm_flags");
        b.ty("", KIND_UNION, 2, false, 8, &[vf, 1, 0, pvf, 1, 0]);
        let start = b.s("vm_start");
        let nested = b.s("nested");
        b.ty(
            "vm_area_struct",
            KIND_STRUCT,
            3,
            false,
            32,
            &[start, 1, 0, nested, 2, 64, 0, 3, 192],
        );
        b.ty("", KIND_PTR, 0, false, 4, &[]);
        b.ty("", KIND_FUNC_PROTO, 2, false, 0, &[0, 7, 0, 5]);
        b.ty("", KIND_PTR, 0, false, 6, &[]);
        b.ty("btf_trace_demo", KIND_TYPEDEF, 0, false, 7, &[]);
        b.ty("demo_fn", KIND_FUNC, 0, false, 6, &[]);
        Btf::parse(&b.build()).expect("parses")
    }

    #[test]
    fn resolves_nested_and_anonymous_members() {
        let btf = sample();
        assert_eq!(btf.type_count(), 9);
        assert_eq!(btf.field_offset("vm_area_struct.vm_start"), Ok(0));
        assert_eq!(btf.field_offset("vm_area_struct.nested.flags"), Ok(16));
        // Through the anonymous union at byte 24.
        assert_eq!(btf.field_offset("vm_area_struct.vm_flags"), Ok(24));
        assert!(matches!(
            btf.field_offset("vm_area_struct.nope"),
            Err(FieldError::NoMember { .. })
        ));
        assert!(matches!(
            btf.field_offset("task_struct.mm"),
            Err(FieldError::NoStruct(_))
        ));
        assert!(matches!(
            btf.field_offset("vm_area_struct"),
            Err(FieldError::BadPath(_))
        ));
    }

    /// `typedef struct { unsigned long pmd; } pmd_t;`: the page-table entry types.
    #[test]
    fn resolves_members_of_typedefd_anonymous_structs() {
        let mut b = Builder::new();
        b.ty("unsigned long", KIND_INT, 0, false, 8, &[64]);
        let pmd = b.s("pmd");
        b.ty("", KIND_STRUCT, 1, false, 8, &[pmd, 1, 0]);
        b.ty("pmd_t", KIND_TYPEDEF, 0, false, 2, &[]);
        let btf = Btf::parse(&b.build()).expect("parses");
        assert_eq!(btf.field_offset("pmd_t.pmd"), Ok(0));
        assert!(matches!(
            btf.field_offset("pte_t.pte"),
            Err(FieldError::NoStruct(_))
        ));
    }

    #[test]
    fn functions_and_tracepoint_prototypes() {
        let btf = sample();
        assert!(btf.has_func("demo_fn"));
        assert!(!btf.has_func("vm_area_struct"));
        assert_eq!(btf.func_param_count("demo_fn"), Some(2));
        assert_eq!(
            btf.tracepoint_proto("demo"),
            Some(vec!["struct vm_area_struct *".to_owned()])
        );
        assert_eq!(btf.tracepoint_proto("missing"), None);
    }

    #[test]
    fn integer_names_are_canonical() {
        assert_eq!(canonical_int("long unsigned int"), "unsigned long");
        assert_eq!(canonical_int("long int"), "long");
        assert_eq!(
            canonical_int("long long unsigned int"),
            "unsigned long long"
        );
        assert_eq!(canonical_int("short unsigned int"), "unsigned short");
        assert_eq!(canonical_int("unsigned int"), "unsigned int");
        assert_eq!(canonical_int("int"), "int");
        assert_eq!(canonical_int("_Bool"), "_Bool");
        assert_eq!(canonical_int("u32"), "u32");
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(matches!(Btf::parse(&[]), Err(BtfError::Truncated(_))));
        assert!(matches!(
            Btf::parse(&[0x12, 0x34, 0, 0]),
            Err(BtfError::BadMagic(0x3412))
        ));
        let mut blob = {
            let mut b = Builder::new();
            b.ty("x", KIND_INT, 0, false, 4, &[32]);
            b.build()
        };
        blob.truncate(blob.len() - 6);
        assert!(Btf::parse(&blob).is_err());
    }

    /// On a machine with kernel BTF, every field the BPF side needs resolves
    /// (or is known to be optional).
    #[test]
    #[allow(clippy::print_stderr, reason = "the test says why it did not run")]
    fn host_kernel_fields_resolve() {
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            eprintln!("skipped: no /sys/kernel/btf/vmlinux");
            return;
        };
        let btf = Btf::parse(&data).expect("host BTF parses");
        for (field, path) in monitor_common::config::Field::PATHS {
            let r = btf.field_offset(path);
            if field.is_required() {
                assert!(r.is_ok(), "{path}: {r:?}");
            }
        }
        assert!(btf.has_func("exit_mmap"));
        assert_eq!(
            btf.tracepoint_proto("exit_mmap"),
            Some(vec!["struct mm_struct *".to_owned()])
        );
        // The memory controller's index in `css_set.subsys` (an enum
        // constant), within the array.
        let memcg = btf.enum_value("memory_cgrp_id").expect("CONFIG_MEMCG");
        let subsys = btf.array_len("css_set.subsys").expect("an array");
        assert!(memcg >= 0 && (memcg as u32) < subsys, "{memcg} of {subsys}");
        assert_eq!(btf.enum_value("no_such_enumerator"), None);
        assert_eq!(btf.array_len("task_struct.pid"), None);
    }
}
